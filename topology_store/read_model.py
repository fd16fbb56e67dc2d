"""The read model: what is stored, decoded into the camera topology, written once.

:class:`ReadModel` says where each answer lives (keys, fields) and decodes the replies — no
I/O. Two thin readers send the commands: the query service's asynchronous
:class:`topology_store.service.QueryState`, and :class:`StoreReader` here (synchronous: the
``camtopo store`` command, tests and benchmarks).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import redis

from camtopo.core.evidence import c_prime
from camtopo.core.grid import Network, NetworkError
from camtopo.core.partitioned import window_shards
from camtopo.settings import Settings
from topology_store.backend import RedisLike, decoded, store_client
from topology_store.blobs import Row, decode_row
from topology_store.context import NO_RANGE, StoreError
from topology_store.graph import TopologyView
from topology_store.keys import Keys

# A counted range ending this far after the wall clock means a clock once ran ahead.
HEALTH_MAX_LEAD_S = 60.0
Entries = Sequence[tuple[bytes, Mapping[bytes, bytes]]]


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
    o_ref, c_star = settings.algorithm.o_ref, settings.algorithm.c_star
    c_ij = float(c_prime(np.array([p_ij]), np.array([o_ij]), o_ref)[0])
    c_ji = float(c_prime(np.array([p_ji]), np.array([o_ji]), o_ref)[0])
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
        "c_star": c_star,
        "adjacent": c_ij > c_star and c_ji > c_star,
    }


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


class ReadModel:
    """Where the answers about one network live, and how their replies decode."""

    def __init__(self, network: Network, settings: Settings, keys: Keys) -> None:
        self.network = network
        self.settings = settings
        self.keys = keys
        self._window_shard = window_shards(network, keys.shards)

    def row_location(self, window: int) -> tuple[str, str]:
        """(hash key, field) of window ``window``'s count row."""
        return self.keys.rows(int(self._window_shard[window])), str(window)

    def decode_row(self, window: int, blob: bytes | None) -> Row | None:
        if blob is None:
            return None
        key, _ = self.row_location(window)
        net = self.network
        return decode_row(blob, net.n_cameras, net.n_windows, f"{key}[{window}]")

    def decode_view(
        self, edges: Mapping[bytes, bytes], state: Mapping[bytes, bytes]
    ) -> TopologyView:
        """The view from the replies of HGETALL ``keys.edges`` and ``keys.topo_state``."""
        return parse_view(self.network, decoded(edges), decoded(state))

    @staticmethod
    def decode_changes(entries: Entries) -> list[tuple[str, dict[str, Any]]]:
        """Change-log entries (XRANGE / XREAD reply) as (id, event)."""
        return [(eid.decode(), json.loads(fields[b"event"])) for eid, fields in entries]

    @staticmethod
    def decode_meta(raw: Mapping[bytes, bytes]) -> dict[str, Any]:
        """The checkpoint meta from HGETALL ``keys.checkpoint``."""
        return parse_checkpoint(decoded(raw))

    def pair_evidence(self, i: int, j: int, row_i: Row | None, row_j: Row | None) -> dict[str, Any]:
        return pair_evidence(self.network, i, j, row_i, row_j, self.settings)


class StoreReader:
    """The read model over a synchronous client: the ``camtopo store`` command, tests and
    benchmarks (the query service reads asynchronously, with the same :class:`ReadModel`)."""

    def __init__(
        self, client: RedisLike, network: Network, settings: Settings, prefix: str = "camtopo"
    ) -> None:
        self.redis = client
        self.model = ReadModel(network, settings, Keys(prefix, settings.redis.shards))
        self.keys = self.model.keys
        self.network = network
        self.settings = settings

    @classmethod
    def from_redis(cls, redis_url: str, settings: Settings, prefix: str = "camtopo") -> StoreReader:
        """A reader of the network a processor saved under ``prefix``."""
        client = store_client(settings, redis_url)
        raw = client.get(Keys(prefix, settings.redis.shards).network)
        if raw is None:
            raise StoreError(f"no network saved under prefix {prefix!r} at {redis_url}")
        return cls(client, Network.from_json(json.loads(raw)), settings, prefix)

    def view(self) -> TopologyView:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.edges)
        pipe.hgetall(self.keys.topo_state)
        edges, state = pipe.execute()
        return self.model.decode_view(edges, state)

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
        key, field = self.model.row_location(window)
        return self.model.decode_row(window, self.redis.hget(key, field))

    def pair_evidence(self, window_a: str | int, window_b: str | int) -> dict[str, Any]:
        i = window_index(self.network, window_a)
        j = window_index(self.network, window_b)
        return self.model.pair_evidence(i, j, self.read_row(i), self.read_row(j))

    def changes(self, after: str = "0-0", count: int = 100) -> list[tuple[str, dict[str, Any]]]:
        """Change-log entries after stream id ``after`` (oldest first)."""
        return self.model.decode_changes(
            self.redis.xrange(self.keys.changes, min=f"({after}", count=count)
        )

    def health(self) -> dict[str, Any]:
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            return {"status": "down", "redis": False, "error": str(exc)}
        meta = self.model.decode_meta(self.redis.hgetall(self.keys.checkpoint))
        return health_doc(meta, self.view())

    def close(self) -> None:
        self.redis.close()
