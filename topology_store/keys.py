"""Redis key layout. Every key carries a hash tag (``{...}``) so a Redis Cluster keeps the keys
each transaction touches in one slot:

- ``camtopo:{sNN}:rows``   hash, global window -> row blob, for the windows of cameras with
                           index % shards == NN
- ``camtopo:{sNN}:range``  id of the last range whose rows were written to shard NN
- ``camtopo:{sNN}:owner``  partitioned counting: token of the worker that may write shard NN
- ``camtopo:{sNN}:tick``   partitioned counting: the engine's last tick at the shard's range
- ``camtopo:{sNN}:half``   partitioned counting: half-edges (i, j, O_ij, P_ij) of the shard's
                           rows with C'_ij > C*, packed int64
- ``camtopo:{meta}:checkpoint`` hash: range id, resume offsets, engine clock (written last)
- ``camtopo:{meta}:network``    the network description (network.json format)
- ``camtopo:{transit}:state``   hash: range id, tick fed through, transit estimator state (npz)
- ``camtopo:{topo}:edges``      hash, "a|b" -> camera edge JSON with its window overlaps
- ``camtopo:{topo}:state``      hash: range_end_ms and time of the last topology update
- ``camtopo:{topo}:changes``    stream of topology-change events (capped), the viewer's feed
- ``camtopo:{cams}:entries``    hash, camera id -> camera registry entry JSON
- ``camtopo:{cams}:version``    the registry's version, bumped by every change (one cheap read)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "camtopo"
    shards: int = 64

    def shard_tag(self, shard: int) -> str:
        return f"s{shard:02d}" if self.shards <= 100 else f"s{shard}"

    def rows(self, shard: int) -> str:
        return f"{self.prefix}:{{{self.shard_tag(shard)}}}:rows"

    def range(self, shard: int) -> str:
        return f"{self.prefix}:{{{self.shard_tag(shard)}}}:range"

    def owner(self, shard: int) -> str:
        return f"{self.prefix}:{{{self.shard_tag(shard)}}}:owner"

    def tick(self, shard: int) -> str:
        return f"{self.prefix}:{{{self.shard_tag(shard)}}}:tick"

    def half(self, shard: int) -> str:
        return f"{self.prefix}:{{{self.shard_tag(shard)}}}:half"

    @property
    def checkpoint(self) -> str:
        return f"{self.prefix}:{{meta}}:checkpoint"

    @property
    def transit(self) -> str:
        return f"{self.prefix}:{{transit}}:state"

    @property
    def network(self) -> str:
        return f"{self.prefix}:{{meta}}:network"

    @property
    def edges(self) -> str:
        return f"{self.prefix}:{{topo}}:edges"

    @property
    def topo_state(self) -> str:
        return f"{self.prefix}:{{topo}}:state"

    @property
    def changes(self) -> str:
        return f"{self.prefix}:{{topo}}:changes"

    @property
    def camera_entries(self) -> str:
        return f"{self.prefix}:{{cams}}:entries"

    @property
    def camera_version(self) -> str:
        return f"{self.prefix}:{{cams}}:version"
