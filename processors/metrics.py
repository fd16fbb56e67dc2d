"""Prometheus metrics of the streaming processor (default registry, served on its own port)."""

from __future__ import annotations

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from camtopo.core.ranges import Verdict

# Detection delay: Tr + the early-close hold (3 s) when every camera keeps up, Tr + Td (7 s)
# when ranges wait their cutoff: fine buckets over both.
_DELAY = (1, 2, 2.5, 3, 3.25, 3.5, 3.75, 4, 4.5, 5, 6, 6.5, 7, 7.5, 8, 8.5, 9, 9.5, 10, 11, 12,
          15, 20, 30, 60, 120, 300)  # fmt: skip
_WORK = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

RECORDS_IN = Counter("camtopo_records_in_total", "occupancy records consumed")
DEAD_LETTERS_TRUNCATED = Counter(
    "camtopo_dead_letters_truncated_total",
    "dead letters sent with the original's first bytes only (too large for Kafka as they were)",
)
DEAD_LETTER_RETRIES = Counter(
    "camtopo_dead_letter_retries_total",
    "dead letters Kafka did not take, sent again (the record stays unacked until one is taken)",
)
REDELIVERED = Counter(
    "camtopo_redelivered_records_total",
    "records read again after a rebalance (Faust re-reads from the committed offset): "
    "already taken, so neither judged again nor dead-lettered; acked with the original",
)
FRAMES = Counter(
    "camtopo_frames_total",
    "frames with data, by what happened to them (accepted, held, late, closed)",
    ["verdict"],
)
FRAMES_COUNTED = Counter("camtopo_frames_counted_total", "frames handed to the exclusion engine")
OCCUPIED_COUNTED = Counter(
    "camtopo_occupied_windows_counted_total",
    "occupied (window, tick) pairs counted: the crowd, which the counting cost follows",
)
DEAD_LETTERS = Counter(
    "camtopo_dead_letters_total", "records sent to the dead-letter topic", ["reason"]
)
RANGES_CLOSED = Counter("camtopo_ranges_closed_total", "event-time ranges closed and counted")
RANGES_CLOSED_EARLY = Counter(
    "camtopo_ranges_closed_early_total",
    "closed batches that did not wait Td: every live camera had sent past them",
)
RANGE_SECONDS = Histogram(
    "camtopo_range_processing_seconds",
    "time to count a closed batch and checkpoint a slice of it (off the event loop)",
    buckets=_WORK,
)
DELAY = Histogram(
    "camtopo_detection_delay_seconds",
    "capture time of a frame to the update of the exclusion counts it contributes to",
    buckets=_DELAY,
)
DURABLE_DELAY = Histogram(
    "camtopo_durable_delay_seconds",
    "capture time of a frame to the Redis checkpoint that holds its counts (all shards)",
    buckets=_DELAY,
)
CLOCK_LAG = Gauge("camtopo_processor_clock_lag_seconds", "wall clock minus the processor clock")
LAST_RANGE = Gauge("camtopo_processor_last_range_id", "last range counted")
OPEN_FRAMES = Gauge("camtopo_open_range_frames", "frames waiting in open ranges")
BACKPRESSURE_SECONDS = Counter(
    "camtopo_processor_backpressure_seconds_total",
    "time the single worker took no record: more due frames than CAMTOPO_PROCESSOR_BUFFER_FRAMES",
)
UNACKED = Gauge("camtopo_unacked_records", "records whose frames are not yet checkpointed")
ENGINE_BYTES = Gauge("camtopo_engine_bytes", "memory held by the exclusion engine's arrays")
LATE_FRACTION = Gauge(
    "camtopo_late_fraction_last_minute",
    "frames dropped (late or closed) / all frames received in the last full minute",
)
CONSUMER_LAG = Gauge(
    "camtopo_consumer_lag_records",
    "high watermark minus the group's committed offset, summed over the assigned partitions",
)
UNCONFIRMED_PARTITIONS = Gauge(
    "camtopo_unconfirmed_partitions",
    "assigned partitions with no fetch answer from the broker lately (their ranges stay open)",
)
COUNTED_THROUGH = Gauge(
    "camtopo_counted_through_timestamp_seconds",
    "event time (Unix s) at which the last counted range ends",
)
OWNED_PARTITIONS = Gauge(
    "camtopo_owned_partitions", "occupancy partitions assigned (ranges close only with all)"
)
STORE_RETRIES = Counter(
    "camtopo_store_retries_total", "Redis calls retried while it was unreachable", ["call"]
)
TOPOLOGY_CHANGES = Counter("camtopo_processor_topology_changes_total", "changes published")


def observe_many(hist: Histogram, values: np.ndarray) -> None:
    """Observe many values at once (a range holds thousands of frames; a loop would cost)."""
    if values.size == 0:
        return
    bounds = np.asarray(hist._upper_bounds, dtype=np.float64)
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=bounds.size)
    for bucket, n in zip(hist._buckets, counts.tolist(), strict=False):
        if n:
            bucket.inc(n)
    hist._sum.inc(float(values.sum()))


OWNED_SHARDS = Gauge(
    "camtopo_owned_shards", "Redis shards whose rows this counting worker counts (partitioned)"
)
COUNTER_PHASE_SECONDS = Counter(
    "camtopo_counter_phase_seconds_total",
    "a counting worker's time per phase of its ranges: frames (into the buffer), count "
    "(padding and the engine), checkpoint, half_edges (its adjacency halves to Redis), "
    "join (leader: halves joined, topology published)",
    ["phase"],
)
DEFERRED_RANGES = Counter(
    "camtopo_counter_deferred_ranges_total",
    "ranges counted while the next one had already closed, whose checkpoint slice and "
    "half-edge refresh waited (counter_defer_max_ranges)",
)
BLOCKS_PUBLISHED = Counter(
    "camtopo_range_blocks_published_total", "range blocks an assembler put on the ranges topic"
)


# Frames dropped: sent after their range's cutoff, or come after the clock closed their range
# (a clock run ahead, a broker outage closed as idle). Replayed ticks are not lost.
LOST = (Verdict.LATE, Verdict.CLOSED)


class LateMinute:
    """Feeds LATE_FRACTION: lost (:data:`LOST`) / all frames of the last full wall-clock
    minute."""

    def __init__(self) -> None:
        self._minute = (0, 0, 0)  # (wall minute, frames, late)

    def add(self, wall_ms: float, frames: int, late: int) -> None:
        minute = int(wall_ms // 60_000)
        m, n, k = self._minute
        if minute != m:
            if n:
                LATE_FRACTION.set(k / n)
            self._minute = (minute, frames, late)
        else:
            self._minute = (m, n + frames, k + late)
