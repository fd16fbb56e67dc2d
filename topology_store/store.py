"""The topology store of one network in one Redis: its parts, wired to one client.

Each concern lives in its own module, over one shared :class:`StoreContext`:

- :mod:`topology_store.checkpoints` — the single-role processor's count → checkpoint path
  (:class:`CheckpointWriter`: checkpoint, load, follow a Redis failover, WAIT for replicas);
- :mod:`topology_store.leases` — the partitioned counting workers' shard leases and
  half-edges (:class:`ShardLeases`);
- :mod:`topology_store.rows` — row and transit-state I/O both of them use (:class:`ShardRows`);
- :mod:`topology_store.publisher` — the camera graph and its change log
  (:class:`TopologyPublisher`; the Kafka change records are processors/changes.py);
- :mod:`topology_store.read_model` — the decoding every reader shares, and the synchronous
  :class:`StoreReader` (the query service reads the same model asynchronously).

:class:`TopologyStore` builds them on one client (``redis://``, ``rediss://`` or the
``memory://`` test double, :mod:`topology_store.backend`) and offers their methods under the
names the processors and tests call, so a caller holds one object per store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from camtopo.core.evidence import WindowEdges
from camtopo.core.grid import Network
from camtopo.settings import Settings
from topology_store.backend import RedisLike, store_client
from topology_store.blobs import Row
from topology_store.checkpoints import CheckpointWriter
from topology_store.context import (
    NO_RANGE,
    Checkpoint,
    CheckpointAhead,
    CheckpointReport,
    Estimator,
    LeaseLost,
    StoreContext,
    StoreError,
)
from topology_store.graph import TopologyView
from topology_store.leases import ShardLeases
from topology_store.publisher import TopologyPublisher
from topology_store.read_model import StoreReader
from topology_store.rows import ShardRows


class TopologyStore:
    """Counts, graph and change log of one network in one Redis (or Redis Cluster-ready keys)."""

    def __init__(
        self,
        redis_url: str,
        network: Network,
        settings: Settings,
        *,
        prefix: str = "camtopo",
        client: RedisLike | None = None,
    ) -> None:
        client = client if client is not None else store_client(settings, redis_url)
        self.ctx = StoreContext(client, network, settings, prefix)
        self.rows = ShardRows(self.ctx)
        self.writer = CheckpointWriter(self.ctx, self.rows)
        self.leases = ShardLeases(self.ctx, self.rows, self.writer)
        self.publisher = TopologyPublisher(self.ctx)
        self.reader = StoreReader(client, network, settings, prefix)
        self.network, self.settings, self.keys = network, settings, self.ctx.keys
        self.grid = self.ctx.grid

    @property
    def redis(self) -> RedisLike:
        return self.ctx.redis

    @redis.setter
    def redis(self, client: RedisLike) -> None:
        """Another client for every part (a test's failover to another server)."""
        self.ctx.redis = self.reader.redis = client

    @classmethod
    def from_redis(
        cls, redis_url: str, settings: Settings, prefix: str = "camtopo"
    ) -> TopologyStore:
        """A store for the network a processor saved in Redis (the query service's case)."""
        reader = StoreReader.from_redis(redis_url, settings, prefix)
        return cls(redis_url, reader.network, settings, prefix=prefix, client=reader.redis)

    def close(self) -> None:
        self.redis.close()

    # --- shards (StoreContext) ----------------------------------------------------------------
    def shard_of_window(self, window: int) -> int:
        return self.ctx.shard_of_window(window)

    def shard_ranges(self) -> dict[int, int]:
        return self.ctx.shard_ranges()

    def applied_range(self, shard: int) -> int:
        return self.ctx.applied_range(shard)

    def rows_already_applied(self, range_id: int) -> np.ndarray:
        return self.ctx.rows_already_applied(range_id)

    def refuse_if_ahead(self, range_id: int, where: str, now_ms: float | None = None) -> None:
        self.ctx.refuse_if_ahead(range_id, where, now_ms)

    # --- counts of the single role (CheckpointWriter, ShardRows) ------------------------------
    def checkpoint(
        self,
        estimator: Estimator,
        range_id: int,
        resume_offsets: Mapping[int, int],
        shards: Sequence[int] | None = None,
    ) -> CheckpointReport:
        return self.writer.checkpoint(estimator, range_id, resume_offsets, shards)

    def load_into(self, estimator: Estimator) -> Checkpoint | None:
        return self.writer.load_into(estimator)

    def restore_applied_rows(self, estimator: Estimator, range_id: int) -> int:
        return self.rows.restore_applied_rows(estimator, range_id)

    def rewind(self, now_ms: float | None = None) -> dict[str, int]:
        return self.rows.rewind(now_ms)

    # --- partitioned counting workers (ShardLeases) -------------------------------------------
    def claim_shards(self, shards: Iterable[int], token: str) -> None:
        self.leases.claim_shards(shards, token)

    def held_range(self, shards: Iterable[int]) -> int:
        return self.leases.held_range(shards)

    def load_shards_into(
        self, estimator: Estimator, shards: Sequence[int]
    ) -> dict[int, tuple[int, int | None]]:
        return self.leases.load_shards_into(estimator, shards)

    def checkpoint_shards(
        self, estimator: Estimator, range_id: int, shards: Sequence[int], token: str
    ) -> int:
        return self.leases.checkpoint_shards(estimator, range_id, shards, token)

    def write_half_edges(self, shard: int, half: np.ndarray) -> None:
        self.leases.write_half_edges(shard, half)

    def read_half_edges(self) -> np.ndarray:
        return self.leases.read_half_edges()

    def write_meta(self, totals: Mapping[str, Any]) -> int:
        return self.leases.write_meta(totals)

    # --- topology (TopologyPublisher) ---------------------------------------------------------
    def update_topology(self, estimator: Estimator, range_end_ms: int) -> list[dict[str, Any]]:
        return self.publisher.update_topology(estimator, range_end_ms)

    def publish_topology(
        self, edges: WindowEdges, transit: Any, range_end_ms: int
    ) -> list[dict[str, Any]]:
        return self.publisher.publish_topology(edges, transit, range_end_ms)

    # --- reading (StoreReader) ----------------------------------------------------------------
    def view(self) -> TopologyView:
        return self.reader.view()

    def cameras(self) -> list[str]:
        return self.reader.cameras()

    def neighbours(self, camera: str) -> dict[str, Any]:
        return self.reader.neighbours(camera)

    def window_overlaps(self, a: str, b: str) -> dict[str, Any]:
        return self.reader.window_overlaps(a, b)

    def graph(self) -> dict[str, Any]:
        return self.reader.graph()

    def graphml(self) -> str:
        return self.reader.graphml()

    def partitions(self) -> dict[str, Any]:
        return self.reader.partitions()

    def read_row(self, window: int) -> Row | None:
        return self.reader.read_row(window)

    def pair_evidence(self, window_a: str | int, window_b: str | int) -> dict[str, Any]:
        return self.reader.pair_evidence(window_a, window_b)

    def changes(self, after: str = "0-0", count: int = 100) -> list[tuple[str, dict[str, Any]]]:
        return self.reader.changes(after, count)

    def health(self) -> dict[str, Any]:
        return self.reader.health()


__all__ = [
    "NO_RANGE",
    "Checkpoint",
    "CheckpointAhead",
    "CheckpointReport",
    "LeaseLost",
    "StoreError",
    "TopologyStore",
]
