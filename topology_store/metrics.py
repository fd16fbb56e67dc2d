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
