"""Every CAMTOPO_* variable of the flat settings object keeps its name and meaning in the
sections (#22 item 1); a bad value is refused by name without being echoed."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from camtopo.settings import Settings, sections_markdown

REPO = Path(__file__).resolve().parents[2]

# (variable, where it lands, default, an override, the override as read). The variables and
# defaults are the flat Settings' (camtopo/settings.py before the split), listed once by hand
# so that a rename or a changed default shows up here.
VARIABLES = [
    ("CAMTOPO_GRID_COLS", "grid.cols", 12, "13", 13),
    ("CAMTOPO_GRID_ROWS", "grid.rows", 9, "10", 10),
    ("CAMTOPO_FRAME_WIDTH", "grid.frame_width", 320, "321", 321),
    ("CAMTOPO_FRAME_HEIGHT", "grid.frame_height", 240, "241", 241),
    ("CAMTOPO_FPS", "grid.fps", 10, "11", 11),
    ("CAMTOPO_SPATIAL_RADIUS", "algorithm.spatial_radius", 1, "2", 2),
    ("CAMTOPO_TEMPORAL_TOLERANCE_MS", "algorithm.temporal_tolerance_ms", 500, "501", 501),
    ("CAMTOPO_COUNT_LIMIT", "algorithm.count_limit", 4096, "4097", 4097),
    ("CAMTOPO_O_REF", "algorithm.o_ref", 50.0, "25.0", 25.0),
    ("CAMTOPO_C_STAR", "algorithm.c_star", 0.95, "0.475", 0.475),
    ("CAMTOPO_ACTIVITY_GATE", "algorithm.activity_gate", 40, "41", 41),
    ("CAMTOPO_PRUNE", "algorithm.prune", True, "false", False),
    ("CAMTOPO_PRUNE_MIN_OPPORTUNITIES", "algorithm.prune_min_opportunities", 16, "17", 17),
    ("CAMTOPO_PRUNE_MAX_RATIO", "algorithm.prune_max_ratio", 0.5, "0.25", 0.25),
    ("CAMTOPO_READMIT_AFTER", "algorithm.readmit_after", 2048, "2049", 2049),
    ("CAMTOPO_MAX_POOL_MB", "algorithm.max_pool_mb", 4096, "4097", 4097),
    ("CAMTOPO_MOVE_DETECTION", "algorithm.move_detection", True, "false", False),
    ("CAMTOPO_MOVE_CHECK_S", "algorithm.move_check_s", 60.0, "30", 30.0),
    ("CAMTOPO_MOVE_MAX_RATIO", "algorithm.move_max_ratio", 0.5, "0.4", 0.4),
    ("CAMTOPO_MOVE_MIN_OPPORTUNITIES", "algorithm.move_min_opportunities", 100.0, "200", 200.0),
    ("CAMTOPO_MOVE_MIN_SHIFT", "algorithm.move_min_shift", 0.2, "0.3", 0.3),
    ("CAMTOPO_MOVE_SHIFT_Z", "algorithm.move_shift_z", 4.0, "5", 5.0),
    ("CAMTOPO_TRANSIT_ENABLED", "transit.enabled", True, "false", False),
    ("CAMTOPO_TRANSIT_MAX_LAG_S", "transit.max_lag_s", 60.0, "30.0", 30.0),
    ("CAMTOPO_TRANSIT_BIN_S", "transit.bin_s", 1.0, "0.5", 0.5),
    ("CAMTOPO_TRANSIT_CONTROL_S", "transit.control_s", 120.0, "60.0", 60.0),
    ("CAMTOPO_TRANSIT_Z_STAR", "transit.z_star", 5.0, "2.5", 2.5),
    ("CAMTOPO_TRANSIT_MIN_RATIO", "transit.min_ratio", 1.5, "3.0", 3.0),
    ("CAMTOPO_TRANSIT_MIN_EXCESS", "transit.min_excess", 8.0, "4.0", 4.0),
    ("CAMTOPO_TRANSIT_MAX_DEST", "transit.max_dest", 256, "257", 257),
    ("CAMTOPO_TRANSIT_MAX_CAMERAS", "transit.max_cameras", 2000, "2001", 2001),
    ("CAMTOPO_TRANSIT_MIN_REPORT_AGE_S", "transit.min_report_age_s", 1200.0, "600", 600.0),
    ("CAMTOPO_TRANSIT_APPEARANCE", "transit.appearance", True, "false", False),
    ("CAMTOPO_TRANSIT_ALIKE_HUE", "transit.alike_hue", 0.5, "0.6", 0.6),
    ("CAMTOPO_TRANSIT_ALIKE_RANK", "transit.alike_rank", 0.2, "0.3", 0.3),
    ("CAMTOPO_RANGE_SECONDS", "processor.range_seconds", 2.0, "1.0", 1.0),
    ("CAMTOPO_LATE_CUTOFF_SECONDS", "processor.late_cutoff_seconds", 5.0, "2.5", 2.5),
    ("CAMTOPO_EARLY_CLOSE", "processor.early_close", False, "true", True),
    ("CAMTOPO_EARLY_CLOSE_HOLD_SECONDS", "processor.early_close_hold_seconds", 1.0, "0.5", 0.5),
    ("CAMTOPO_CAMERA_SILENCE_SECONDS", "processor.camera_silence_seconds", 10.0, "3.0", 3.0),
    (
        "CAMTOPO_PROCESSOR_GROUP",
        "processor.group",
        "camtopo-processor",
        "camtopo-processor-x",
        "camtopo-processor-x",
    ),
    ("CAMTOPO_IDLE_PARTITION_SECONDS", "processor.idle_partition_seconds", 15.0, "2.5", 2.5),
    ("CAMTOPO_BROKER_SILENCE_SECONDS", "processor.broker_silence_seconds", 3.0, "1.5", 1.5),
    (
        "CAMTOPO_BROKER_OUTAGE_HOLD_SECONDS",
        "processor.broker_outage_hold_seconds",
        300.0,
        "150.0",
        150.0,
    ),
    ("CAMTOPO_MAX_FUTURE_SECONDS", "processor.max_future_seconds", 60.0, "30.0", 30.0),
    ("CAMTOPO_MAX_CLOCK_LEAD_SECONDS", "processor.max_clock_lead_seconds", 2.0, "1.0", 1.0),
    ("CAMTOPO_MAX_FRAME_AGE_SECONDS", "processor.max_frame_age_seconds", 3600.0, "1800.0", 1800.0),
    ("CAMTOPO_TOPOLOGY_EVERY_RANGES", "processor.topology_every_ranges", 5, "6", 6),
    ("CAMTOPO_PROCESSOR_METRICS_PORT", "processor.metrics_port", 9108, "9109", 9109),
    (
        "CAMTOPO_PROCESSOR_SESSION_TIMEOUT_SECONDS",
        "processor.session_timeout_seconds",
        10.0,
        "20.0",
        20.0,
    ),
    ("CAMTOPO_CHECKPOINT_SPREAD_RANGES", "processor.checkpoint_spread_ranges", 10, "11", 11),
    ("CAMTOPO_PROCESSOR_BUFFER_FRAMES", "processor.buffer_frames", 200_000, "50000", 50_000),
    ("CAMTOPO_CHECKPOINT_RETRY_SECONDS", "processor.checkpoint_retry_seconds", 120.0, "60.0", 60.0),
    ("CAMTOPO_CAMERA_REGISTRY", "processor.camera_registry", True, "false", False),
    (
        "CAMTOPO_CAMERA_REGISTRY_POLL_SECONDS",
        "processor.camera_registry_poll_seconds",
        5.0,
        "1.5",
        1.5,
    ),
    (
        "CAMTOPO_ASSEMBLER_GROUP",
        "partitioned.assembler_group",
        "camtopo-assemblers",
        "camtopo-assemblers-x",
        "camtopo-assemblers-x",
    ),
    (
        "CAMTOPO_COUNTER_GROUP",
        "partitioned.counter_group",
        "camtopo-counters",
        "camtopo-counters-x",
        "camtopo-counters-x",
    ),
    (
        "CAMTOPO_RANGES_TOPIC",
        "partitioned.ranges_topic",
        "occupancy-ranges",
        "occupancy-ranges-x",
        "occupancy-ranges-x",
    ),
    ("CAMTOPO_RANGES_RETENTION_HOURS", "partitioned.ranges_retention_hours", 2.0, "1.0", 1.0),
    (
        "CAMTOPO_COUNTER_SHARDS_TOPIC",
        "partitioned.counter_shards_topic",
        "camtopo-count-shards",
        "camtopo-count-shards-x",
        "camtopo-count-shards-x",
    ),
    (
        "CAMTOPO_COUNTER_CHECKPOINT_SPREAD_RANGES",
        "partitioned.counter_checkpoint_spread_ranges",
        60,
        "61",
        61,
    ),
    ("CAMTOPO_TOPOLOGY_MAX_SHARE", "partitioned.topology_max_share", 0.1, "0.05", 0.05),
    ("CAMTOPO_COUNTER_DEFER_MAX_RANGES", "partitioned.counter_defer_max_ranges", 5, "6", 6),
    (
        "CAMTOPO_COUNTER_BUFFER_FRAMES",
        "partitioned.counter_buffer_frames",
        2000000,
        "2000001",
        2000001,
    ),
    ("CAMTOPO_LAG_EXPORTER_PORT", "lag_exporter.port", 9308, "9309", 9309),
    ("CAMTOPO_LAG_EXPORTER_GROUPS", "lag_exporter.groups", "", "x", "x"),
    ("CAMTOPO_LAG_EXPORTER_TIMEOUT_S", "lag_exporter.timeout_s", 3.0, "1.5", 1.5),
    ("CAMTOPO_MOG2_HISTORY", "detection.mog2_history", 500, "501", 501),
    ("CAMTOPO_MOG2_VAR_THRESHOLD", "detection.mog2_var_threshold", 25.0, "12.5", 12.5),
    ("CAMTOPO_MOG2_LEARNING_RATE", "detection.mog2_learning_rate", -1.0, "-0.5", -0.5),
    ("CAMTOPO_MORPH_KERNEL_PX", "detection.morph_kernel_px", 3, "4", 4),
    ("CAMTOPO_MIN_BLOB_AREA_PX", "detection.min_blob_area_px", 12, "13", 13),
    ("CAMTOPO_PRODUCER_FRAMES_PER_RECORD", "producer.frames_per_record", 5, "6", 6),
    ("CAMTOPO_PRODUCER_QUEUE_MESSAGES", "producer.queue_messages", 10000, "10001", 10001),
    ("CAMTOPO_PRODUCER_LINGER_MS", "producer.linger_ms", 20, "21", 21),
    ("CAMTOPO_PRODUCER_COMPRESSION", "producer.compression", "lz4", "lz4-x", "lz4-x"),
    ("CAMTOPO_PRODUCER_FLUSH_TIMEOUT_S", "producer.flush_timeout_s", 60.0, "30.0", 30.0),
    ("CAMTOPO_SOURCE_READ_TIMEOUT_S", "producer.source_read_timeout_s", 5.0, "2.5", 2.5),
    ("CAMTOPO_SOURCE_RECONNECT_S", "producer.source_reconnect_s", 2.0, "1.0", 1.0),
    ("CAMTOPO_PRODUCER_METRICS_PORT", "producer.metrics_port", 0, "1", 1),
    (
        "CAMTOPO_KAFKA_BOOTSTRAP",
        "kafka.bootstrap",
        "127.0.0.1:9092",
        "127.0.0.1:9092-x",
        "127.0.0.1:9092-x",
    ),
    ("CAMTOPO_KAFKA_SECURITY_PROTOCOL", "kafka.security_protocol", "PLAINTEXT", "SSL", "SSL"),
    (
        "CAMTOPO_KAFKA_SASL_MECHANISM",
        "kafka.sasl_mechanism",
        "SCRAM-SHA-512",
        "SCRAM-SHA-256",
        "SCRAM-SHA-256",
    ),
    ("CAMTOPO_KAFKA_USERNAME", "kafka.username", None, "someone", "someone"),
    (
        "CAMTOPO_KAFKA_PASSWORD",
        "kafka.password",
        None,
        "secret-value-0123456789",
        "secret-value-0123456789",
    ),
    ("CAMTOPO_KAFKA_CA_FILE", "kafka.ca_file", None, "/x/file", "/x/file"),
    ("CAMTOPO_KAFKA_CERT_FILE", "kafka.cert_file", None, "/x/file", "/x/file"),
    ("CAMTOPO_KAFKA_KEY_FILE", "kafka.key_file", None, "/x/file", "/x/file"),
    ("CAMTOPO_OCCUPANCY_TOPIC", "kafka.occupancy_topic", "occupancy", "occupancy-x", "occupancy-x"),
    (
        "CAMTOPO_TOPOLOGY_CHANGES_TOPIC",
        "kafka.topology_changes_topic",
        "topology-changes",
        "topology-changes-x",
        "topology-changes-x",
    ),
    (
        "CAMTOPO_DEAD_LETTER_TOPIC",
        "kafka.dead_letter_topic",
        "occupancy-dead-letter",
        "occupancy-dead-letter-x",
        "occupancy-dead-letter-x",
    ),
    ("CAMTOPO_OCCUPANCY_PARTITIONS", "kafka.occupancy_partitions", 8, "9", 9),
    (
        "CAMTOPO_KAFKA_METADATA_MAX_AGE_SECONDS",
        "kafka.metadata_max_age_seconds",
        5.0,
        "2.5",
        2.5,
    ),
    ("CAMTOPO_SCHEMA_REGISTRY_URL", "schema_registry.url", "", "x", "x"),
    ("CAMTOPO_SCHEMA_REGISTRY_WAIT_SECONDS", "schema_registry.wait_seconds", 15.0, "7.5", 7.5),
    (
        "CAMTOPO_REDIS_URL",
        "redis.url",
        "redis://127.0.0.1:6379/0",
        "redis://127.0.0.1:6379/0-x",
        "redis://127.0.0.1:6379/0-x",
    ),
    ("CAMTOPO_REDIS_USERNAME", "redis.username", None, "someone", "someone"),
    (
        "CAMTOPO_REDIS_PASSWORD",
        "redis.password",
        None,
        "secret-value-0123456789",
        "secret-value-0123456789",
    ),
    ("CAMTOPO_REDIS_CA_FILE", "redis.ca_file", None, "/x/file", "/x/file"),
    ("CAMTOPO_REDIS_CERT_FILE", "redis.cert_file", None, "/x/file", "/x/file"),
    ("CAMTOPO_REDIS_KEY_FILE", "redis.key_file", None, "/x/file", "/x/file"),
    ("CAMTOPO_REDIS_SHARDS", "redis.shards", 64, "65", 65),
    ("CAMTOPO_REDIS_SENTINELS", "redis.sentinels", None, "h:26379,g:26379", "h:26379,g:26379"),
    ("CAMTOPO_REDIS_SENTINEL_MASTER", "redis.sentinel_master", "camtopo", "m2", "m2"),
    ("CAMTOPO_REDIS_MIN_REPLICAS_ACKED", "redis.min_replicas_acked", 0, "1", 1),
    ("CAMTOPO_REDIS_WAIT_TIMEOUT_MS", "redis.wait_timeout_ms", 2000, "500", 500),
    ("CAMTOPO_HTTP_HOST", "service.host", "127.0.0.1", "127.0.0.1-x", "127.0.0.1-x"),
    ("CAMTOPO_HTTP_PORT", "service.port", 8080, "8081", 8081),
    (
        "CAMTOPO_API_TOKEN",
        "service.api_token",
        None,
        "secret-value-0123456789",
        "secret-value-0123456789",
    ),
    ("CAMTOPO_API_AUTH", "service.api_auth", True, "false", False),
    ("CAMTOPO_METRICS_AUTH", "service.metrics_auth", False, "true", True),
    ("CAMTOPO_STREAM_TOKEN_TTL_S", "service.stream_token_ttl_s", 300.0, "150.0", 150.0),
    ("CAMTOPO_HTTP_CORS_ORIGINS", "service.cors_origins", "", "x", "x"),
    ("CAMTOPO_HTTP_MAX_BODY_BYTES", "service.max_body_bytes", 65536, "65537", 65537),
    ("CAMTOPO_HTTP_MAX_URL_CHARS", "service.max_url_chars", 8000, "8001", 8001),
    ("CAMTOPO_HTTP_MAX_CONCURRENT", "service.max_concurrent", 64, "65", 65),
    ("CAMTOPO_HTTP_MAX_STREAMS", "service.max_streams", 100, "101", 101),
    ("CAMTOPO_REWEIGHT_STEP", "store.reweight_step", 0.05, "0.025", 0.025),
    ("CAMTOPO_CHANGE_LOG_LENGTH", "store.change_log_length", 10000, "10001", 10001),
    ("CAMTOPO_PARTITION_MAX_CAMERAS", "store.partition_max_cameras", 64, "65", 65),
]


def _value(settings: Settings, path: str) -> Any:
    section, field = path.split(".")
    value = getattr(getattr(settings, section), field)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _clear(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [k for k in os.environ if k.startswith("CAMTOPO_")]:
        monkeypatch.delenv(var)


def test_every_old_variable_lands_in_its_section_with_its_default(monkeypatch) -> None:
    _clear(monkeypatch)
    settings = Settings()
    assert {var for var, _, _ in Settings.variables()} == {v for v, *_ in VARIABLES}
    for var, path, default, _, _ in VARIABLES:
        assert _value(settings, path) == default, var


@pytest.mark.parametrize(
    ("var", "path", "override", "expected"), [(v, p, o, e) for v, p, _, o, e in VARIABLES]
)
def test_every_old_variable_overrides_its_field(monkeypatch, var, path, override, expected) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv(var, override)
    settings = Settings()
    assert _value(settings, path) == expected
    # and nothing else moved
    assert all(_value(settings, p) == d for v, p, d, _, _ in VARIABLES if v != var)


def test_a_bad_value_is_refused_by_its_variable_without_echoing_it(monkeypatch) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv("CAMTOPO_REDIS_SHARDS", "64-hunter2")
    with pytest.raises(ValidationError) as err:
        Settings()
    assert "CAMTOPO_REDIS_SHARDS" in str(err.value) and "hunter2" not in str(err.value)
    monkeypatch.setenv("CAMTOPO_REDIS_SHARDS", "8")
    monkeypatch.setenv("CAMTOPO_API_TOKEN", "hunter2-short")
    with pytest.raises(ValidationError) as err:
        Settings()
    assert "CAMTOPO_API_TOKEN" in str(err.value) and "hunter2" not in str(err.value)


def test_a_section_given_in_code_reads_the_rest_from_the_environment(monkeypatch) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv("CAMTOPO_REDIS_URL", "redis://cache:6379/2")
    settings = Settings(redis={"shards": 8})
    assert (settings.redis.shards, settings.redis.url) == (8, "redis://cache:6379/2")


def test_replace_validates_and_keeps_the_rest() -> None:
    settings = Settings(redis={"shards": 8}, algorithm={"o_ref": 20.0})
    copy = settings.replace(redis={"url": "redis://other:6379/0"})
    assert (copy.redis.shards, copy.redis.url, copy.algorithm.o_ref) == (
        8,
        "redis://other:6379/0",
        20.0,
    )
    assert settings.redis.url != copy.redis.url  # sections are frozen: a copy, not an edit
    with pytest.raises(ValidationError):
        settings.replace(redis={"shards": 0})
    with pytest.raises(ValidationError):
        settings.redis.shards = 9  # type: ignore[misc]


def test_the_core_never_imports_settings() -> None:
    core = REPO / "camtopo" / "core"
    importing = [
        p.name
        for p in core.glob("*.py")
        if re.search(r"^\s*(from|import) camtopo\.settings", p.read_text(), flags=re.M)
    ]
    assert not importing


def test_the_sections_table_in_the_docs_is_generated_from_the_models() -> None:
    doc = (REPO / "docs" / "operations.md").read_text()
    assert sections_markdown() in doc, "regenerate it: see docs/operations.md, Configuration"
