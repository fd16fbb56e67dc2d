"""All configuration in one typed object, read from ``CAMTOPO_*`` environment variables.

Defaults are the paper's values where it gives one (window grid 12 x 9 on 320 x 240, the
8-neighbourhood for spatial padding, O_ref = 20, C* = 0.8, Tr = 2 s, Td = 5 s, 10 FPS,
byte-sized counts). Every field can be overridden, e.g. ``CAMTOPO_C_STAR=0.85``.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAMTOPO_", extra="ignore")

    # --- grid and frame rate (paper section 4.1, 6) ---
    grid_cols: int = Field(12, ge=1, description="windows across a 320 px frame (40 px each)")
    grid_rows: int = Field(9, ge=1, description="windows down a 240 px frame")
    frame_width: int = Field(320, ge=1)
    frame_height: int = Field(240, ge=1)
    fps: int = Field(10, ge=1, description="frame rate; one tick = 1/fps s")

    # --- padding (section 4.1, 4.2) ---
    spatial_radius: int = Field(1, ge=0, description="1 = the 8-neighbourhood")
    temporal_tolerance_ms: int = Field(
        500, ge=0, description="temporal padding; also absorbs clock skew between cameras"
    )

    # --- evidence (section 5.1) ---
    o_ref: float = Field(20.0, gt=1, description="opportunities for reliable exclusion")
    c_star: float = Field(0.8, gt=0, lt=1, description="adjacency threshold on C' both ways")

    # --- fast engine: pruning of refuted row segments (bounded memory) ---
    # (see camtopo/core/engine.py; gate 0 + prune off + no budget = the paper's exact counts)
    activity_gate: int = Field(10, ge=0, description="a window's row starts after N occupied ticks")
    prune: bool = Field(True, description="release (window, camera) segments refuted by exclusion")
    prune_min_opportunities: int = Field(32, ge=1, le=255)
    prune_max_ratio: float = Field(0.5, gt=0, lt=1)
    max_pool_mb: int = Field(4096, ge=1, description="budget for P segments; bounds memory")

    # --- streaming ranges (section 6.1) ---
    range_seconds: float = Field(2.0, gt=0, description="Tr")
    late_cutoff_seconds: float = Field(5.0, ge=0, description="Td")

    # --- services ---
    kafka_bootstrap: str = "127.0.0.1:9092"
    occupancy_topic: str = "occupancy"
    topology_changes_topic: str = "topology-changes"
    dead_letter_topic: str = "occupancy-dead-letter"
    occupancy_partitions: int = Field(8, ge=1)
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_shards: int = Field(64, ge=1, description="hash-tag shards for count rows")
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    api_token: str | None = Field(None, description="if set, the query service requires it")

    @property
    def tick_ms(self) -> float:
        return 1000.0 / self.fps

    @property
    def temporal_tolerance_ticks(self) -> int:
        return int(round(self.temporal_tolerance_ms / self.tick_ms))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
