"""Prometheus metrics of the camera-side producer (default registry; ``producer_metrics_port``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RECORDS_OUT = Counter("camtopo_producer_records_total", "occupancy records queued to Kafka")
FRAMES_OUT = Counter(
    "camtopo_producer_frames_total",
    "frames published, by status (OK, MISSING, ERROR, END)",
    ["status"],
)
DELIVERED = Counter(
    "camtopo_producer_deliveries_total", "delivery reports from the broker, by result", ["result"]
)
BACKPRESSURE = Counter(
    "camtopo_producer_backpressure_waits_total", "waits on a full local queue (broker slow)"
)
LATE_TICKS = Counter(
    "camtopo_producer_late_ticks_total", "real-time ticks that started more than a period late"
)
# Per camera so "a camera went silent" is one alert rule; set when the broker confirms a record
# carrying an OK frame, so a feed that only yields MISSING/ERROR frames counts as silent too.
LAST_FRAME = Gauge(
    "camtopo_camera_last_frame_timestamp_seconds",
    "wall time the broker confirmed the camera's latest record with a frame of data",
    ["camera"],
)
# Live streams (RTSP/HTTP) only: is the camera's stream delivering, and how often it came back.
STREAM_UP = Gauge(
    "camtopo_camera_stream_up",
    "1 while the camera's live stream delivers frames, 0 while it is down or stalled",
    ["camera"],
)
STREAM_RECONNECTS = Counter(
    "camtopo_camera_stream_reconnects_total",
    "times the camera's live stream was opened again after it had been lost",
    ["camera"],
)
