"""All configuration, read from ``CAMTOPO_*`` environment variables, in one section per concern.

``settings.kafka.bootstrap`` is ``CAMTOPO_KAFKA_BOOTSTRAP``, ``settings.redis.shards`` is
``CAMTOPO_REDIS_SHARDS``: every field names its variable (camtopo/settings/sections.py), and
``camtopo settings`` prints the table (docs/operations.md, "Configuration").

Defaults are the paper's values where it gives one (window grid 12 x 9 on 320 x 240, the
8-neighbourhood for spatial padding, Tr = 2 s, Td = 5 s, 10 FPS), except O_ref, C* and the count
limit, where our measurements chose otherwise (each field says why; the paper's values are
``CAMTOPO_O_REF=20 CAMTOPO_C_STAR=0.8 CAMTOPO_COUNT_LIMIT=256``).

The pure core (camtopo/core) never sees these objects: it takes plain frozen parameter
dataclasses, built here only (:meth:`Settings.estimator_parameters`, :meth:`Settings.range_grid`).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from camtopo.core.moved import MoveParams
from camtopo.core.parameters import EstimatorParameters, ExclusionParameters
from camtopo.core.ranges import RangeGrid
from camtopo.core.transit import TransitParams
from camtopo.settings.sections import (
    AlgorithmSettings,
    DetectionSettings,
    GridSettings,
    KafkaSettings,
    LagExporterSettings,
    PartitionedSettings,
    ProcessorSettings,
    ProducerSettings,
    RedisSettings,
    SchemaRegistrySettings,
    ServiceSettings,
    StoreSettings,
    TransitSettings,
)

__all__ = [
    "AlgorithmSettings",
    "DetectionSettings",
    "GridSettings",
    "KafkaSettings",
    "LagExporterSettings",
    "PartitionedSettings",
    "ProcessorSettings",
    "ProducerSettings",
    "RedisSettings",
    "SchemaRegistrySettings",
    "ServiceSettings",
    "Settings",
    "StoreSettings",
    "TransitSettings",
    "get_settings",
    "sections_markdown",
]

ENV_PREFIX = "CAMTOPO_"


class Settings(BaseModel):
    """Every section, each read from the environment when not given.

    ``Settings(redis={"shards": 8})`` sets one field and reads the rest of that section from
    the environment, as ``Settings(redis_shards=8)`` did before the split.
    """

    # hide_input_in_errors here too: a section given as a dict is validated by this model.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    grid: GridSettings = Field(default_factory=GridSettings)
    algorithm: AlgorithmSettings = Field(default_factory=AlgorithmSettings)
    transit: TransitSettings = Field(default_factory=TransitSettings)
    processor: ProcessorSettings = Field(default_factory=ProcessorSettings)
    partitioned: PartitionedSettings = Field(default_factory=PartitionedSettings)
    lag_exporter: LagExporterSettings = Field(default_factory=LagExporterSettings)
    detection: DetectionSettings = Field(default_factory=DetectionSettings)
    producer: ProducerSettings = Field(default_factory=ProducerSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    schema_registry: SchemaRegistrySettings = Field(default_factory=SchemaRegistrySettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)

    # --- copies and the variable table ---

    def replace(self, **sections: dict[str, Any]) -> Settings:
        """A copy with some fields changed, validated: ``s.replace(redis={"shards": 8})``.

        (``model_copy(update=...)`` would skip validation and cannot reach into a section.)
        """
        update: dict[str, Any] = {}
        for name, changes in sections.items():
            current = getattr(self, name)
            valid = type(current).model_validate({**current.model_dump(), **changes})
            # model_copy keeps which fields were set explicitly (model_fields_set), as before
            update[name] = current.model_copy(update={k: getattr(valid, k) for k in changes})
        return self.model_copy(update=update)

    @classmethod
    def variables(cls) -> Iterator[tuple[str, str, str]]:
        """``(CAMTOPO_ variable, section, field)`` for every setting, in declaration order."""
        for section, info in cls.model_fields.items():
            assert isinstance(info.annotation, type)
            for name, field in info.annotation.model_fields.items():
                assert isinstance(field.validation_alias, str), (section, name)
                yield field.validation_alias, section, name

    def by_variable(self, mode: Literal["python", "json"] = "python") -> dict[str, Any]:
        """Every value keyed by its variable's name without the prefix, lower case
        (``kafka_bootstrap``), as ``model_dump(mode=mode)`` gives it: the flat form that
        result files record."""
        dumps = {
            section: getattr(self, section).model_dump(mode=mode)
            for section in type(self).model_fields
        }
        return {
            var.removeprefix(ENV_PREFIX).lower(): dumps[section][name]
            for var, section, name in self.variables()
        }

    def environment(self) -> dict[str, str]:
        """``CAMTOPO_*`` variables that reproduce these settings in another process (secrets
        included, unset values left out)."""
        env: dict[str, str] = {}
        for var, section, name in self.variables():
            value = getattr(getattr(self, section), name)
            if value is None:  # unset: str(None) would be read back as the string "None"
                continue
            env[var] = (
                value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
            )
        return env

    # --- the core's parameters (the one adapter between settings and camtopo/core) ---

    @property
    def temporal_tolerance_ticks(self) -> int:
        return round(self.algorithm.temporal_tolerance_ms / self.grid.tick_ms)

    def exclusion_parameters(self) -> ExclusionParameters:
        a = self.algorithm
        return ExclusionParameters(
            tolerance_ticks=self.temporal_tolerance_ticks,
            spatial_radius=a.spatial_radius,
            count_limit=a.count_limit,
            o_ref=a.o_ref,
            c_star=a.c_star,
            activity_gate=a.activity_gate,
            prune=a.prune,
            prune_min_opportunities=a.prune_min_opportunities,
            prune_max_ratio=a.prune_max_ratio,
            readmit_after=a.readmit_after,
            max_pool_mb=a.max_pool_mb,
        )

    def transit_parameters(self) -> TransitParams | None:
        """None when transit evidence is off."""
        t = self.transit
        if not t.enabled:
            return None
        return TransitParams(
            tick_s=self.grid.tick_ms / 1000,
            max_lag_s=t.max_lag_s,
            bin_s=t.bin_s,
            control_s=t.control_s,
            z_star=t.z_star,
            min_ratio=t.min_ratio,
            min_excess=t.min_excess,
            max_dest=t.max_dest,
            min_report_age_s=t.min_report_age_s,
            appearance=t.appearance,
            alike_hue=t.alike_hue,
            alike_rank=t.alike_rank,
        )

    def estimator_parameters(self) -> EstimatorParameters:
        return EstimatorParameters(
            tick_ms=self.grid.tick_ms,
            exclusion=self.exclusion_parameters(),
            transit=self.transit_parameters(),
            transit_max_cameras=self.transit.max_cameras,
        )

    def move_parameters(self) -> MoveParams | None:
        """Moved-camera detection's thresholds in ticks; None when it is off."""
        a = self.algorithm
        if not a.move_detection:
            return None
        return MoveParams(
            check_ticks=max(1, round(a.move_check_s * 1000 / self.grid.tick_ms)),
            max_ratio=a.move_max_ratio,
            min_opportunities=a.move_min_opportunities,
            min_shift=a.move_min_shift,
            shift_z=a.move_shift_z,
        )

    def range_grid(self) -> RangeGrid:
        """Tr, Td, the tick and the temporal tolerance of the streaming ranges."""
        fps = self.grid.fps
        return RangeGrid(
            ticks_per_range=max(1, round(self.processor.range_seconds * fps)),
            tick_ms=1000.0 / fps,
            late_ms=self.processor.late_cutoff_seconds * 1000.0,
            tolerance=self.temporal_tolerance_ticks,
        )


def sections_markdown() -> str:
    """The section -> variables table of docs/operations.md (a test keeps it in step)."""
    rows = ["| section | field (`CAMTOPO_*` variable) |", "|---|---|"]
    for section in Settings.model_fields:
        fields = [
            f"`{name}` (`{var}`)" for var, sec, name in Settings.variables() if sec == section
        ]
        rows.append(f"| `{section}` | {', '.join(fields)} |")
    return "\n".join(rows) + "\n"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
