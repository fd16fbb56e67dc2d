"""Prometheus metrics of the topology store and query service (default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

CHECKPOINT_SECONDS = Histogram(
    "camtopo_store_checkpoint_seconds", "Time to checkpoint a range's dirty rows", buckets=_FAST
)
REDIS_WRITE_SECONDS = Histogram(
    "camtopo_store_redis_write_seconds",
    "Latency of one Redis write transaction",
    ["what"],
    buckets=_FAST,
)
ROWS_WRITTEN = Counter("camtopo_store_rows_written_total", "Count rows written to Redis")
LAST_RANGE = Gauge("camtopo_store_last_range_id", "Last range id checkpointed")
TOPOLOGY_SECONDS = Histogram(
    "camtopo_store_topology_update_seconds",
    "Time to recompute adjacency, diff and store the camera graph",
    buckets=_FAST,
)
EDGES = Gauge("camtopo_topology_edges", "Camera edges in the current topology")
CAMERAS = Gauge("camtopo_topology_cameras", "Cameras in the network the topology covers")
CHANGES = Counter("camtopo_topology_changes_total", "Topology changes found", ["change"])
CHANGES_PUBLISHED = Counter(
    "camtopo_topology_changes_published_total", "Topology-change records delivered to Kafka"
)
HTTP_REQUESTS = Counter(
    "camtopo_http_requests_total", "Query service requests", ["route", "status"]
)
HTTP_SECONDS = Histogram(
    "camtopo_http_request_seconds", "Query service request latency", ["route"], buckets=_FAST
)
SSE_CLIENTS = Gauge("camtopo_viewer_stream_clients", "Open server-sent-event streams")

# Redis failover (docs/operations.md, "Redis failover").
SERVER_CHANGES = Counter(
    "camtopo_store_server_changes_total",
    "Checkpoints that found another Redis server than the last one (failover or restart): "
    "lost_writes = it lacked some of this store's writes, rewritten from memory; complete = "
    "nothing lacked; rebuild = a counting worker rebuilt from Redis and replayed",
    ["outcome"],
)
ROWS_REWRITTEN = Counter(
    "camtopo_store_rows_rewritten_total",
    "Count rows rewritten because the Redis server answering lacked them (after a failover)",
)
REPLICAS_ACKED = Gauge(
    "camtopo_store_replicas_acked",
    "Replicas that confirmed the last checkpoint (WAIT; with CAMTOPO_REDIS_MIN_REPLICAS_ACKED)",
)
REPLICA_SHORTFALL = Counter(
    "camtopo_store_replica_shortfall_total",
    "Checkpoints acked with fewer replicas than CAMTOPO_REDIS_MIN_REPLICAS_ACKED (a failover "
    "then could lose them)",
)
