"""The single-role processor's count → checkpoint path: :meth:`CheckpointWriter.checkpoint`
after a range is applied, :meth:`CheckpointWriter.load_into` on start.

Crash semantics of a checkpoint (docs/topology_store.md has the long form):

1. every shard that has dirty rows is written in one MULTI/EXEC together with that shard's
   ``range`` key = the range id, so a shard's rows and its range id never disagree;
2. then the meta key gets the range id and the consumer offsets to resume from.

A crash between shards leaves some shards at range r and the rest (and the meta) at an older
range. The processor resumes from the meta's offsets and so re-applies range r to *every*
row; rows of shards that already hold r must not keep that second application. After applying
a replayed range, call :meth:`ShardRows.restore_applied_rows` (or mask with
:meth:`StoreContext.rows_already_applied`): it re-imports those rows from Redis, and
:meth:`CheckpointWriter.checkpoint` never writes a shard whose stored range is already at or
past the range being checkpointed. Net effect: no range is lost and none is counted twice, per
row.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np
import redis

from camtopo.core.engine import FastExclusion
from camtopo.core.partitioned import owned_windows
from topology_store import metrics
from topology_store.context import (
    NO_RANGE,
    Checkpoint,
    CheckpointReport,
    Estimator,
    StoreContext,
    StoreError,
    fast_counts,
    tick_field,
)
from topology_store.read_model import parse_checkpoint
from topology_store.rows import ShardRows

log = logging.getLogger(__name__)


class CheckpointWriter:
    """Counts of the single-role processor: checkpoint, load, follow a Redis failover."""

    def __init__(self, ctx: StoreContext, rows: ShardRows) -> None:
        self.ctx = ctx
        self.rows = rows

    def checkpoint(
        self,
        estimator: Estimator,
        range_id: int,
        resume_offsets: Mapping[int, int],
        shards: Sequence[int] | None = None,
    ) -> CheckpointReport:
        """Persist the rows changed since the last checkpoint, then the range id and offsets.

        ``shards``: write only the changed rows of these shards (a *spread* checkpoint: the
        processor writes a slice of the shards per range, so a row changed in every range is
        written once per round instead of every range). The meta then records the range
        every shard is exact through (the oldest shard's), with the estimator totals of that
        range; recovery replays from it. None = every shard.

        If Redis fails part-way, the rows not yet written are marked dirty again and the error
        is raised: a later checkpoint writes them. If another server answers than last time
        (a failover, or a restart), what it lost of this store's writes is rewritten first
        (:meth:`follow_server`). With ``CAMTOPO_REDIS_MIN_REPLICAS_ACKED`` the checkpoint
        returns (and the processor acks Kafka) only once that many replicas hold it, or the
        wait timed out (counted: the guarantee did not hold for it).
        """
        started = time.perf_counter()
        ctx, state = self.ctx, self.ctx.state
        counts = fast_counts(estimator)
        if self.follow_server(counts):
            shards = None  # what the old server lost is rewritten now, whole
            state = ctx.state
        if range_id < state.meta_range:
            raise StoreError(
                f"checkpoint of range {range_id} is older than the stored checkpoint "
                f"{state.meta_range}; ranges must be checkpointed in order"
            )
        ctx.write_network()
        if not state.shard_ranges:
            ctx.shard_ranges()
        chosen = range(ctx.n_shards) if shards is None else sorted(set(shards))
        among = None if shards is None else owned_windows(ctx.network, ctx.n_shards, chosen)
        state.totals[range_id] = {
            "observed_ticks": int(estimator.observed_ticks),
            "observations": int(estimator.observations),
            "last_tick": tick_field(counts.last_tick),
            "offsets": json.dumps({str(k): int(v) for k, v in resume_offsets.items()}),
        }
        rows = counts.take_dirty(among)
        shards_of = ctx.window_shard[rows]
        order = np.argsort(shards_of, kind="stable")
        rows, shards_of = rows[order], shards_of[order]
        bounds = np.flatnonzero(np.diff(shards_of)) + 1
        written = skipped = n_bytes = n_shards = done = 0
        try:
            for group in np.split(np.arange(rows.size), bounds) if rows.size else []:
                shard = int(shards_of[group[0]])
                shard_rows = rows[group]
                if state.shard_ranges.get(shard, NO_RANGE) >= range_id:
                    skipped += shard_rows.size  # replay: these rows came from Redis as they are
                    done += group.size
                    continue
                n_bytes += self.rows.write_shard(counts, shard, shard_rows, range_id)
                written += shard_rows.size
                n_shards += 1
                done += group.size
            if getattr(estimator, "transit", None) is not None and (shards is None or 0 in chosen):
                # The transit state is one more member of the rotation (with shard 0's slice).
                n_bytes += self.rows.save_transit(estimator, range_id)
            for shard in chosen:
                state.synced[shard] = range_id
            self._write_meta_if_durable()
        except Exception:
            counts.dirty[rows[done:]] = True
            raise
        self.confirm_replicas()
        seconds = time.perf_counter() - started
        metrics.CHECKPOINT_SECONDS.observe(seconds)
        metrics.ROWS_WRITTEN.inc(written)
        metrics.LAST_RANGE.set(range_id)
        return CheckpointReport(
            range_id, state.meta_range, written, n_shards, skipped, n_bytes, seconds
        )

    def _write_meta_if_durable(self) -> None:
        """The meta records the range every shard (and the transit state) is exact through."""
        ctx, state = self.ctx, self.ctx.state
        durable = min(state.synced.get(s, NO_RANGE) for s in range(ctx.n_shards))
        if state.transit_synced is not None:
            durable = min(durable, state.transit_synced)
        if durable <= state.meta_range:
            return
        meta = {**ctx.meta_times(durable), **state.totals[durable]}
        t0 = time.perf_counter()
        ctx.redis.hset(ctx.keys.checkpoint, mapping=meta)
        metrics.REDIS_WRITE_SECONDS.labels("meta").observe(time.perf_counter() - t0)
        state.meta_range = durable
        state.totals = {r: t for r, t in state.totals.items() if r >= durable}

    def follow_server(self, counts: FastExclusion) -> bool:
        """After a failover (or a restart) to another Redis server: rewrite what it lacks.

        Replication is asynchronous, so a promoted replica may miss this store's last writes,
        acknowledged by the old primary. Every shard is written as one transaction with its
        range id, and a replica applies the primary's writes in order, so a shard whose range
        id on the new server is below the one this store last wrote lost exactly its writes
        since then: all its rows are marked dirty, from the counts in memory, which are exact.
        The transit state, the meta and the graph are re-read or rewritten too. Returns True
        if the server changed (the caller then checkpoints every shard at once).
        """
        ctx, state = self.ctx, self.ctx.state
        run_id = ctx.run_id()
        if run_id == state.run_id:
            return False
        first, state.run_id = not state.run_id, run_id
        if first:
            return False
        held = ctx.read_shard_ranges()
        lost = sorted(s for s, r in state.shard_ranges.items() if held.get(s, NO_RANGE) < r)
        rows = np.isin(ctx.window_shard, lost)
        counts.dirty[rows] = True
        state.shard_ranges = dict(held)
        meta = ctx.redis.hget(ctx.keys.checkpoint, "range_id")
        state.meta_range = min(state.meta_range, int(meta) if meta else NO_RANGE)
        if state.transit_synced is not None:
            raw = ctx.redis.hget(ctx.keys.transit, "range_id")
            state.transit_synced = min(
                state.transit_synced, int(raw) if raw is not None else NO_RANGE
            )
        state.graph = None
        state.network_written = False
        metrics.SERVER_CHANGES.labels("lost_writes" if lost else "complete").inc()
        metrics.ROWS_REWRITTEN.inc(int(rows.sum()))
        log.warning(
            "another Redis server answers (failover or restart): %d shards lacked this "
            "store's last writes (%d rows, rewritten now from memory)",
            len(lost), int(rows.sum()),
        )  # fmt: skip
        return True

    def confirm_replicas(self) -> None:
        """WAIT until ``min_replicas_acked`` replicas hold every write so far (then a failover
        cannot lose this checkpoint), at most ``wait_timeout_ms``; a shortfall is counted and
        logged, not fatal (after a failover the new primary has no replica until the old one
        returns, and counting on is worth more than stopping)."""
        want = self.ctx.settings.redis.min_replicas_acked
        if want <= 0:
            return
        wait_ms = self.ctx.settings.redis.wait_timeout_ms
        got = int(self.ctx.redis.wait(want, wait_ms))
        if self.ctx.run_id() != self.ctx.state.run_id:
            # The client's retries carried WAIT over to a new primary, which may lack this
            # checkpoint: not acked; the retried checkpoint rewrites what it lacks first.
            raise redis.ConnectionError("the Redis primary changed during the checkpoint")
        metrics.REPLICAS_ACKED.set(got)
        if got < want:
            metrics.REPLICA_SHORTFALL.inc()
            log.warning(
                "checkpoint held by %d of %d replicas after %d ms: a failover now could lose it",
                got, want, wait_ms,
            )  # fmt: skip

    def load_into(self, estimator: Estimator) -> Checkpoint | None:
        """Restore every stored row into the estimator's engine; None if the store is empty."""
        ctx, state = self.ctx, self.ctx.state
        counts = fast_counts(estimator)
        state.run_id = ctx.run_id()  # the server these rows came from
        stored = ctx.redis.get(ctx.keys.network)
        if stored is not None and json.loads(stored) != ctx.network.to_json():
            raise StoreError(
                f"Redis key {ctx.keys.network} holds a different network than the estimator's"
            )
        raw_meta = ctx.redis.hgetall(ctx.keys.checkpoint)
        meta = parse_checkpoint({k.decode(): v.decode() for k, v in raw_meta.items()})
        ranges = ctx.shard_ranges()
        ctx.refuse_if_ahead(max(ranges.values(), default=NO_RANGE), "a shard")
        ctx.refuse_if_ahead(meta.get("range_id", NO_RANGE), ctx.keys.checkpoint)
        n_rows = sum(self.rows.import_shard(counts, s) for s in range(ctx.n_shards))
        if not meta and n_rows == 0:
            return None
        self.rows.load_transit(estimator)
        counts.dirty[:] = False
        estimator.observed_ticks = meta.get("observed_ticks", 0)
        estimator.observations = meta.get("observations", 0)
        counts.last_tick = meta.get("last_tick")
        state.meta_range = meta.get("range_id", NO_RANGE)
        state.synced = {s: state.meta_range for s in range(ctx.n_shards)}
        offsets = meta.get("resume_offsets", {})
        state.totals = {
            state.meta_range: {
                "observed_ticks": meta.get("observed_ticks", 0),
                "observations": meta.get("observations", 0),
                "last_tick": tick_field(meta.get("last_tick")),
                "offsets": json.dumps({str(k): v for k, v in offsets.items()}),
            }
        }
        return Checkpoint(
            range_id=meta.get("range_id", NO_RANGE),
            resume_offsets=offsets,
            shard_ranges=ranges,
            rows=n_rows,
            observed_ticks=meta.get("observed_ticks", 0),
            observations=meta.get("observations", 0),
            last_tick=meta.get("last_tick"),
            saved_ms=meta.get("saved_ms"),
        )
