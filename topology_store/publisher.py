"""The camera graph in Redis: recomputed from window edges (and transit links), stored, and its
changes appended to the change log the query service and the viewer follow. The changes are
returned to the processor, which sends them to Kafka (processors/changes.py)."""

from __future__ import annotations

import json
import time
from typing import Any

from camtopo.core.evidence import WindowEdges, camera_edges
from camtopo.core.topology import merge_transit
from topology_store import metrics
from topology_store.context import Estimator, StoreContext
from topology_store.graph import Graph, build_graph, diff_graphs


class TopologyPublisher:
    """Writes the camera graph and its change log of one store (:class:`StoreContext`)."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx

    def stored_graph(self) -> Graph:
        state = self.ctx.state
        if state.graph is None:
            raw = self.ctx.redis.hgetall(self.ctx.keys.edges)
            state.graph = {k.decode(): json.loads(v) for k, v in raw.items()}
        return state.graph

    def update_topology(self, estimator: Estimator, range_end_ms: int) -> list[dict[str, Any]]:
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
        ctx, keys, store = self.ctx, self.ctx.keys, self.ctx.settings.store
        network = ctx.network
        links = []
        if transit is not None:
            index = network.camera_index
            overlaps = {(index(e.a), index(e.b)) for e in camera_edges(network, edges)}
            links = merge_transit(network, [], transit.directed(overlaps=overlaps))
        new = build_graph(network, edges, links)
        old = self.stored_graph()
        now_ms = int(time.time() * 1000)
        diff = diff_graphs(old, new, store.reweight_step, range_end_ms, now_ms)
        pipe = ctx.redis.pipeline(transaction=True)  # all {topo} keys: one slot
        if diff.upserts:
            compact = {k: json.dumps(v, separators=(",", ":")) for k, v in diff.upserts.items()}
            pipe.hset(keys.edges, mapping=compact)
        if diff.removed:
            pipe.hdel(keys.edges, *diff.removed)
        for change in diff.changes:
            pipe.xadd(
                keys.changes,
                {"event": json.dumps(change, separators=(",", ":"))},
                maxlen=store.change_log_length,
                approximate=True,
            )
        pipe.hset(
            keys.topo_state,
            mapping={"range_end_ms": int(range_end_ms), "updated_ms": now_ms, "edges": len(new)},
        )
        t0 = time.perf_counter()
        pipe.execute()
        metrics.REDIS_WRITE_SECONDS.labels("topology").observe(time.perf_counter() - t0)
        ctx.state.graph = {k: diff.upserts.get(k, old.get(k)) for k in new}  # type: ignore[misc]
        for change in diff.changes:
            metrics.CHANGES.labels(change["change"]).inc()
        metrics.TOPOLOGY_SECONDS.observe(time.perf_counter() - started)
        metrics.EDGES.set(len(new))
        metrics.CAMERAS.set(network.n_cameras)
        return diff.changes
