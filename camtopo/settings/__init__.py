"""All configuration in one typed object, read from ``CAMTOPO_*`` environment variables.

Defaults are the paper's values where it gives one (window grid 12 x 9 on 320 x 240, the
8-neighbourhood for spatial padding, Tr = 2 s, Td = 5 s, 10 FPS), except O_ref, C* and the count
limit, where our measurements chose otherwise (each field says why; the paper's values are
``CAMTOPO_O_REF=20 CAMTOPO_C_STAR=0.8 CAMTOPO_COUNT_LIMIT=256``). Every field can be
overridden from the environment.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # hide_input_in_errors: a refused value is not echoed, so a mistyped token or a Redis URL
    # with a password in it never reaches a log through a validation error.
    model_config = SettingsConfigDict(
        env_prefix="CAMTOPO_", extra="ignore", hide_input_in_errors=True
    )

    # --- grid and frame rate (paper section 4.1, 6) ---
    grid_cols: int = Field(12, ge=1, description="windows across a 320 px frame (40 px each)")
    grid_rows: int = Field(9, ge=1, description="windows down a 240 px frame")
    frame_width: int = Field(320, ge=1)
    frame_height: int = Field(240, ge=1)
    fps: int = Field(
        10,
        ge=1,
        description="frame rate; one tick = 1/fps s. estimate, process and store follow "
        "network.json's fps (this one, set to another value, is refused as a contradiction)",
    )

    # --- padding (section 4.1, 4.2) ---
    spatial_radius: int = Field(1, ge=0, description="1 = the 8-neighbourhood")
    temporal_tolerance_ms: int = Field(
        500, ge=0, description="temporal padding; also absorbs clock skew between cameras"
    )

    # --- evidence (section 5.1) ---
    count_limit: int = Field(
        4096,
        ge=2,
        le=65536,
        description="O is halved (with P) on reaching this; the paper's byte counts are 256. "
        "At 256 a crowd surge fills a busy window's whole memory (campus-100 camera precision "
        "0.09); above 256 counts take 2 bytes",
    )
    # The paper's O_ref = 20 and C* = 0.8 were tuned by eye on its campus. On ours (campus-100,
    # 1 h, count_limit 4096) they gave camera precision 0.33; 50 and 0.95 gave 0.98 at overlap
    # recall 0.92 (benchmarks/accuracy.py; docs/architecture.md has the sweep).
    o_ref: float = Field(50.0, gt=1, description="opportunities for reliable exclusion (paper: 20)")
    c_star: float = Field(
        0.95, gt=0, lt=1, description="adjacency threshold on C' both ways (paper: 0.8)"
    )

    # --- fast engine: pruning of refuted row segments (bounded memory) ---
    # (see camtopo/core/engine.py; gate 0 + prune off + no budget = the paper's exact counts)
    activity_gate: int = Field(
        40,
        ge=0,
        description="a window's row starts after N occupied ticks: rarely used windows (and "
        "false detections) cost no memory; below ~41 opportunities C' cannot pass C* anyway",
    )
    prune: bool = Field(True, description="release (window, camera) segments refuted by exclusion")
    # A true overlap shows C ~ 0.97+, so C < 0.5 after 16 opportunities rules a pair out. A
    # higher ratio frees more memory but re-admits more pairs with short, fresh evidence:
    # at 0.75 campus-100 camera precision fell from 0.98 to 0.84.
    prune_min_opportunities: int = Field(16, ge=1, le=255)
    prune_max_ratio: float = Field(0.5, gt=0, lt=1)
    readmit_after: int = Field(
        2048, ge=1, description="a pruned segment is re-tested after this many opportunities"
    )
    max_pool_mb: int = Field(
        4096,
        ge=1,
        description="budget for P segments of the whole network; bounds memory (partitioned "
        "counting workers each take the share of the rows they own)",
    )

    # --- transit links between non-overlapping cameras (camtopo/core/transit.py) ---
    transit_enabled: bool = Field(True, description="lag-resolved appearance evidence")
    transit_max_lag_s: float = Field(60.0, gt=0, description="longest transit time looked for")
    transit_bin_s: float = Field(1.0, gt=0, description="lag histogram bin")
    transit_control_s: float = Field(
        120.0, ge=0, description="each side of the lag range for the destination's base rate"
    )
    transit_z_star: float = Field(
        5.0, gt=0, description="Poisson likelihood-ratio z of the best lag band for a link"
    )
    transit_min_ratio: float = Field(1.5, ge=1, description="band arrivals / expected by chance")
    transit_min_excess: float = Field(8.0, ge=0, description="band arrivals above chance")
    transit_max_dest: int = Field(
        256, ge=1, description="destination zones tracked per source zone (bounds memory)"
    )
    transit_max_cameras: int = Field(
        2000,
        ge=2,
        description="larger networks skip transit evidence (its zone-pair map is quadratic; "
        "partition first), with a warning",
    )

    # --- streaming ranges (section 6.1) ---
    range_seconds: float = Field(2.0, gt=0, description="Tr")
    late_cutoff_seconds: float = Field(5.0, ge=0, description="Td")

    # --- streaming processor (processors/) ---
    processor_group: str = Field("camtopo-processor", description="Kafka consumer group / Faust id")
    idle_partition_seconds: float = Field(
        5.0, gt=0, description="a partition silent this long stops holding the clock back"
    )
    broker_silence_seconds: float = Field(
        3.0,
        gt=0,
        description="a partition the broker has not answered a fetch for this long (Faust "
        "fetches wait 1.5 s) counts as unreachable, not idle: its ranges stay open while "
        "producers buffer. Keep it below idle_partition_seconds",
    )
    broker_outage_hold_seconds: float = Field(
        300.0,
        gt=0,
        description="ranges wait this long at most for an unreachable partition (librdkafka "
        "producers give up buffered records after message.timeout.ms, 300 s); then wall time "
        "closes them again and what comes later is counted as closed",
    )
    max_future_seconds: float = Field(
        60.0, gt=0, description="frames stamped this far after their record are refused"
    )
    max_clock_lead_seconds: float = Field(
        2.0,
        gt=0,
        description="a record or frame stamped more than this ahead of the processor's wall "
        "clock is a dead letter (`ahead_of_clock`) and moves no clock; a checkpoint that far "
        "ahead is refused at start. Cameras must agree far better than this for padding anyway",
    )
    max_frame_age_seconds: float = Field(
        3600.0, gt=0, description="frames captured this long before their record are refused"
    )
    topology_every_ranges: int = Field(
        5,
        ge=1,
        description="recompute adjacency and publish changes every N closed batches (counting "
        "workers: every owned shard's half-edges refreshed over N ranges, time share permitting)",
    )
    processor_metrics_port: int = Field(9108, ge=0, description="Prometheus /metrics; 0 = off")
    processor_session_timeout_seconds: float = Field(
        10.0,
        ge=6.0,
        le=300.0,
        description="Kafka group session: a killed worker's partitions move after this long",
    )
    checkpoint_spread_ranges: int = Field(
        10,
        ge=1,
        description="each closed batch checkpoints 1/N of the Redis shards, so every shard "
        "is written every N batches (Redis and Kafka commits lag the counts by up to N ranges)",
    )
    checkpoint_retry_seconds: float = Field(
        120.0, ge=0, description="keep retrying a checkpoint while Redis is unreachable"
    )

    # --- partitioned processing: assembler and counting workers (docs/streaming.md) ---
    assembler_group: str = Field(
        "camtopo-assemblers", description="consumer group of `camtopo process --role assemble`"
    )
    counter_group: str = Field(
        "camtopo-counters",
        description="consumer group of `camtopo process --role count`: it shares the Redis "
        "shards (the partitions of counter_shards_topic) among the counting workers",
    )
    ranges_topic: str = Field(
        "occupancy-ranges", description="closed ranges, one block per occupancy partition"
    )
    ranges_retention_hours: float = Field(
        2.0,
        gt=0,
        description="how long blocks stay on the ranges topic: a counting worker restarted "
        "from a checkpoint older than this cannot replay it (it logs the gap)",
    )
    counter_shards_topic: str = Field(
        "camtopo-count-shards",
        description="an empty topic with one partition per Redis shard; its assignment in "
        "counter_group says which worker counts which rows",
    )
    # Measured at 1,000 cameras (docs/streaming.md): every row changes within 20 s, so each
    # pass rewrites the whole matrix (~1.5 GB after 9 min); at 10 the checkpoints took 0.3 of
    # each counting worker's time and p99 was 13.6 s, at 60 0.1 and 10.6 s.
    counter_checkpoint_spread_ranges: int = Field(
        60,
        ge=1,
        description="counting workers write each owned shard once every N ranges (a slice per "
        "range); Redis lags their counts by up to N ranges, which a restart replays from the "
        "ranges topic (no Kafka commit waits on it)",
    )
    # At 1,000 cameras a half-edge pass over a worker's rows took ~4 s and the leader's join
    # ~7 s after 15 minutes: every 5 ranges, that was most of the machine (docs/streaming.md).
    topology_max_share: float = Field(
        0.1,
        gt=0,
        le=1,
        description="counting workers: refreshing half-edges takes at most this share of each "
        "range (at least one shard per range), the leader's join at most this share of the "
        "time (the next one waits); so topology changes come later as the network grows",
    )
    # A crowd surge doubles the occupied windows and nearly triples the counting (campus-1,000,
    # docs/streaming.md); deferring a checkpoint slice and a half-edge refresh (~0.3 of the
    # range's time) lets counting catch up, and Redis and the topology lag a few ranges more.
    counter_defer_max_ranges: int = Field(
        5,
        ge=0,
        description="counting workers catch up first: while the next range has already closed, "
        "a range's checkpoint slice and half-edge refresh wait, at most N ranges in a row "
        "(0: never wait)",
    )
    counter_buffer_frames: int = Field(
        2_000_000,
        ge=1000,
        description="frames a counting worker buffers for ranges not yet whole before it "
        "pauses the partitions that run ahead (bounds its memory)",
    )

    # --- consumer-group lag exporter (camtopo/lag.py, `camtopo lag-exporter`) ---
    lag_exporter_port: int = Field(9308, ge=0, description="its /metrics (kafka-exporter's port)")
    lag_exporter_groups: str = Field(
        "", description="comma-separated consumer groups to report; empty = every group"
    )
    lag_exporter_timeout_s: float = Field(
        3.0, gt=0, description="Kafka request timeout per scrape; keep under the scrape timeout"
    )

    # --- detection pipeline (section 5.1; producers/detection.py) ---
    mog2_history: int = Field(
        500, ge=1, description="MOG2 frames of history (OpenCV default; 50 s at 10 FPS)"
    )
    mog2_var_threshold: float = Field(
        25.0,
        gt=0,
        description="MOG2 squared Mahalanobis distance for foreground (OpenCV: 16; 25 measured"
        " fewer false windows on rendered video at equal recall, docs/producers.md)",
    )
    mog2_learning_rate: float = Field(
        -1.0, description="MOG2 learning rate; -1 = automatic (1 / history)"
    )
    morph_kernel_px: int = Field(
        3, ge=1, description="elliptic kernel for opening (specks) then closing (holes)"
    )
    min_blob_area_px: int = Field(
        12, ge=1, description="connected components smaller than this are not people"
    )

    # --- camera-side producer (section 6.1; producers/producer.py) ---
    producer_frames_per_record: int = Field(
        5, ge=1, description="frames batched per Avro record (0.5 s at 10 FPS)"
    )
    producer_queue_messages: int = Field(
        10_000, ge=1, description="bounded librdkafka queue; full = backpressure"
    )
    producer_linger_ms: int = Field(20, ge=0, description="librdkafka batching delay")
    producer_compression: str = Field("lz4", description="none | gzip | snappy | lz4 | zstd")
    producer_flush_timeout_s: float = Field(60.0, gt=0, description="wait on exit for deliveries")
    source_read_timeout_s: float = Field(
        5.0, gt=0, description="a live stream silent this long is reported and reopened"
    )
    source_reconnect_s: float = Field(2.0, gt=0, description="pause between stream reopen tries")
    producer_metrics_port: int = Field(
        0, ge=0, description="producer's Prometheus /metrics; 0 = off (many run per host)"
    )

    # --- services ---
    kafka_bootstrap: str = "127.0.0.1:9092"
    # --- Kafka security (docs/security.md, "Kafka"); every client takes them from
    # camtopo/connections.py ---
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_SSL", "SSL"] = Field(
        "PLAINTEXT",
        description="PLAINTEXT (local stack) / SASL_SSL (SCRAM login over TLS) / SSL (TLS, "
        "client certificate as the principal); docs/security.md",
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL_SSL: the login mechanism"
    )
    kafka_username: str | None = Field(None, description="SASL_SSL: the role's Kafka user")
    kafka_password: SecretStr | None = Field(None, description="its password (never logged)")
    kafka_ca_file: str | None = Field(
        None, description="SASL_SSL/SSL: CA bundle that signed the brokers' certificates"
    )
    kafka_cert_file: str | None = Field(
        None, description="SASL_SSL/SSL: client certificate (PEM), if the broker asks for one"
    )
    kafka_key_file: str | None = Field(None, description="the client certificate's key (PEM)")
    occupancy_topic: str = "occupancy"
    topology_changes_topic: str = "topology-changes"
    dead_letter_topic: str = "occupancy-dead-letter"
    occupancy_partitions: int = Field(8, ge=1)
    schema_registry_url: str = Field(
        "",
        description="Confluent-compatible schema registry API root (the local one: "
        "http://127.0.0.1:8081/apis/ccompat/v7); empty = file mode, fixed schema ids "
        "(docs/events.md)",
    )
    schema_registry_wait_seconds: float = Field(
        15.0, ge=0, description="how long to retry an unreachable registry before giving up"
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="rediss://... for TLS; keep credentials out of it (the settings below)",
    )
    redis_username: str | None = Field(None, description="Redis ACL user (docs/security.md)")
    redis_password: SecretStr | None = Field(None, description="its password (never logged)")
    redis_ca_file: str | None = Field(
        None, description="rediss: CA bundle that signed the server's certificate"
    )
    redis_cert_file: str | None = Field(
        None, description="rediss: client certificate, if the server asks for one"
    )
    redis_key_file: str | None = Field(None, description="rediss: the client certificate's key")
    redis_shards: int = Field(64, ge=1, description="hash-tag shards for count rows")
    http_host: str = "127.0.0.1"
    http_port: int = 8080

    # --- query service security (docs/security.md, "HTTP") ---
    api_token: SecretStr | None = Field(
        None,
        min_length=16,
        description="bearer token the query service requires (at least 16 characters; "
        "never logged); needed to listen beyond loopback",
    )
    api_auth: bool = Field(
        True,
        description="off: allow serving beyond loopback without a token (logged as a warning)",
    )
    metrics_auth: bool = Field(False, description="on: /metrics needs the bearer token too")
    stream_token_ttl_s: float = Field(
        300.0, gt=0, le=86_400, description="life of the viewer's signed event-stream token"
    )
    http_cors_origins: str = Field(
        "", description="comma-separated origins allowed cross-origin; empty = no CORS headers"
    )
    http_max_body_bytes: int = Field(
        65_536, ge=0, description="larger request bodies are refused (413); no route reads one"
    )
    http_max_url_chars: int = Field(
        8000,
        ge=256,
        le=8190,
        description="longer URLs are refused (414); aiohttp's own limit for a request line is 8190",
    )
    http_max_concurrent: int = Field(
        64, ge=1, description="requests served at once; more are refused 503 with Retry-After"
    )
    http_max_streams: int = Field(
        100, ge=1, description="open viewer event streams; more are refused 503 with Retry-After"
    )

    # --- topology store and query service (topology_store/) ---
    reweight_step: float = Field(
        0.05, gt=0, le=1, description="publish EDGE_REWEIGHTED only when weight moves this much"
    )
    change_log_length: int = Field(10_000, ge=100, description="topology changes kept in Redis")
    partition_max_cameras: int = Field(
        64, ge=2, description="connected groups larger than this are split by community detection"
    )

    @property
    def tick_ms(self) -> float:
        return 1000.0 / self.fps

    @property
    def temporal_tolerance_ticks(self) -> int:
        return round(self.temporal_tolerance_ms / self.tick_ms)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
