"""What every part of one topology store shares: the client, the network, the key layout, the
range grid, and what this process knows of the server's state (:class:`StoreState`); plus the
store's errors and the records its writers return."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

from camtopo.core.engine import FastExclusion
from camtopo.core.evidence import WindowEdges
from camtopo.core.grid import Network
from camtopo.core.partitioned import window_shards
from camtopo.core.ranges import RangeGrid
from camtopo.errors import CamtopoError
from camtopo.settings import Settings
from topology_store.backend import RedisLike
from topology_store.graph import Graph
from topology_store.keys import Keys

NO_RANGE = -1

# Redis down or restarting (loading), or full (maxmemory with noeviction: the transaction is
# refused whole): a writer waits it out or rebuilds from Redis; nothing is acked meanwhile.
TRANSIENT_ERRORS = (RedisConnectionError, RedisTimeoutError, OutOfMemoryError)


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


class Estimator(Protocol):
    """What the store reads and restores of a :class:`camtopo.core.topology.TopologyEstimator`."""

    counts: Any
    observed_ticks: int
    observations: int

    def window_edges(self) -> WindowEdges: ...


@dataclass(frozen=True)
class Checkpoint:
    """What :meth:`CheckpointWriter.load_into` restored."""

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
class StoreState:
    """What this process last wrote to or read from the server (reset when another answers)."""

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


def fast_counts(estimator: Estimator) -> FastExclusion:
    counts = estimator.counts
    if not isinstance(counts, FastExclusion):
        raise StoreError(
            f"the topology store persists FastExclusion rows; the estimator uses "
            f"{type(counts).__name__} (build it with engine='fast' or 'exact')"
        )
    return counts


def tick_field(tick: int | None) -> int | str:
    return "" if tick is None else int(tick)


class StoreContext:
    """One network's store in one Redis: shared by its writer, leases, publisher and reader."""

    def __init__(
        self, client: RedisLike, network: Network, settings: Settings, prefix: str = "camtopo"
    ) -> None:
        self.redis = client
        self.network = network
        self.settings = settings
        self.keys = Keys(prefix, settings.redis.shards)
        self.n_shards = settings.redis.shards
        self.window_shard = window_shards(network, settings.redis.shards)
        self.grid: RangeGrid = settings.range_grid()
        self.state = StoreState()

    def shard_of_window(self, window: int) -> int:
        return int(self.window_shard[window])

    def run_id(self) -> str:
        return str(self.redis.info("server")["run_id"])

    def read_shard_ranges(self) -> dict[int, int]:
        """shard -> last range id written to it (NO_RANGE if never), as the server holds."""
        pipe = self.redis.pipeline(transaction=False)
        for s in range(self.n_shards):
            pipe.get(self.keys.range(s))
        return {s: int(v) if v is not None else NO_RANGE for s, v in enumerate(pipe.execute())}

    def shard_ranges(self) -> dict[int, int]:
        """:meth:`read_shard_ranges`, remembered as what the server holds."""
        ranges = self.read_shard_ranges()
        self.state.shard_ranges = dict(ranges)
        return ranges

    def applied_range(self, shard: int) -> int:
        """The range ``shard`` holds in Redis (remembered)."""
        raw = self.redis.get(self.keys.range(shard))
        value = int(raw) if raw is not None else NO_RANGE
        self.state.shard_ranges[shard] = value
        return value

    def rows_already_applied(self, range_id: int) -> np.ndarray:
        """bool (n_windows,): rows whose shard already holds ``range_id`` (must not re-apply)."""
        if not self.state.shard_ranges:
            self.shard_ranges()
        ranges = np.array(
            [self.state.shard_ranges.get(s, NO_RANGE) for s in range(self.n_shards)],
            dtype=np.int64,
        )
        result: np.ndarray = ranges[self.window_shard] >= range_id
        return result

    def write_network(self) -> None:
        """Save the network once; refuse a store that holds another network's rows."""
        if self.state.network_written:
            return
        doc = json.dumps(self.network.to_json(), sort_keys=True)
        stored = self.redis.get(self.keys.network)
        if stored is not None and json.loads(stored) != json.loads(doc):
            raise StoreError(
                f"Redis key {self.keys.network} holds a different network than this processor's "
                "(other cameras or grids); use another key prefix or clear the store"
            )
        if stored is None:
            self.redis.set(self.keys.network, doc)
        self.state.network_written = True

    def meta_times(self, range_id: int) -> dict[str, int]:
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
