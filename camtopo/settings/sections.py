"""The settings sections, one class per concern; each field reads one ``CAMTOPO_*`` variable.

Every field names its environment variable (``validation_alias``): the names are those of the
flat settings object this replaced, so deployments need no change. Within Python a field is
set by its own name (``KafkaSettings(bootstrap=...)``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Section(BaseSettings):
    # hide_input_in_errors: a refused value is not echoed, so a mistyped token or a Redis URL
    # with a password in it never reaches a log through a validation error. The error names
    # the variable (its alias). populate_by_name: code sets fields by name, the environment by
    # variable. Frozen: settings are read once and shared.
    model_config = SettingsConfigDict(
        extra="ignore", hide_input_in_errors=True, populate_by_name=True, frozen=True
    )


class GridSettings(_Section):
    """The window grid on each camera's frame, and the frame rate (paper sections 4.1, 6)."""

    cols: int = Field(
        12,
        ge=1,
        description="windows across a 320 px frame (40 px each)",
        validation_alias="CAMTOPO_GRID_COLS",
    )
    rows: int = Field(
        9, ge=1, description="windows down a 240 px frame", validation_alias="CAMTOPO_GRID_ROWS"
    )
    frame_width: int = Field(320, ge=1, validation_alias="CAMTOPO_FRAME_WIDTH")
    frame_height: int = Field(240, ge=1, validation_alias="CAMTOPO_FRAME_HEIGHT")
    fps: int = Field(
        10,
        ge=1,
        description="frame rate; one tick = 1/fps s. estimate, process and store follow "
        "network.json's fps (this one, set to another value, is refused as a contradiction)",
        validation_alias="CAMTOPO_FPS",
    )

    @property
    def tick_ms(self) -> float:
        return 1000.0 / self.fps


class AlgorithmSettings(_Section):
    """Padding, evidence thresholds and the fast engine's pruning and memory budget (paper
    sections 4.1-5.1; camtopo/core/engine.py: gate 0 + prune off = the paper's exact counts)."""

    spatial_radius: int = Field(
        1, ge=0, description="1 = the 8-neighbourhood", validation_alias="CAMTOPO_SPATIAL_RADIUS"
    )
    temporal_tolerance_ms: int = Field(
        500,
        ge=0,
        description="temporal padding; also absorbs clock skew between cameras",
        validation_alias="CAMTOPO_TEMPORAL_TOLERANCE_MS",
    )
    count_limit: int = Field(
        4096,
        ge=2,
        le=65536,
        description="O is halved (with P) on reaching this; the paper's byte counts are 256. "
        "At 256 a crowd surge fills a busy window's whole memory (campus-100 camera precision "
        "0.09); above 256 counts take 2 bytes",
        validation_alias="CAMTOPO_COUNT_LIMIT",
    )
    # The paper's O_ref = 20 and C* = 0.8 were tuned by eye on its campus. On ours (campus-100,
    # 1 h, count_limit 4096) they gave camera precision 0.33; 50 and 0.95 gave 0.98 at overlap
    # recall 0.92 (benchmarks/accuracy.py; docs/architecture.md has the sweep).
    o_ref: float = Field(
        50.0,
        gt=1,
        description="opportunities for reliable exclusion (paper: 20)",
        validation_alias="CAMTOPO_O_REF",
    )
    c_star: float = Field(
        0.95,
        gt=0,
        lt=1,
        description="adjacency threshold on C' both ways (paper: 0.8)",
        validation_alias="CAMTOPO_C_STAR",
    )
    # (see camtopo/core/engine.py; gate 0 + prune off + no budget = the paper's exact counts)
    activity_gate: int = Field(
        40,
        ge=0,
        description="a window's row starts after N occupied ticks: rarely used windows (and "
        "false detections) cost no memory; below ~41 opportunities C' cannot pass C* anyway",
        validation_alias="CAMTOPO_ACTIVITY_GATE",
    )
    prune: bool = Field(
        True,
        description="release (window, camera) segments refuted by exclusion",
        validation_alias="CAMTOPO_PRUNE",
    )
    # A true overlap shows C ~ 0.97+, so C < 0.5 after 16 opportunities rules a pair out. A
    # higher ratio frees more memory but re-admits more pairs with short, fresh evidence:
    # at 0.75 campus-100 camera precision fell from 0.98 to 0.84.
    prune_min_opportunities: int = Field(
        16, ge=1, le=255, validation_alias="CAMTOPO_PRUNE_MIN_OPPORTUNITIES"
    )
    prune_max_ratio: float = Field(0.5, gt=0, lt=1, validation_alias="CAMTOPO_PRUNE_MAX_RATIO")
    readmit_after: int = Field(
        2048,
        ge=1,
        description="a pruned segment is re-tested after this many opportunities",
        validation_alias="CAMTOPO_READMIT_AFTER",
    )
    max_pool_mb: int = Field(
        4096,
        ge=1,
        description="budget for P segments of the whole network; bounds memory (partitioned "
        "counting workers each take the share of the rows they own)",
        validation_alias="CAMTOPO_MAX_POOL_MB",
    )
    # Moved cameras (camtopo/core/moved.py; benchmarks/results/moved_camera.json): a camera is
    # found moved when its learnt links collapse both ways and its occupancy shifts within its
    # view; its evidence is then forgotten and relearnt.
    move_detection: bool = Field(
        True,
        description="find re-aimed or re-mounted cameras and relearn them (camtopo estimate)",
        validation_alias="CAMTOPO_MOVE_DETECTION",
    )
    move_check_s: float = Field(
        60.0, gt=0, description="seconds between moved-camera checks",
        validation_alias="CAMTOPO_MOVE_CHECK_S",
    )  # fmt: skip
    move_max_ratio: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="a camera's links are contradicted when P grew by less than this share of "
        "what their learnt ratio predicts, both ways",
        validation_alias="CAMTOPO_MOVE_MAX_RATIO",
    )
    move_min_opportunities: float = Field(
        100.0,
        gt=0,
        description="opportunities of a camera's links in the last two checks before it is tested",
        validation_alias="CAMTOPO_MOVE_MIN_OPPORTUNITIES",
    )
    move_min_shift: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Hellinger distance of recent vs long-run occupancy (per image zone) a "
        "moved camera shows at least ...",
        validation_alias="CAMTOPO_MOVE_MIN_SHIFT",
    )
    move_shift_z: float = Field(
        4.0,
        gt=0,
        description="... and this many deviations above the camera's usual distance",
        validation_alias="CAMTOPO_MOVE_SHIFT_Z",
    )


class TransitSettings(_Section):
    """Lag-resolved transit links between non-overlapping cameras (camtopo/core/transit.py)."""

    enabled: bool = Field(
        True,
        description="lag-resolved appearance evidence",
        validation_alias="CAMTOPO_TRANSIT_ENABLED",
    )
    max_lag_s: float = Field(
        60.0,
        gt=0,
        description="longest transit time looked for",
        validation_alias="CAMTOPO_TRANSIT_MAX_LAG_S",
    )
    bin_s: float = Field(
        1.0, gt=0, description="lag histogram bin", validation_alias="CAMTOPO_TRANSIT_BIN_S"
    )
    control_s: float = Field(
        120.0,
        ge=0,
        description="each side of the lag range for the destination's base rate",
        validation_alias="CAMTOPO_TRANSIT_CONTROL_S",
    )
    z_star: float = Field(
        5.0,
        gt=0,
        description="Poisson likelihood-ratio z of the best lag band for a link",
        validation_alias="CAMTOPO_TRANSIT_Z_STAR",
    )
    min_ratio: float = Field(
        1.5,
        ge=1,
        description="band arrivals / expected by chance",
        validation_alias="CAMTOPO_TRANSIT_MIN_RATIO",
    )
    min_excess: float = Field(
        8.0,
        ge=0,
        description="band arrivals above chance",
        validation_alias="CAMTOPO_TRANSIT_MIN_EXCESS",
    )
    max_dest: int = Field(
        256,
        ge=1,
        description="destination zones tracked per source zone (bounds memory)",
        validation_alias="CAMTOPO_TRANSIT_MAX_DEST",
    )
    max_cameras: int = Field(
        2000,
        ge=2,
        description="larger networks skip transit evidence (its zone-pair map is quadratic; "
        "partition first), with a warning",
        validation_alias="CAMTOPO_TRANSIT_MAX_CAMERAS",
    )
    min_report_age_s: float = Field(
        1200.0,
        ge=0,
        description="a lag histogram reports a link only after this much evidence (a crowd "
        "surge in a young histogram's first minutes passes the test)",
        validation_alias="CAMTOPO_TRANSIT_MIN_REPORT_AGE_S",
    )
    appearance: bool = Field(
        True,
        description="where records carry blobs' hue and brightness, count only departure-"
        "arrival pairs that could be one person",
        validation_alias="CAMTOPO_TRANSIT_APPEARANCE",
    )
    alike_hue: float = Field(
        0.5,
        ge=0,
        le=1,
        description="hue histograms of one person intersect at least this much (either "
        "shifted by up to one bin)",
        validation_alias="CAMTOPO_TRANSIT_ALIKE_HUE",
    )
    alike_rank: float = Field(
        0.2,
        ge=0,
        le=1,
        description="brightness ranks (within each camera) of one person differ at most this much",
        validation_alias="CAMTOPO_TRANSIT_ALIKE_RANK",
    )


class ProcessorSettings(_Section):
    """The streaming processor (processors/): ranges Tr/Td (section 6.1), clock and
    input limits, checkpoints, its consumer group and metrics."""

    range_seconds: float = Field(
        2.0, gt=0, description="Tr", validation_alias="CAMTOPO_RANGE_SECONDS"
    )
    late_cutoff_seconds: float = Field(
        5.0, ge=0, description="Td", validation_alias="CAMTOPO_LATE_CUTOFF_SECONDS"
    )
    early_close: bool = Field(
        False,
        description="close a range as soon as every live camera has sent a frame past its end "
        "(Td stays the cap for stragglers); off: every range waits Td. Off by default: through "
        "a controller loss the partitioned assemblers still drop frames with it (200 in one "
        "run; docs/operations.md, 'Kafka broker or controller loss')",
        validation_alias="CAMTOPO_EARLY_CLOSE",
    )
    early_close_hold_seconds: float = Field(
        1.0,
        ge=0,
        description="early close never comes sooner than this after a range's end (at most Td): "
        "a camera not seen yet, or back from silence, whose frames are sent within it is "
        "always counted. At least a producer's record period (frames_per_record / FPS)",
        validation_alias="CAMTOPO_EARLY_CLOSE_HOLD_SECONDS",
    )
    camera_silence_seconds: float = Field(
        10.0,
        gt=0,
        description="a camera with no record for this long (processor clock) stops holding "
        "ranges open until Td; its frames that come later for ranges closed meanwhile are late. "
        "Shorter than a producer stall (a broker failover stalls every producer 6-8 s) loses "
        "the stalled cameras' buffered frames; 10 s is above the longest stall measured (8.6 s, "
        "a controller killed on the 3-broker cluster)",
        validation_alias="CAMTOPO_CAMERA_SILENCE_SECONDS",
    )
    group: str = Field(
        "camtopo-processor",
        description="Kafka consumer group / Faust id",
        validation_alias="CAMTOPO_PROCESSOR_GROUP",
    )
    idle_partition_seconds: float = Field(
        15.0,
        gt=0,
        description="a partition silent this long stops holding the clock back. Above the "
        "broker failover time: a lost broker stalls every partition it replicates until it is "
        "fenced (broker.session.timeout.ms, 9 s by default) and a leader elected, and those "
        "partitions answer fetches with nothing meanwhile (stalls of 3.9-8.6 s measured)",
        validation_alias="CAMTOPO_IDLE_PARTITION_SECONDS",
    )
    broker_silence_seconds: float = Field(
        3.0,
        gt=0,
        description="a partition the broker has not answered a fetch for this long (Faust "
        "fetches wait 1.5 s) counts as unreachable, not idle: its ranges stay open while "
        "producers buffer. Keep it below idle_partition_seconds",
        validation_alias="CAMTOPO_BROKER_SILENCE_SECONDS",
    )
    broker_outage_hold_seconds: float = Field(
        300.0,
        gt=0,
        description="ranges wait this long at most for an unreachable partition (librdkafka "
        "producers give up buffered records after message.timeout.ms, 300 s); then wall time "
        "closes them again and what comes later is counted as closed",
        validation_alias="CAMTOPO_BROKER_OUTAGE_HOLD_SECONDS",
    )
    max_future_seconds: float = Field(
        60.0,
        gt=0,
        description="frames stamped this far after their record are refused",
        validation_alias="CAMTOPO_MAX_FUTURE_SECONDS",
    )
    max_clock_lead_seconds: float = Field(
        2.0,
        gt=0,
        description="a record or frame stamped more than this ahead of the processor's wall "
        "clock is a dead letter (`ahead_of_clock`) and moves no clock; a checkpoint that far "
        "ahead is refused at start. Cameras must agree far better than this for padding anyway",
        validation_alias="CAMTOPO_MAX_CLOCK_LEAD_SECONDS",
    )
    max_frame_age_seconds: float = Field(
        3600.0,
        gt=0,
        description="frames captured this long before their record are refused",
        validation_alias="CAMTOPO_MAX_FRAME_AGE_SECONDS",
    )
    topology_every_ranges: int = Field(
        5,
        ge=1,
        description="recompute adjacency and publish changes every N closed batches (counting "
        "workers: every owned shard's half-edges refreshed over N ranges, time share permitting)",
        validation_alias="CAMTOPO_TOPOLOGY_EVERY_RANGES",
    )
    metrics_port: int = Field(
        9108,
        ge=0,
        description="Prometheus /metrics; 0 = off",
        validation_alias="CAMTOPO_PROCESSOR_METRICS_PORT",
    )
    session_timeout_seconds: float = Field(
        10.0,
        ge=6.0,
        le=300.0,
        description="Kafka group session: a killed worker's partitions move after this long",
        validation_alias="CAMTOPO_PROCESSOR_SESSION_TIMEOUT_SECONDS",
    )
    checkpoint_spread_ranges: int = Field(
        10,
        ge=1,
        description="each closed batch checkpoints 1/N of the Redis shards, so every shard "
        "is written every N batches (Redis and Kafka commits lag the counts by up to N ranges)",
        validation_alias="CAMTOPO_CHECKPOINT_SPREAD_RANGES",
    )
    buffer_frames: int = Field(
        200_000,
        ge=1000,
        description="single role: stop taking records while more than this many frames of "
        "ranges already due wait to be counted, so a worker that cannot keep up leaves the "
        "excess on Kafka (consumer lag) rather than in memory",
        validation_alias="CAMTOPO_PROCESSOR_BUFFER_FRAMES",
    )
    checkpoint_retry_seconds: float = Field(
        120.0,
        ge=0,
        description="keep retrying a checkpoint while Redis is unreachable",
        validation_alias="CAMTOPO_CHECKPOINT_RETRY_SECONDS",
    )
    camera_registry: bool = Field(
        True,
        description="follow the camera registry in Redis (docs/operations.md): removed cameras' "
        "frames become dead letters and their evidence is forgotten; the query service shows "
        "registry names. Off: every camera of network.json is counted",
        validation_alias="CAMTOPO_CAMERA_REGISTRY",
    )
    camera_registry_poll_seconds: float = Field(
        5.0,
        ge=0,
        description="how often a processor reads the registry's version (at a range close; "
        "0: at every range close)",
        validation_alias="CAMTOPO_CAMERA_REGISTRY_POLL_SECONDS",
    )


class PartitionedSettings(_Section):
    """Partitioned processing: the assembler and the counting workers (docs/streaming.md)."""

    assembler_group: str = Field(
        "camtopo-assemblers",
        description="consumer group of `camtopo process --role assemble`",
        validation_alias="CAMTOPO_ASSEMBLER_GROUP",
    )
    counter_group: str = Field(
        "camtopo-counters",
        description="consumer group of `camtopo process --role count`: it shares the Redis "
        "shards (the partitions of counter_shards_topic) among the counting workers",
        validation_alias="CAMTOPO_COUNTER_GROUP",
    )
    ranges_topic: str = Field(
        "occupancy-ranges",
        description="closed ranges, one block per occupancy partition",
        validation_alias="CAMTOPO_RANGES_TOPIC",
    )
    ranges_retention_hours: float = Field(
        2.0,
        gt=0,
        description="how long blocks stay on the ranges topic: a counting worker restarted "
        "from a checkpoint older than this cannot replay it (it logs the gap)",
        validation_alias="CAMTOPO_RANGES_RETENTION_HOURS",
    )
    counter_shards_topic: str = Field(
        "camtopo-count-shards",
        description="an empty topic with one partition per Redis shard; its assignment in "
        "counter_group says which worker counts which rows",
        validation_alias="CAMTOPO_COUNTER_SHARDS_TOPIC",
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
        validation_alias="CAMTOPO_COUNTER_CHECKPOINT_SPREAD_RANGES",
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
        validation_alias="CAMTOPO_TOPOLOGY_MAX_SHARE",
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
        validation_alias="CAMTOPO_COUNTER_DEFER_MAX_RANGES",
    )
    counter_buffer_frames: int = Field(
        2_000_000,
        ge=1000,
        description="frames a counting worker buffers for ranges not yet whole before it "
        "pauses the partitions that run ahead (bounds its memory)",
        validation_alias="CAMTOPO_COUNTER_BUFFER_FRAMES",
    )


class LagExporterSettings(_Section):
    """The consumer-group lag exporter (camtopo/operations/lag.py, ``camtopo lag-exporter``)."""

    port: int = Field(
        9308,
        ge=0,
        description="its /metrics (kafka-exporter's port)",
        validation_alias="CAMTOPO_LAG_EXPORTER_PORT",
    )
    groups: str = Field(
        "",
        description="comma-separated consumer groups to report; empty = every group",
        validation_alias="CAMTOPO_LAG_EXPORTER_GROUPS",
    )
    timeout_s: float = Field(
        3.0,
        gt=0,
        description="Kafka request timeout per scrape; keep under the scrape timeout",
        validation_alias="CAMTOPO_LAG_EXPORTER_TIMEOUT_S",
    )


class DetectionSettings(_Section):
    """Person detection on video (section 5.1; producers/detection.py)."""

    mog2_history: int = Field(
        500,
        ge=1,
        description="MOG2 frames of history (OpenCV default; 50 s at 10 FPS)",
        validation_alias="CAMTOPO_MOG2_HISTORY",
    )
    mog2_var_threshold: float = Field(
        25.0,
        gt=0,
        description="MOG2 squared Mahalanobis distance for foreground (OpenCV: 16; 25 measured"
        " fewer false windows on rendered video at equal recall, docs/producers.md)",
        validation_alias="CAMTOPO_MOG2_VAR_THRESHOLD",
    )
    mog2_learning_rate: float = Field(
        -1.0,
        description="MOG2 learning rate; -1 = automatic (1 / history)",
        validation_alias="CAMTOPO_MOG2_LEARNING_RATE",
    )
    morph_kernel_px: int = Field(
        3,
        ge=1,
        description="elliptic kernel for opening (specks) then closing (holes)",
        validation_alias="CAMTOPO_MORPH_KERNEL_PX",
    )
    min_blob_area_px: int = Field(
        12,
        ge=1,
        description="connected components smaller than this are not people",
        validation_alias="CAMTOPO_MIN_BLOB_AREA_PX",
    )


class ProducerSettings(_Section):
    """The camera-side producer (section 6.1; producers/producer.py)."""

    frames_per_record: int = Field(
        5,
        ge=1,
        description="frames batched per Avro record (0.5 s at 10 FPS)",
        validation_alias="CAMTOPO_PRODUCER_FRAMES_PER_RECORD",
    )
    queue_messages: int = Field(
        10_000,
        ge=1,
        description="bounded librdkafka queue; full = backpressure",
        validation_alias="CAMTOPO_PRODUCER_QUEUE_MESSAGES",
    )
    linger_ms: int = Field(
        20,
        ge=0,
        description="librdkafka batching delay",
        validation_alias="CAMTOPO_PRODUCER_LINGER_MS",
    )
    compression: str = Field(
        "lz4",
        description="none | gzip | snappy | lz4 | zstd",
        validation_alias="CAMTOPO_PRODUCER_COMPRESSION",
    )
    flush_timeout_s: float = Field(
        60.0,
        gt=0,
        description="wait on exit for deliveries",
        validation_alias="CAMTOPO_PRODUCER_FLUSH_TIMEOUT_S",
    )
    source_read_timeout_s: float = Field(
        5.0,
        gt=0,
        description="a live stream silent this long is reported and reopened",
        validation_alias="CAMTOPO_SOURCE_READ_TIMEOUT_S",
    )
    source_reconnect_s: float = Field(
        2.0,
        gt=0,
        description="pause between stream reopen tries",
        validation_alias="CAMTOPO_SOURCE_RECONNECT_S",
    )
    metrics_port: int = Field(
        0,
        ge=0,
        description="producer's Prometheus /metrics; 0 = off (many run per host)",
        validation_alias="CAMTOPO_PRODUCER_METRICS_PORT",
    )


class KafkaSettings(_Section):
    """The Kafka connection (docs/security.md, "Kafka") and the pipeline's topics; every
    client is built from it by camtopo/connections.py."""

    bootstrap: str = Field("127.0.0.1:9092", validation_alias="CAMTOPO_KAFKA_BOOTSTRAP")
    # camtopo/connections.py ---
    security_protocol: Literal["PLAINTEXT", "SASL_SSL", "SSL"] = Field(
        "PLAINTEXT",
        description="PLAINTEXT (local stack) / SASL_SSL (SCRAM login over TLS) / SSL (TLS, "
        "client certificate as the principal); docs/security.md",
        validation_alias="CAMTOPO_KAFKA_SECURITY_PROTOCOL",
    )
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512",
        description="SASL_SSL: the login mechanism",
        validation_alias="CAMTOPO_KAFKA_SASL_MECHANISM",
    )
    username: str | None = Field(
        None,
        description="SASL_SSL: the role's Kafka user",
        validation_alias="CAMTOPO_KAFKA_USERNAME",
    )
    password: SecretStr | None = Field(
        None, description="its password (never logged)", validation_alias="CAMTOPO_KAFKA_PASSWORD"
    )
    ca_file: str | None = Field(
        None,
        description="SASL_SSL/SSL: CA bundle that signed the brokers' certificates",
        validation_alias="CAMTOPO_KAFKA_CA_FILE",
    )
    cert_file: str | None = Field(
        None,
        description="SASL_SSL/SSL: client certificate (PEM), if the broker asks for one",
        validation_alias="CAMTOPO_KAFKA_CERT_FILE",
    )
    key_file: str | None = Field(
        None,
        description="the client certificate's key (PEM)",
        validation_alias="CAMTOPO_KAFKA_KEY_FILE",
    )
    occupancy_topic: str = Field("occupancy", validation_alias="CAMTOPO_OCCUPANCY_TOPIC")
    topology_changes_topic: str = Field(
        "topology-changes", validation_alias="CAMTOPO_TOPOLOGY_CHANGES_TOPIC"
    )
    dead_letter_topic: str = Field(
        "occupancy-dead-letter", validation_alias="CAMTOPO_DEAD_LETTER_TOPIC"
    )
    occupancy_partitions: int = Field(8, ge=1, validation_alias="CAMTOPO_OCCUPANCY_PARTITIONS")
    metadata_max_age_seconds: float = Field(
        5.0,
        gt=0,
        description="the Faust workers (single, assemble) re-read the cluster's metadata this "
        "often: aiokafka does not after a failed fetch, so a killed partition leader was "
        "fetched from for minutes (its default is 300 s)",
        validation_alias="CAMTOPO_KAFKA_METADATA_MAX_AGE_SECONDS",
    )


class SchemaRegistrySettings(_Section):
    """The Avro schema registry (docs/events.md)."""

    url: str = Field(
        "",
        description="Confluent-compatible schema registry API root (the local one: "
        "http://127.0.0.1:8081/apis/ccompat/v7); empty = file mode, fixed schema ids "
        "(docs/events.md)",
        validation_alias="CAMTOPO_SCHEMA_REGISTRY_URL",
    )
    wait_seconds: float = Field(
        15.0,
        ge=0,
        description="how long to retry an unreachable registry before giving up",
        validation_alias="CAMTOPO_SCHEMA_REGISTRY_WAIT_SECONDS",
    )


class RedisSettings(_Section):
    """The Redis connection (docs/security.md, "Redis") and the count-row shards; every
    client is built from it by camtopo/connections.py."""

    url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="rediss://... for TLS; keep credentials out of it (the settings below); "
        "memory://NAME: the in-process test double (tests only, docs/architecture.md)",
        validation_alias="CAMTOPO_REDIS_URL",
    )
    username: str | None = Field(
        None,
        description="Redis ACL user (docs/security.md)",
        validation_alias="CAMTOPO_REDIS_USERNAME",
    )
    password: SecretStr | None = Field(
        None, description="its password (never logged)", validation_alias="CAMTOPO_REDIS_PASSWORD"
    )
    ca_file: str | None = Field(
        None,
        description="rediss: CA bundle that signed the server's certificate",
        validation_alias="CAMTOPO_REDIS_CA_FILE",
    )
    cert_file: str | None = Field(
        None,
        description="rediss: client certificate, if the server asks for one",
        validation_alias="CAMTOPO_REDIS_CERT_FILE",
    )
    key_file: str | None = Field(
        None,
        description="rediss: the client certificate's key",
        validation_alias="CAMTOPO_REDIS_KEY_FILE",
    )
    shards: int = Field(
        64,
        ge=1,
        description="hash-tag shards for count rows",
        validation_alias="CAMTOPO_REDIS_SHARDS",
    )
    sentinels: str | None = Field(
        None,
        description="host:port,host:port of Redis Sentinels: the primary is asked of them and "
        "followed through a failover (the URL then gives only scheme and database)",
        validation_alias="CAMTOPO_REDIS_SENTINELS",
    )
    sentinel_master: str = Field(
        "camtopo",
        description="the primary's name in the sentinels' configuration",
        validation_alias="CAMTOPO_REDIS_SENTINEL_MASTER",
    )
    min_replicas_acked: int = Field(
        0,
        ge=0,
        description="replicas that must hold a checkpoint (WAIT) before Kafka is acked; 0 for "
        "a single Redis, 1 with a replica (docs/operations.md, 'Redis failover')",
        validation_alias="CAMTOPO_REDIS_MIN_REPLICAS_ACKED",
    )
    wait_timeout_ms: int = Field(
        2000,
        ge=1,
        description="how long a checkpoint waits for those replicas before it is acked "
        "anyway, counted in camtopo_store_replica_shortfall_total",
        validation_alias="CAMTOPO_REDIS_WAIT_TIMEOUT_MS",
    )


class ServiceSettings(_Section):
    """The HTTP query service: address, access (docs/security.md, "HTTP") and limits."""

    host: str = Field("127.0.0.1", validation_alias="CAMTOPO_HTTP_HOST")
    port: int = Field(8080, validation_alias="CAMTOPO_HTTP_PORT")
    api_token: SecretStr | None = Field(
        None,
        min_length=16,
        description="bearer token the query service requires (at least 16 characters; "
        "never logged); needed to listen beyond loopback",
        validation_alias="CAMTOPO_API_TOKEN",
    )
    api_auth: bool = Field(
        True,
        description="off: allow serving beyond loopback without a token (logged as a warning)",
        validation_alias="CAMTOPO_API_AUTH",
    )
    metrics_auth: bool = Field(
        False,
        description="on: /metrics needs the bearer token too",
        validation_alias="CAMTOPO_METRICS_AUTH",
    )
    stream_token_ttl_s: float = Field(
        300.0,
        gt=0,
        le=86_400,
        description="life of the viewer's signed event-stream token",
        validation_alias="CAMTOPO_STREAM_TOKEN_TTL_S",
    )
    cors_origins: str = Field(
        "",
        description="comma-separated origins allowed cross-origin; empty = no CORS headers",
        validation_alias="CAMTOPO_HTTP_CORS_ORIGINS",
    )
    max_body_bytes: int = Field(
        65_536,
        ge=0,
        description="larger request bodies are refused (413); no route reads one",
        validation_alias="CAMTOPO_HTTP_MAX_BODY_BYTES",
    )
    max_url_chars: int = Field(
        8000,
        ge=256,
        le=8190,
        description="longer URLs are refused (414); aiohttp's own limit for a request line is 8190",
        validation_alias="CAMTOPO_HTTP_MAX_URL_CHARS",
    )
    max_concurrent: int = Field(
        64,
        ge=1,
        description="requests served at once; more are refused 503 with Retry-After",
        validation_alias="CAMTOPO_HTTP_MAX_CONCURRENT",
    )
    max_streams: int = Field(
        100,
        ge=1,
        description="open viewer event streams; more are refused 503 with Retry-After",
        validation_alias="CAMTOPO_HTTP_MAX_STREAMS",
    )


class StoreSettings(_Section):
    """The topology store (topology_store/): published changes and partitions."""

    reweight_step: float = Field(
        0.05,
        gt=0,
        le=1,
        description="publish EDGE_REWEIGHTED only when weight moves this much",
        validation_alias="CAMTOPO_REWEIGHT_STEP",
    )
    change_log_length: int = Field(
        10_000,
        ge=100,
        description="topology changes kept in Redis",
        validation_alias="CAMTOPO_CHANGE_LOG_LENGTH",
    )
    partition_max_cameras: int = Field(
        64,
        ge=2,
        description="connected groups larger than this are split by community detection",
        validation_alias="CAMTOPO_PARTITION_MAX_CAMERAS",
    )
