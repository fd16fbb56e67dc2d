"""The estimator's parameters as plain frozen values: the core takes these, never settings.

camtopo/settings builds them from ``CAMTOPO_*`` variables (``Settings.estimator_parameters``);
benchmarks and tests may build them directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from camtopo.core.transit import TransitParams


@dataclass(frozen=True)
class ExclusionParameters:
    """Padding, the adjacency thresholds and the fast engine's pruning (paper sections 4-5)."""

    tolerance_ticks: int  # temporal padding, in ticks
    spatial_radius: int  # 1 = the 8-neighbourhood
    count_limit: int  # O is halved (with P) on reaching this
    o_ref: float  # opportunities for reliable exclusion
    c_star: float  # adjacency threshold on C' both ways
    activity_gate: int  # a window's row starts after this many occupied ticks
    prune: bool  # release segments refuted by exclusion
    prune_min_opportunities: int
    prune_max_ratio: float
    readmit_after: int  # a pruned segment is re-tested after this many opportunities
    max_pool_mb: int  # budget for P segments


@dataclass(frozen=True)
class EstimatorParameters:
    tick_ms: float  # one frame of the network
    exclusion: ExclusionParameters
    transit: TransitParams | None  # None: no transit evidence
    transit_max_cameras: int  # larger networks skip transit evidence (quadratic zone-pair map)
