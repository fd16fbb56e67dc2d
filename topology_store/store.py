"""The topology store: exclusion counts, the camera graph and its change log in Redis.

Writing (the processors): :meth:`TopologyStore.checkpoint` after a range is applied,
:meth:`TopologyStore.update_topology` + :meth:`publish_changes` to announce what changed,
:meth:`TopologyStore.load_into` on start. Reading (the query service and tools): cameras,
neighbours, overlaps, pair evidence, graph, partitions, health.

Crash semantics of a checkpoint (docs/topology_store.md has the long form):

1. every shard that has dirty rows is written in one MULTI/EXEC together with that shard's
   ``range`` key = the range id, so a shard's rows and its range id never disagree;
2. then the meta key gets the range id and the consumer offsets to resume from.

A crash between shards leaves some shards at range r and the rest (and the meta) at an older
range. The processor resumes from the meta's offsets and so re-applies range r to *every*
row; rows of shards that already hold r must not keep that second application. After applying
a replayed range, call :meth:`TopologyStore.restore_applied_rows` (or mask with
:meth:`rows_already_applied`): it re-imports those rows from Redis, and :meth:`checkpoint`
never writes a shard whose stored range is already at or past the range being checkpointed.
Net effect: no range is lost and none is counted twice, per row.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import time
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import redis

from camtopo import avro
from camtopo.connections import redis_client
from camtopo.core.engine import FastExclusion
from camtopo.core.evidence import WindowEdges, c_prime, camera_edges
from camtopo.core.grid import Network, NetworkError
from camtopo.core.partitioned import owned_windows, window_shards
from camtopo.core.topology import merge_transit
from camtopo.errors import CamtopoError
from camtopo.settings import Settings
from topology_store import metrics
from topology_store.blobs import BlobError, Row, decode_row, encode_rows
from topology_store.graph import Graph, TopologyView, build_graph, diff_graphs, keyed_for
from topology_store.keys import Keys

log = logging.getLogger(__name__)

# Half-edges as stored: window indices fit int32, counts uint16 (O < count_limit <= 65536).
_HALF = np.dtype([("i", "<i4"), ("j", "<i4"), ("o", "<u2"), ("p", "<u2")])
_HALF_VERSION = b"\x02"

NO_RANGE = -1


class StoreError(CamtopoError):
    """The store cannot do what was asked (wrong engine, network mismatch, failed publish)."""


class CheckpointAhead(StoreError):
    """The store holds a range that ends in this machine's future: a forged or skewed timestamp
    once carried a processor clock there (before records ahead of the wall clock were refused).
    Counting on would drop every real frame as closed; ``camtopo store rewind`` is the way back
    (docs/operations.md, "Checkpoint ahead of the clock")."""


class LeaseLost(StoreError):
    """A counting worker may not write its shards from what it holds (another worker owns one
    now, or Redis restarted and may have lost writes): it must rebuild from Redis."""


class _HasCounts(Protocol):
    counts: Any
    observed_ticks: int
    observations: int

    def window_edges(self) -> WindowEdges: ...


@dataclass(frozen=True)
class Checkpoint:
    """What :meth:`TopologyStore.load_into` restored."""

    range_id: int  # last range the meta records as fully checkpointed (NO_RANGE if none)
    resume_offsets: dict[int, int]  # partition -> next offset to consume
    shard_ranges: dict[int, int]  # shard -> last range id written to it
    rows: int  # rows imported
    observed_ticks: int = 0
    observations: int = 0
    last_tick: int | None = None
    saved_ms: int | None = None

    @property
    def max_shard_range(self) -> int:
        return max(self.shard_ranges.values(), default=NO_RANGE)


@dataclass(frozen=True)
class CheckpointReport:
    range_id: int
    durable_range: int  # every shard's rows in Redis are exact through this range
    rows_written: int
    shards_written: int
    rows_skipped: int  # rows of shards that already held this range (replay after a crash)
    bytes_written: int
    seconds: float


@dataclass
class _Cache:
    shard_ranges: dict[int, int] = field(default_factory=dict)
    # shard -> range through which its rows in Redis are exact (written, or unchanged since)
    synced: dict[int, int] = field(default_factory=dict)
    transit_synced: int | None = None  # range of the stored transit state (None: no transit)
    transit_loaded: int = NO_RANGE  # range of the transit state this process restored
    # range -> the estimator totals after it, for the meta once that range is durable
    totals: dict[int, dict[str, Any]] = field(default_factory=dict)
    meta_range: int = NO_RANGE
    network_written: bool = False
    graph: Graph | None = None
    run_id: str = ""  # the Redis server a counting worker's shards were loaded from


def fast_counts(estimator: _HasCounts) -> FastExclusion:
    counts = estimator.counts
    if not isinstance(counts, FastExclusion):
        raise StoreError(
            f"the topology store persists FastExclusion rows; the estimator uses "
            f"{type(counts).__name__} (build it with engine='fast' or 'exact')"
        )
    return counts


def network_key(network: Network) -> dict[str, Any]:
    return network.to_json()


def parse_checkpoint(meta: Mapping[str, str]) -> dict[str, Any]:
    """The meta hash as typed values (empty dict when there is no checkpoint yet)."""
    if not meta:
        return {}
    last_tick = meta.get("last_tick", "")
    return {
        "range_id": int(meta.get("range_id", NO_RANGE)),
        "range_end_ms": int(meta["range_end_ms"]) if "range_end_ms" in meta else None,
        "resume_offsets": {
            int(k): int(v) for k, v in json.loads(meta.get("offsets", "{}")).items()
        },
        "observed_ticks": int(meta.get("observed_ticks", 0)),
        "observations": int(meta.get("observations", 0)),
        "last_tick": int(last_tick) if last_tick not in ("", "None") else None,
        "saved_ms": int(meta["saved_ms"]) if "saved_ms" in meta else None,
    }


def parse_view(
    network: Network, edges: Mapping[str, str], state: Mapping[str, str]
) -> TopologyView:
    graph = {k: json.loads(v) for k, v in edges.items()}
    range_end = state.get("range_end_ms")
    updated = state.get("updated_ms")
    return TopologyView(
        network.cameras,
        graph,
        int(range_end) if range_end else None,
        int(updated) if updated else None,
    )


def window_index(network: Network, window: str | int) -> int:
    """A global window from ``"cam007:17"`` or a global index."""
    if isinstance(window, int) or (isinstance(window, str) and window.isdigit()):
        i = int(window)
        if not 0 <= i < network.n_windows:
            raise NetworkError(f"global window {i} is outside 0..{network.n_windows - 1}")
        return i
    return network.parse_label(window)


def pair_evidence(
    network: Network,
    i: int,
    j: int,
    row_i: Row | None,
    row_j: Row | None,
    settings: Settings,
) -> dict[str, Any]:
    """Evidence for window pair (i, j) from their stored rows (absent row = all zeros)."""
    ci, cj = int(network.window_camera[i]), int(network.window_camera[j])
    if ci == cj:
        raise NetworkError(
            f"{network.label(i)} and {network.label(j)} are in the same camera; exclusion "
            "counts only pairs of windows in different cameras"
        )
    o_ij = int(row_i.o[cj]) if row_i is not None else 0
    p_ij = int(row_i.p[j]) if row_i is not None else 0
    o_ji = int(row_j.o[ci]) if row_j is not None else 0
    p_ji = int(row_j.p[i]) if row_j is not None else 0
    c_ij = float(c_prime(np.array([p_ij]), np.array([o_ij]), settings.algorithm.o_ref)[0])
    c_ji = float(c_prime(np.array([p_ji]), np.array([o_ji]), settings.algorithm.o_ref)[0])
    return {
        "a": network.label(i),
        "b": network.label(j),
        "o_ab": o_ij,
        "p_ab": p_ij,
        "e_ab": o_ij - p_ij,  # exclusions: opportunities where b was seen empty
        "c_ab": round(c_ij, 6),
        "o_ba": o_ji,
        "p_ba": p_ji,
        "e_ba": o_ji - p_ji,
        "c_ba": round(c_ji, 6),
        "c_star": settings.algorithm.c_star,
        "adjacent": c_ij > settings.algorithm.c_star and c_ji > settings.algorithm.c_star,
    }


class TopologyStore:
    """Counts, graph and change log of one network in one Redis (or Redis Cluster-ready keys)."""

    def __init__(
        self,
        redis_url: str,
        network: Network,
        settings: Settings,
        *,
        prefix: str = "camtopo",
        client: redis.Redis | None = None,
    ) -> None:
        self.network = network
        self.settings = settings
        self.keys = Keys(prefix, settings.redis.shards)
        self.redis = (
            client
            if client is not None
            else redis_client(settings, redis_url, decode_responses=False)
        )
        self._cache = _Cache()
        self._window_shard = window_shards(network, settings.redis.shards)
        self.grid = settings.range_grid()

    @classmethod
    def from_redis(
        cls, redis_url: str, settings: Settings, prefix: str = "camtopo"
    ) -> TopologyStore:
        """A store for the network a processor saved in Redis (the query service's case)."""
        client = redis_client(settings, redis_url, decode_responses=False)
        raw = client.get(Keys(prefix, settings.redis.shards).network)
        if raw is None:
            raise StoreError(f"no network saved under prefix {prefix!r} at {redis_url}")
        return cls(
            redis_url, Network.from_json(json.loads(raw)), settings, prefix=prefix, client=client
        )

    def close(self) -> None:
        self.redis.close()

    # --- shards -------------------------------------------------------------------------------
    def shard_of_camera(self, camera: int) -> int:
        return camera % self.settings.redis.shards

    def shard_of_window(self, window: int) -> int:
        return int(self._window_shard[window])

    def shard_ranges(self) -> dict[int, int]:
        """shard -> last range id written to it (NO_RANGE if never), read from Redis."""
        ranges = self._read_shard_ranges()
        self._cache.shard_ranges = dict(ranges)
        return ranges

    def held_range(self, shards: Iterable[int]) -> int:
        """The range all of ``shards`` hold in Redis, as this store last wrote or read them."""
        return min((self._cache.shard_ranges.get(s, NO_RANGE) for s in shards), default=NO_RANGE)

    def _read_shard_ranges(self) -> dict[int, int]:
        pipe = self.redis.pipeline(transaction=False)
        for s in range(self.settings.redis.shards):
            pipe.get(self.keys.range(s))
        return {s: int(v) if v is not None else NO_RANGE for s, v in enumerate(pipe.execute())}

    def applied_range(self, shard: int) -> int:
        raw = self.redis.get(self.keys.range(shard))
        value = int(raw) if raw is not None else NO_RANGE
        self._cache.shard_ranges[shard] = value
        return value

    def rows_already_applied(self, range_id: int) -> np.ndarray:
        """bool (n_windows,): rows whose shard already holds ``range_id`` (must not re-apply)."""
        if not self._cache.shard_ranges:
            self.shard_ranges()
        ranges = np.array(
            [self._cache.shard_ranges.get(s, NO_RANGE) for s in range(self.settings.redis.shards)],
            dtype=np.int64,
        )
        return ranges[self._window_shard] >= range_id

    def restore_applied_rows(self, estimator: _HasCounts, range_id: int) -> int:
        """Undo a replayed range on rows whose shard already held it: re-import them from Redis.

        Call right after applying range ``range_id`` during recovery. Returns rows restored.
        """
        counts = fast_counts(estimator)
        rows = np.flatnonzero(counts.dirty & self.rows_already_applied(range_id))
        if rows.size == 0:
            return 0
        by_shard: dict[int, list[int]] = {}
        for i in rows.tolist():
            by_shard.setdefault(self.shard_of_window(i), []).append(i)
        n_c, n_w = self.network.n_cameras, self.network.n_windows
        for shard, windows in by_shard.items():
            blobs = self.redis.hmget(self.keys.rows(shard), [str(i) for i in windows])
            for i, blob in zip(windows, blobs, strict=True):
                if blob is None:
                    # The first run never wrote this row at that range: it was all zeros.
                    counts.import_row(
                        i, np.zeros(n_c, np.uint8), np.full(n_c, -1, np.int8),
                        np.zeros(n_w, np.uint8), 0,
                    )  # fmt: skip
                else:
                    row = decode_row(blob, n_c, n_w, f"{self.keys.rows(shard)}[{i}]")
                    _import_row(counts, i, row, f"{self.keys.rows(shard)}[{i}]")
        counts.dirty[rows] = False
        return int(rows.size)

    # --- checkpoint / load --------------------------------------------------------------------
    def _write_network(self) -> None:
        if self._cache.network_written:
            return
        doc = json.dumps(network_key(self.network), sort_keys=True)
        stored = self.redis.get(self.keys.network)
        if stored is not None and json.loads(stored) != json.loads(doc):
            raise StoreError(
                f"Redis key {self.keys.network} holds a different network than this processor's "
                "(other cameras or grids); use another key prefix or clear the store"
            )
        if stored is None:
            self.redis.set(self.keys.network, doc)
        self._cache.network_written = True

    def checkpoint(
        self,
        estimator: _HasCounts,
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
        (:meth:`_follow_server`). With ``CAMTOPO_REDIS_MIN_REPLICAS_ACKED`` the checkpoint
        returns (and the processor acks Kafka) only once that many replicas hold it, or the
        wait timed out (counted: the guarantee did not hold for it).
        """
        started = time.perf_counter()
        counts = fast_counts(estimator)
        if self._follow_server(counts):
            shards = None  # what the old server lost is rewritten now, whole
        if range_id < self._cache.meta_range:
            raise StoreError(
                f"checkpoint of range {range_id} is older than the stored checkpoint "
                f"{self._cache.meta_range}; ranges must be checkpointed in order"
            )
        self._write_network()
        if not self._cache.shard_ranges:
            self.shard_ranges()
        n_shards_all = self.settings.redis.shards
        chosen = range(n_shards_all) if shards is None else sorted(set(shards))
        among = None if shards is None else owned_windows(self.network, n_shards_all, chosen)
        self._cache.totals[range_id] = {
            "observed_ticks": int(estimator.observed_ticks),
            "observations": int(estimator.observations),
            "last_tick": _tick_field(counts.last_tick),
            "offsets": json.dumps({str(k): int(v) for k, v in resume_offsets.items()}),
        }
        rows = counts.take_dirty(among)
        shards_of = self._window_shard[rows]
        order = np.argsort(shards_of, kind="stable")
        rows, shards_of = rows[order], shards_of[order]
        bounds = np.flatnonzero(np.diff(shards_of)) + 1
        written = skipped = n_bytes = n_shards = 0
        done = 0
        try:
            for group in np.split(np.arange(rows.size), bounds) if rows.size else []:
                shard = int(shards_of[group[0]])
                shard_rows = rows[group]
                if self._cache.shard_ranges.get(shard, NO_RANGE) >= range_id:
                    skipped += shard_rows.size  # replay: these rows came from Redis as they are
                    done += group.size
                    continue
                n_bytes += self._write_shard(counts, shard, shard_rows, range_id)
                written += shard_rows.size
                n_shards += 1
                done += group.size
            if getattr(estimator, "transit", None) is not None and (shards is None or 0 in chosen):
                # The transit state is one more member of the rotation (with shard 0's slice).
                n_bytes += self._save_transit(estimator, range_id)
            for shard in chosen:
                self._cache.synced[shard] = range_id
            durable = min(self._cache.synced.get(s, NO_RANGE) for s in range(n_shards_all))
            if self._cache.transit_synced is not None:
                durable = min(durable, self._cache.transit_synced)
            if durable > self._cache.meta_range:
                totals = self._cache.totals[durable]
                meta = {**self._meta_times(durable), **totals}
                t0 = time.perf_counter()
                self.redis.hset(self.keys.checkpoint, mapping=meta)  # type: ignore[arg-type]
                metrics.REDIS_WRITE_SECONDS.labels("meta").observe(time.perf_counter() - t0)
                self._cache.meta_range = durable
                self._cache.totals = {r: t for r, t in self._cache.totals.items() if r >= durable}
        except Exception:
            counts.dirty[rows[done:]] = True
            raise
        self._confirm_replicas()
        seconds = time.perf_counter() - started
        metrics.CHECKPOINT_SECONDS.observe(seconds)
        metrics.ROWS_WRITTEN.inc(written)
        metrics.LAST_RANGE.set(range_id)
        return CheckpointReport(
            range_id, self._cache.meta_range, written, n_shards, skipped, n_bytes, seconds
        )

    def _follow_server(self, counts: FastExclusion) -> bool:
        """After a failover (or a restart) to another Redis server: rewrite what it lacks.

        Replication is asynchronous, so a promoted replica may miss this store's last writes,
        acknowledged by the old primary. Every shard is written as one transaction with its
        range id, and a replica applies the primary's writes in order, so a shard whose range
        id on the new server is below the one this store last wrote lost exactly its writes
        since then: all its rows are marked dirty, from the counts in memory, which are exact.
        The transit state, the meta and the graph are re-read or rewritten too. Returns True
        if the server changed (the caller then checkpoints every shard at once).
        """
        run_id = self._run_id()
        if run_id == self._cache.run_id:
            return False
        first, self._cache.run_id = not self._cache.run_id, run_id
        if first:
            return False
        held = self._read_shard_ranges()
        lost = sorted(s for s, r in self._cache.shard_ranges.items() if held.get(s, NO_RANGE) < r)
        rows = np.isin(self._window_shard, lost)
        counts.dirty[rows] = True
        self._cache.shard_ranges = dict(held)
        meta = self.redis.hget(self.keys.checkpoint, "range_id")
        self._cache.meta_range = min(self._cache.meta_range, int(meta) if meta else NO_RANGE)
        if self._cache.transit_synced is not None:
            raw = self.redis.hget(self.keys.transit, "range_id")
            self._cache.transit_synced = min(
                self._cache.transit_synced, int(raw) if raw is not None else NO_RANGE
            )
        self._cache.graph = None
        self._cache.network_written = False
        metrics.SERVER_CHANGES.labels("lost_writes" if lost else "complete").inc()
        metrics.ROWS_REWRITTEN.inc(int(rows.sum()))
        log.warning(
            "another Redis server answers (failover or restart): %d shards lacked this "
            "store's last writes (%d rows, rewritten now from memory)",
            len(lost), int(rows.sum()),
        )  # fmt: skip
        return True

    def _confirm_replicas(self) -> None:
        """WAIT until ``min_replicas_acked`` replicas hold every write so far (then a failover
        cannot lose this checkpoint), at most ``wait_timeout_ms``; a shortfall is counted and
        logged, not fatal (after a failover the new primary has no replica until the old one
        returns, and counting on is worth more than stopping)."""
        want = self.settings.redis.min_replicas_acked
        if want <= 0:
            return
        got = int(self.redis.wait(want, self.settings.redis.wait_timeout_ms))
        if self._run_id() != self._cache.run_id:
            # The client's retries carried WAIT over to a new primary, which may lack this
            # checkpoint: not acked; the retried checkpoint rewrites what it lacks first.
            raise redis.ConnectionError("the Redis primary changed during the checkpoint")
        metrics.REPLICAS_ACKED.set(got)
        if got < want:
            metrics.REPLICA_SHORTFALL.inc()
            log.warning(
                "checkpoint held by %d of %d replicas after %d ms: a failover now could lose it",
                got, want, self.settings.redis.wait_timeout_ms,
            )  # fmt: skip

    def _write_shard(
        self,
        counts: FastExclusion,
        shard: int,
        rows: np.ndarray,
        range_id: int,
        *,
        token: str | None = None,
    ) -> int:
        """Write ``rows`` of one shard and its range id in one transaction; returns bytes.

        ``token``: a partitioned counting worker's lease: the write happens only while the
        shard's owner key holds it (WATCH), else :class:`LeaseLost` and nothing is written.
        """
        blobs = encode_rows(counts, rows)
        mapping = dict(zip(map(str, rows.tolist()), blobs, strict=True))
        pipe = self.redis.pipeline(transaction=True)
        if token is not None:
            pipe.watch(self.keys.owner(shard))
            owner = pipe.get(self.keys.owner(shard))
            if owner is None or owner.decode() != token:
                pipe.reset()
                raise LeaseLost(f"shard {shard} is owned by another counting worker now")
            pipe.multi()
            pipe.set(self.keys.tick(shard), _tick_field(counts.last_tick))
        if mapping:
            pipe.hset(self.keys.rows(shard), mapping=mapping)  # type: ignore[arg-type]
        pipe.set(self.keys.range(shard), range_id)
        t0 = time.perf_counter()
        try:
            pipe.execute()
        except redis.WatchError:
            raise LeaseLost(f"shard {shard} changed owner during the write") from None
        metrics.REDIS_WRITE_SECONDS.labels("rows").observe(time.perf_counter() - t0)
        self._cache.shard_ranges[shard] = range_id
        return sum(len(b) for b in blobs)

    def _import_shard(self, counts: FastExclusion, shard: int) -> int:
        """Import every stored row of one shard into the engine; returns rows imported."""
        key = self.keys.rows(shard)
        n_c, n_w = self.network.n_cameras, self.network.n_windows
        n_rows = 0
        # HSCAN keeps each reply bounded however many rows a shard holds.
        for field_, blob in self.redis.hscan_iter(key, count=500):
            where = f"{key}[{field_.decode()}]"
            try:
                i = int(field_)
            except ValueError:
                raise BlobError(f"{where}: field is not a window index") from None
            if not 0 <= i < n_w or self.shard_of_window(i) != shard:
                raise BlobError(f"{where}: window {i} does not belong to shard {shard}")
            _import_row(counts, i, decode_row(blob, n_c, n_w, where), where)
            n_rows += 1
        return n_rows

    # --- partitioned counting workers (processors/counter.py) ---------------------------------
    def claim_shards(self, shards: Iterable[int], token: str) -> None:
        """Make ``token`` the only writer of these shards: a worker that lost them in a
        rebalance (or hung past its session) fails its next write with LeaseLost."""
        pipe = self.redis.pipeline(transaction=False)
        for shard in shards:
            pipe.set(self.keys.owner(shard), token)
        pipe.execute()
        self._cache.run_id = self._run_id()

    def _run_id(self) -> str:
        return str(self.redis.info("server")["run_id"])

    def load_shards_into(
        self, estimator: _HasCounts, shards: Sequence[int]
    ) -> dict[int, tuple[int, int | None]]:
        """Import the rows of ``shards`` (and the transit state with shard 0).

        Returns shard -> (range id it holds, the engine's last tick then); NO_RANGE if never
        written.
        """
        counts = fast_counts(estimator)
        self._write_network()
        pipe = self.redis.pipeline(transaction=False)
        for shard in shards:
            pipe.get(self.keys.range(shard))
            pipe.get(self.keys.tick(shard))
        values = pipe.execute()
        out: dict[int, tuple[int, int | None]] = {}
        for n, shard in enumerate(shards):
            raw_range, raw_tick = values[2 * n], values[2 * n + 1]
            tick = raw_tick.decode() if raw_tick is not None else ""
            out[shard] = (
                int(raw_range) if raw_range is not None else NO_RANGE,
                int(tick) if tick not in ("", "None") else None,
            )
            self.refuse_if_ahead(out[shard][0], self.keys.range(shard))
            self._import_shard(counts, shard)
        if 0 in shards:
            self._load_transit(estimator)
        counts.dirty[:] = False
        self.shard_ranges()
        return out

    def checkpoint_shards(
        self, estimator: _HasCounts, range_id: int, shards: Sequence[int], token: str
    ) -> int:
        """Write the changed rows of ``shards`` (and their range id, even when no row changed)
        under the worker's lease; the transit state goes with shard 0. Returns rows written.

        Shards that already hold ``range_id`` (a replay) keep their stored rows.
        """
        started = time.perf_counter()
        if self._run_id() != self._cache.run_id:
            # A restarted Redis may have lost the last writes (AOF everysec), a promoted
            # replica those not yet replicated: this worker's memory is then ahead of Redis in
            # rows it would not write again. Rebuild from Redis and replay the ranges topic.
            metrics.SERVER_CHANGES.labels("rebuild").inc()
            raise LeaseLost("Redis restarted or failed over since the shards were loaded")
        counts = fast_counts(estimator)
        rows = counts.take_dirty(owned_windows(self.network, self.settings.redis.shards, shards))
        shard_of = self._window_shard[rows]
        written = 0
        done: set[int] = set()
        try:
            for shard in shards:
                if self._cache.shard_ranges.get(shard, NO_RANGE) < range_id:
                    mine = rows[shard_of == shard]
                    self._write_shard(counts, shard, mine, range_id, token=token)
                    written += mine.size
                done.add(shard)
            if 0 in shards and getattr(estimator, "transit", None) is not None:
                self._save_transit(estimator, range_id)
        except Exception:
            counts.dirty[rows[~np.isin(shard_of, list(done))]] = True
            raise
        self._confirm_replicas()
        metrics.CHECKPOINT_SECONDS.observe(time.perf_counter() - started)
        metrics.ROWS_WRITTEN.inc(written)
        metrics.LAST_RANGE.set(range_id)
        return written

    def write_half_edges(self, shard: int, half: np.ndarray) -> None:
        """int64 (4, n): i, j, O_ij, P_ij of the shard's rows with C'_ij > C*; stored as
        12-byte records (there are ~7 M halves at 1,000 cameras, read every topology pass)."""
        rec = np.empty(half.shape[1], _HALF)
        for name, column in zip(_HALF.names, half, strict=True):
            rec[name] = column
        self.redis.set(self.keys.half(shard), _HALF_VERSION + rec.tobytes())

    def read_half_edges(self) -> np.ndarray:
        """int32 (4, n): every shard's half-edges (i, j, O_ij, P_ij)."""
        pipe = self.redis.pipeline(transaction=False)
        for shard in range(self.settings.redis.shards):
            pipe.get(self.keys.half(shard))
        parts = []
        for shard, raw in enumerate(pipe.execute()):
            if not raw:
                continue
            body = raw[len(_HALF_VERSION) :]
            if not raw.startswith(_HALF_VERSION) or len(body) % _HALF.itemsize:
                raise StoreError(
                    f"{self.keys.half(shard)}: not a version-{_HALF_VERSION[0]} half-edge list "
                    "(written by another camtopo version?)"
                )
            rec = np.frombuffer(body, _HALF)
            parts.append(np.stack([rec[name] for name in _HALF.names]))  # int32
        return np.concatenate(parts, axis=1) if parts else np.zeros((4, 0), np.int32)

    def write_meta(self, totals: Mapping[str, Any]) -> int:
        """The checkpoint meta of a partitioned run (health, tools): the range every shard
        holds. Returns it. (Leaves the cache of this worker's shard ranges alone: a counting
        worker's leader calls this from its topology thread.)"""
        range_id = min(self._read_shard_ranges().values(), default=NO_RANGE)
        meta = {**self._meta_times(range_id), **totals}
        self.redis.hset(self.keys.checkpoint, mapping=meta)  # type: ignore[arg-type]
        return range_id

    def _meta_times(self, range_id: int) -> dict[str, int]:
        """The meta's range id, its event-time end (health compares it with the clock) and
        when it was saved."""
        return {
            "range_id": range_id,
            "range_end_ms": int(self.grid.end_ms(range_id)),
            "saved_ms": int(time.time() * 1000),
        }

    def refuse_if_ahead(self, range_id: int, where: str, now_ms: float | None = None) -> None:
        """Raise :class:`CheckpointAhead` if ``range_id`` ends past the clock's allowed lead."""
        now_ms = time.time() * 1000.0 if now_ms is None else now_ms
        lead_s = (self.grid.end_ms(range_id) - now_ms) / 1000.0
        if range_id > NO_RANGE and lead_s > self.settings.processor.max_clock_lead_seconds:
            raise CheckpointAhead(
                f"{where} holds range {range_id}, which ends {lead_s:,.0f} s after this "
                "machine's clock. A forged or skewed timestamp carried a processor clock there; "
                "counting on would drop every real frame as closed. Check this machine's clock, "
                "then run `camtopo store rewind --network NETWORK.json` (keeps the counts; see "
                "docs/operations.md, 'Checkpoint ahead of the clock')"
            )

    def rewind(self, now_ms: float | None = None) -> dict[str, int]:
        """Bring every stored range, tick and transit mark that lies ahead of the clock back
        to the last range the clock has closed; the counts stay. Returns what was moved
        (key -> old range or tick). Run with every processor stopped."""
        now_ms = time.time() * 1000.0 if now_ms is None else now_ms
        to_range = self.grid.last_closed(now_ms)
        to_tick = self.grid.first_tick(to_range + 1)
        moved: dict[str, int] = {}

        def lower(key: str, field: str | None, limit: int) -> None:
            raw = self.redis.hget(key, field) if field else self.redis.get(key)
            text = raw.decode() if raw is not None else ""
            if text.lstrip("-").isdigit() and int(text) > limit:
                moved[f"{key} {field}" if field else key] = int(text)
                if field:
                    self.redis.hset(key, field, limit)
                else:
                    self.redis.set(key, limit)

        for shard in range(self.settings.redis.shards):
            lower(self.keys.range(shard), None, to_range)
            lower(self.keys.tick(shard), None, to_tick)
        lower(self.keys.transit, "range_id", to_range)
        lower(self.keys.transit, "through", to_tick)
        lower(self.keys.checkpoint, "last_tick", to_tick)
        raw = self.redis.hget(self.keys.checkpoint, "range_id")
        if raw is not None and int(raw) > to_range:
            moved[f"{self.keys.checkpoint} range_id"] = int(raw)
            self.redis.hset(self.keys.checkpoint, mapping=self._meta_times(to_range))  # type: ignore[arg-type]
        self._cache = _Cache()
        return moved

    def _save_transit(self, estimator: Any, range_id: int) -> int:
        blob = _npz(estimator.transit.state())
        # While replaying ranges older than the restored transit state, that state is still
        # what the estimator holds (it skips ticks it has): keep its range as the label.
        label = max(range_id, self._cache.transit_loaded)
        t0 = time.perf_counter()
        self.redis.hset(
            self.keys.transit,
            mapping={"range_id": label, "through": estimator.transit_through, "state": blob},
        )
        metrics.REDIS_WRITE_SECONDS.labels("transit").observe(time.perf_counter() - t0)
        self._cache.transit_synced = label
        return len(blob)

    def _load_transit(self, estimator: Any) -> int | None:
        """Restore the transit state; returns its range id (None when none is stored)."""
        transit = getattr(estimator, "transit", None)
        if transit is None:
            return None
        raw = self.redis.hgetall(self.keys.transit)
        if not raw:
            log.warning("no transit state in %s: transit evidence starts again", self.keys.transit)
            return None
        try:
            with np.load(io.BytesIO(raw[b"state"])) as npz:
                transit.load_state({k: npz[k] for k in npz.files})
        except (ValueError, KeyError, OSError) as exc:
            raise StoreError(f"{self.keys.transit}: transit state unreadable: {exc}") from exc
        estimator.transit_through = int(raw[b"through"])
        self._cache.transit_synced = self._cache.transit_loaded = int(raw[b"range_id"])
        return self._cache.transit_synced

    def load_into(self, estimator: _HasCounts) -> Checkpoint | None:
        """Restore every stored row into the estimator's engine; None if the store is empty."""
        counts = fast_counts(estimator)
        self._cache.run_id = self._run_id()  # the server these rows came from
        stored = self.redis.get(self.keys.network)
        if stored is not None and json.loads(stored) != network_key(self.network):
            raise StoreError(
                f"Redis key {self.keys.network} holds a different network than the estimator's"
            )
        meta = parse_checkpoint(
            {k.decode(): v.decode() for k, v in self.redis.hgetall(self.keys.checkpoint).items()}
        )
        ranges = self.shard_ranges()
        self.refuse_if_ahead(max(ranges.values(), default=NO_RANGE), "a shard")
        self.refuse_if_ahead(meta.get("range_id", NO_RANGE), self.keys.checkpoint)
        n_rows = sum(self._import_shard(counts, s) for s in range(self.settings.redis.shards))
        if not meta and n_rows == 0:
            return None
        self._load_transit(estimator)
        counts.dirty[:] = False
        estimator.observed_ticks = meta.get("observed_ticks", 0)
        estimator.observations = meta.get("observations", 0)
        counts.last_tick = meta.get("last_tick")
        self._cache.meta_range = meta.get("range_id", NO_RANGE)
        n_shards = self.settings.redis.shards
        self._cache.synced = {s: self._cache.meta_range for s in range(n_shards)}
        self._cache.totals = {
            self._cache.meta_range: {
                "observed_ticks": meta.get("observed_ticks", 0),
                "observations": meta.get("observations", 0),
                "last_tick": _tick_field(meta.get("last_tick")),
                "offsets": json.dumps(
                    {str(k): v for k, v in meta.get("resume_offsets", {}).items()}
                ),
            }
        }
        return Checkpoint(
            range_id=meta.get("range_id", NO_RANGE),
            resume_offsets=meta.get("resume_offsets", {}),
            shard_ranges=ranges,
            rows=n_rows,
            observed_ticks=meta.get("observed_ticks", 0),
            observations=meta.get("observations", 0),
            last_tick=meta.get("last_tick"),
            saved_ms=meta.get("saved_ms"),
        )

    # --- topology -----------------------------------------------------------------------------
    def _stored_graph(self) -> Graph:
        if self._cache.graph is None:
            raw = self.redis.hgetall(self.keys.edges)
            self._cache.graph = {k.decode(): json.loads(v) for k, v in raw.items()}
        return self._cache.graph

    def update_topology(self, estimator: _HasCounts, range_end_ms: int) -> list[dict[str, Any]]:
        """Recompute adjacency, store the camera graph, log and return the changes.

        Adjacency is refreshed from the rows that changed since the last update
        (:class:`camtopo.core.adjacency.AdjacencyIndex`); see docs/topology_store.md.
        """
        started = time.perf_counter()
        return self.publish_topology(
            estimator.window_edges(), getattr(estimator, "transit", None), range_end_ms, started
        )

    def publish_topology(
        self,
        edges: WindowEdges,
        transit: Any,
        range_end_ms: int,
        started: float | None = None,
    ) -> list[dict[str, Any]]:
        """Store the camera graph of these window edges (plus the transit estimator's links,
        if any), log and return the changes."""
        started = time.perf_counter() if started is None else started
        links = []
        if transit is not None:
            index = self.network.camera_index
            overlaps = {(index(e.a), index(e.b)) for e in camera_edges(self.network, edges)}
            links = merge_transit(self.network, [], transit.directed(overlaps=overlaps))
        new = build_graph(self.network, edges, links)
        old = self._stored_graph()
        now_ms = int(time.time() * 1000)
        diff = diff_graphs(old, new, self.settings.store.reweight_step, range_end_ms, now_ms)
        pipe = self.redis.pipeline(transaction=True)  # all {topo} keys: one slot
        if diff.upserts:
            pipe.hset(
                self.keys.edges,
                mapping={k: json.dumps(v, separators=(",", ":")) for k, v in diff.upserts.items()},
            )
        if diff.removed:
            pipe.hdel(self.keys.edges, *diff.removed)
        for change in diff.changes:
            pipe.xadd(
                self.keys.changes,
                {"event": json.dumps(change, separators=(",", ":"))},
                maxlen=self.settings.store.change_log_length,
                approximate=True,
            )
        pipe.hset(
            self.keys.topo_state,
            mapping={"range_end_ms": int(range_end_ms), "updated_ms": now_ms, "edges": len(new)},
        )
        t0 = time.perf_counter()
        pipe.execute()
        metrics.REDIS_WRITE_SECONDS.labels("topology").observe(time.perf_counter() - t0)
        self._cache.graph = {k: diff.upserts.get(k, old.get(k)) for k in new}  # type: ignore[misc]
        for change in diff.changes:
            metrics.CHANGES.labels(change["change"]).inc()
        metrics.TOPOLOGY_SECONDS.observe(time.perf_counter() - started)
        metrics.EDGES.set(len(new))
        metrics.CAMERAS.set(self.network.n_cameras)
        return diff.changes

    # --- reading ------------------------------------------------------------------------------
    def view(self) -> TopologyView:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.edges)
        pipe.hgetall(self.keys.topo_state)
        edges, state = pipe.execute()
        return parse_view(
            self.network,
            {k.decode(): v.decode() for k, v in edges.items()},
            {k.decode(): v.decode() for k, v in state.items()},
        )

    def cameras(self) -> list[str]:
        return list(self.network.cameras)

    def neighbours(self, camera: str) -> dict[str, Any]:
        return self.view().neighbours(camera)

    def window_overlaps(self, a: str, b: str) -> dict[str, Any]:
        return self.view().window_overlaps(a, b)

    def graph(self) -> dict[str, Any]:
        return self.view().graph_json()

    def graphml(self) -> str:
        return self.view().graphml()

    def partitions(self) -> dict[str, Any]:
        return self.view().partitions(self.settings.store.partition_max_cameras)

    def read_row(self, window: int) -> Row | None:
        key = self.keys.rows(self.shard_of_window(window))
        blob = self.redis.hget(key, str(window))
        if blob is None:
            return None
        return decode_row(blob, self.network.n_cameras, self.network.n_windows, f"{key}[{window}]")

    def pair_evidence(self, window_a: str | int, window_b: str | int) -> dict[str, Any]:
        i = window_index(self.network, window_a)
        j = window_index(self.network, window_b)
        return pair_evidence(self.network, i, j, self.read_row(i), self.read_row(j), self.settings)

    def changes(self, after: str = "0-0", count: int = 100) -> list[tuple[str, dict[str, Any]]]:
        """Change-log entries after stream id ``after`` (oldest first)."""
        entries = self.redis.xrange(self.keys.changes, min=f"({after}", count=count)
        return [(eid.decode(), json.loads(fields[b"event"])) for eid, fields in entries]

    def health(self) -> dict[str, Any]:
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            return {"status": "down", "redis": False, "error": str(exc)}
        meta = parse_checkpoint(
            {k.decode(): v.decode() for k, v in self.redis.hgetall(self.keys.checkpoint).items()}
        )
        view = self.view()
        return health_doc(meta, view)


# A counted range ending this far after the wall clock means a clock once ran ahead.
HEALTH_MAX_LEAD_S = 60.0


def health_doc(meta: Mapping[str, Any], view: TopologyView) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    saved = meta.get("saved_ms")
    status = "ok" if meta else "empty"
    ends = [t for t in (meta.get("range_end_ms"), view.range_end_ms) if t is not None]
    lead_s = (max(ends) - now_ms) / 1000 if ends else None
    if lead_s is not None and lead_s > HEALTH_MAX_LEAD_S:
        status = "clock_ahead"  # see CheckpointAhead: nothing real is counted any more
    return {
        "status": status,
        "redis": True,
        "cameras": len(view.cameras),
        "edges": len(view.edges),
        "checkpoint": {
            "range_id": meta.get("range_id"),
            "saved_ms": saved,
            "age_s": round((now_ms - saved) / 1000, 3) if saved else None,
            "range_end_ms": meta.get("range_end_ms"),
            "lead_s": round(lead_s, 3) if lead_s is not None else None,
        },
        "topology": {"range_end_ms": view.range_end_ms, "updated_ms": view.updated_ms},
    }


# --- publishing -------------------------------------------------------------------------------


def change_records(
    changes: Iterable[Mapping[str, Any]], encoder: avro.Encoder | None = None
) -> list[tuple[bytes, bytes]]:
    """(key, framed Avro value) pairs: every change once per endpoint, keyed by that camera.
    ``encoder``: from :func:`camtopo.avro.encoder` (registry mode: the registered id); None
    frames with file mode's fixed id."""
    encode = encoder.encode if encoder else functools.partial(avro.encode, avro.TOPOLOGY_CHANGE)
    out = []
    for change in changes:
        for camera in (change["a"], change["b"]):
            value = encode(keyed_for(change, camera))
            out.append((camera.encode(), value))
    return out


class _Producer(Protocol):
    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...


def publish_changes(
    producer: _Producer,
    changes: Sequence[Mapping[str, Any]],
    topic: str = "topology-changes",
    timeout: float = 30.0,
    encoder: avro.Encoder | None = None,
) -> int:
    """Send changes to ``topic`` (confluent-kafka producer), wait for delivery, return count.

    Keyed by camera, so a camera's changes stay in order on its partition. Raises StoreError
    naming the first failure if any record was not delivered. ``encoder``: as for
    :func:`change_records` (a worker makes it at start, so a registry is reached then).
    """
    errors: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(f"{msg.key()!r}: {err}")

    records = change_records(changes, encoder)
    for key, value in records:
        producer.produce(topic, value=value, key=key, on_delivery=delivered)
        producer.poll(0)
    left = producer.flush(timeout)
    if left:
        raise StoreError(f"{left} topology-change records not delivered to {topic} in {timeout}s")
    if errors:
        raise StoreError(f"{len(errors)} topology-change records failed, first: {errors[0]}")
    metrics.CHANGES_PUBLISHED.inc(len(records))
    return len(records)


def _tick_field(tick: int | None) -> int | str:
    return "" if tick is None else int(tick)


def _import_row(counts: Any, i: int, row: Row, where: str) -> None:
    """Import a stored row; refuse counts wider than the engine's (a smaller ``count_limit``
    than the one they were counted with would silently wrap them)."""
    if row.o.dtype.itemsize > counts.O.dtype.itemsize:
        raise BlobError(
            f"{where}: counts stored as {row.o.dtype} but this engine counts in {counts.O.dtype} "
            f"(count_limit {counts.limit}); start with the count_limit the store was written with"
        )
    counts.import_row(i, row.o, row.state, row.p, row.activity)


def _npz(arrays: Mapping[str, Any]) -> bytes:
    """``np.savez_compressed``'s format (``np.load`` reads it) at deflate level 1: at 1,000
    cameras the transit state (~100 MB raw) took 2.2 s at numpy's level 6, 0.37 s here, for
    10.5 MB instead of 7.5 (measured on campus-1000 after 4 simulated minutes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for name, value in arrays.items():
            with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)
    return buf.getvalue()
