"""Shard leases of the partitioned counting workers (processors/counter.py): a worker claims
its shards, loads them, checkpoints them under its lease, and shares its half-edges; the
leader writes the meta of the whole run."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from camtopo.core.partitioned import owned_windows
from topology_store import metrics
from topology_store.checkpoints import CheckpointWriter
from topology_store.context import (
    NO_RANGE,
    Estimator,
    LeaseLost,
    StoreContext,
    StoreError,
    fast_counts,
)
from topology_store.rows import ShardRows

# Half-edges as stored: window indices fit int32, counts uint16 (O < count_limit <= 65536).
_HALF = np.dtype([("i", "<i4"), ("j", "<i4"), ("o", "<u2"), ("p", "<u2")])
_HALF_VERSION = b"\x02"


class ShardLeases:
    """What one counting worker writes and reads of the shards it holds."""

    def __init__(self, ctx: StoreContext, rows: ShardRows, writer: CheckpointWriter) -> None:
        self.ctx = ctx
        self.rows = rows
        self.writer = writer  # WAIT for replicas as the single role does

    def claim_shards(self, shards: Iterable[int], token: str) -> None:
        """Make ``token`` the only writer of these shards: a worker that lost them in a
        rebalance (or hung past its session) fails its next write with LeaseLost."""
        pipe = self.ctx.redis.pipeline(transaction=False)
        for shard in shards:
            pipe.set(self.ctx.keys.owner(shard), token)
        pipe.execute()
        self.ctx.state.run_id = self.ctx.run_id()

    def held_range(self, shards: Iterable[int]) -> int:
        """The range all of ``shards`` hold in Redis, as this store last wrote or read them."""
        ranges = self.ctx.state.shard_ranges
        return min((ranges.get(s, NO_RANGE) for s in shards), default=NO_RANGE)

    def load_shards_into(
        self, estimator: Estimator, shards: Sequence[int]
    ) -> dict[int, tuple[int, int | None]]:
        """Import the rows of ``shards`` (and the transit state with shard 0).

        Returns shard -> (range id it holds, the engine's last tick then); NO_RANGE if never
        written.
        """
        ctx = self.ctx
        counts = fast_counts(estimator)
        ctx.write_network()
        pipe = ctx.redis.pipeline(transaction=False)
        for shard in shards:
            pipe.get(ctx.keys.range(shard))
            pipe.get(ctx.keys.tick(shard))
        values = pipe.execute()
        out: dict[int, tuple[int, int | None]] = {}
        for n, shard in enumerate(shards):
            raw_range, raw_tick = values[2 * n], values[2 * n + 1]
            tick = raw_tick.decode() if raw_tick is not None else ""
            out[shard] = (
                int(raw_range) if raw_range is not None else NO_RANGE,
                int(tick) if tick not in ("", "None") else None,
            )
            ctx.refuse_if_ahead(out[shard][0], ctx.keys.range(shard))
            self.rows.import_shard(counts, shard)
        if 0 in shards:
            self.rows.load_transit(estimator)
        counts.dirty[:] = False
        ctx.shard_ranges()
        return out

    def checkpoint_shards(
        self, estimator: Estimator, range_id: int, shards: Sequence[int], token: str
    ) -> int:
        """Write the changed rows of ``shards`` (and their range id, even when no row changed)
        under the worker's lease; the transit state goes with shard 0. Returns rows written.

        Shards that already hold ``range_id`` (a replay) keep their stored rows.
        """
        ctx = self.ctx
        started = time.perf_counter()
        if ctx.run_id() != ctx.state.run_id:
            # A restarted Redis may have lost the last writes (AOF everysec), a promoted
            # replica those not yet replicated: this worker's memory is then ahead of Redis in
            # rows it would not write again. Rebuild from Redis and replay the ranges topic.
            metrics.SERVER_CHANGES.labels("rebuild").inc()
            raise LeaseLost("Redis restarted or failed over since the shards were loaded")
        counts = fast_counts(estimator)
        rows = counts.take_dirty(owned_windows(ctx.network, ctx.n_shards, shards))
        shard_of = ctx.window_shard[rows]
        written = 0
        done: set[int] = set()
        try:
            for shard in shards:
                if ctx.state.shard_ranges.get(shard, NO_RANGE) < range_id:
                    mine = rows[shard_of == shard]
                    self.rows.write_shard(counts, shard, mine, range_id, token=token)
                    written += mine.size
                done.add(shard)
            if 0 in shards and getattr(estimator, "transit", None) is not None:
                self.rows.save_transit(estimator, range_id)
        except Exception:
            counts.dirty[rows[~np.isin(shard_of, list(done))]] = True
            raise
        self.writer.confirm_replicas()
        metrics.CHECKPOINT_SECONDS.observe(time.perf_counter() - started)
        metrics.ROWS_WRITTEN.inc(written)
        metrics.LAST_RANGE.set(range_id)
        return written

    def write_half_edges(self, shard: int, half: np.ndarray) -> None:
        """int64 (4, n): i, j, O_ij, P_ij of the shard's rows with C'_ij > C*; stored as
        12-byte records (there are ~7 M halves at 1,000 cameras, read every topology pass)."""
        rec = np.empty(half.shape[1], _HALF)
        for name, column in zip(_HALF.names or (), half, strict=True):
            rec[name] = column
        self.ctx.redis.set(self.ctx.keys.half(shard), _HALF_VERSION + rec.tobytes())

    def read_half_edges(self) -> np.ndarray:
        """int32 (4, n): every shard's half-edges (i, j, O_ij, P_ij)."""
        keys = self.ctx.keys
        pipe = self.ctx.redis.pipeline(transaction=False)
        for shard in range(self.ctx.n_shards):
            pipe.get(keys.half(shard))
        parts = []
        for shard, raw in enumerate(pipe.execute()):
            if not raw:
                continue
            body = raw[len(_HALF_VERSION) :]
            if not raw.startswith(_HALF_VERSION) or len(body) % _HALF.itemsize:
                raise StoreError(
                    f"{keys.half(shard)}: not a version-{_HALF_VERSION[0]} half-edge list "
                    "(written by another camtopo version?)"
                )
            rec = np.frombuffer(body, _HALF)
            parts.append(np.stack([rec[name] for name in _HALF.names or ()]))  # int32
        return np.concatenate(parts, axis=1) if parts else np.zeros((4, 0), np.int32)

    def write_meta(self, totals: Mapping[str, Any]) -> int:
        """The checkpoint meta of a partitioned run (health, tools): the range every shard
        holds. Returns it. (Leaves the cache of this worker's shard ranges alone: a counting
        worker's leader calls this from its topology thread.)"""
        range_id = min(self.ctx.read_shard_ranges().values(), default=NO_RANGE)
        meta = {**self.ctx.meta_times(range_id), **totals}
        self.ctx.redis.hset(self.ctx.keys.checkpoint, mapping=meta)
        return range_id
