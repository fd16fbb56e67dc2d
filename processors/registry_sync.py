"""The processors' pick-up of camera registry changes (docs/operations.md, "Camera registry").

At a range close (the executor thread, the only one that touches the estimator), at most every
``camera_registry_poll_seconds``, the registry's version is read (one GET); when it moved, the
entries are read and compared with what this processor applied last:

- a camera removed: its evidence is forgotten (its edges are gone at the next topology update)
  and its frames from now on are dead letters ``camera_removed``;
- a camera added (a reserved slot, or a removed one back): its frames are counted again, from
  no evidence;
- a rename or a new description: nothing here (the query service shows it).

The set of refused cameras is replaced whole, so the event loop's :meth:`refused` reads a
consistent one without a lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from prometheus_client import Counter
from redis.exceptions import RedisError

from camtopo.core.grid import Network
from camtopo.core.ranges import ClosedBatch
from camtopo.core.registry import REMOVED, Registry, RegistryDiff, diff
from camtopo.core.topology import TopologyEstimator
from camtopo.settings import Settings
from processors.validate import DeadLetter, ValidRecord

log = logging.getLogger(__name__)
# Frames a processor took before it saw the removal, still in open ranges when the removal was
# picked up: not counted (their camera's evidence was just forgotten), and not silently either.
UNCOUNTED = Counter(
    "camtopo_registry_uncounted_frames_total",
    "frames of open ranges not counted because their camera was removed or is inactive",
)


class RegistrySync:
    def __init__(
        self,
        network: Network,
        version: Callable[[], int],
        load: Callable[[], Registry],
        poll_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.network = network
        self._version = version
        self._load = load
        self.poll_seconds = poll_seconds
        self._clock = clock
        self._polled: float | None = None
        self.registry = Registry(-1)  # nothing applied yet: the first poll loads
        self.inactive: frozenset[int] = frozenset()  # camera indices whose frames are refused

    def refused(self, camera: int) -> str | None:
        """The dead-letter reason for a frame of ``camera``, or None (event loop)."""
        if camera not in self.inactive:
            return None
        entry = self.registry.cameras.get(self.network.cameras[camera])
        removed = entry is not None and entry.state == REMOVED
        return "camera_removed" if removed else "camera_inactive"

    def judge(self, record: ValidRecord) -> ValidRecord | DeadLetter:
        """The record, or its dead letter if the registry refuses its camera (event loop)."""
        reason = self.refused(record.camera)
        if reason is None:
            return record
        camera = self.network.cameras[record.camera]
        entry = self.registry.cameras[camera]
        when = f" at {entry.removed_ms} ms" if entry.removed_ms is not None else ""
        return DeadLetter(
            reason, f"camera {camera!r} is {entry.state}{when} in the camera registry"
        )

    def without_inactive(self, batch: ClosedBatch) -> ClosedBatch:
        """``batch`` without the frames of refused cameras (taken before the removal was
        seen), counted in ``camtopo_registry_uncounted_frames_total``."""
        if not self.inactive or not len(batch):
            return batch
        keep = ~np.isin(batch.cameras, list(self.inactive))
        if keep.all():
            return batch
        UNCOUNTED.inc(int((~keep).sum()))
        idx = np.flatnonzero(keep)
        return replace(
            batch,
            cameras=batch.cameras[idx],
            ticks=batch.ticks[idx],
            windows=[batch.windows[k] for k in idx.tolist()],
            context=[c for c in batch.context if c[0] not in self.inactive],
        )

    def poll(self, estimator: TopologyEstimator | None, force: bool = False) -> RegistryDiff:
        """Apply the registry's changes since the last poll (executor thread, or at start)."""
        now = self._clock()
        if not force and self._polled is not None and now - self._polled < self.poll_seconds:
            return RegistryDiff()
        self._polled = now
        try:
            if self._version() == self.registry.version:
                return RegistryDiff()
            new = self._load()
        except (RedisError, OSError) as exc:
            # Redis down: counting goes on (the checkpoint waits for Redis on its own); the
            # changes are picked up at the first poll after it is back.
            log.warning("camera registry not read (%s); next try in %.0f s", exc, self.poll_seconds)
            return RegistryDiff()
        changes = diff(self.registry, new)
        inactive = new.inactive(self.network)
        if estimator is not None:
            for camera in changes.removed:
                # On the first poll too: a camera removed while this processor was down still
                # has evidence in the restored counts.
                if camera in self.network.cameras:
                    estimator.camera_removed(camera)
        self.registry, self.inactive = new, inactive
        if changes:
            log.warning(
                "camera registry version %d: added %s, removed %s, described %s",
                new.version, list(changes.added), list(changes.removed), list(changes.described),
            )  # fmt: skip
        return changes


def follow_registry(
    network: Network, settings: Settings, redis_url: str | None = None, prefix: str = "camtopo"
) -> RegistrySync:
    """The pick-up of the registry in ``redis_url`` (default ``CAMTOPO_REDIS_URL``)."""
    from topology_store.backend import store_client
    from topology_store.camera_registry import CameraRegistryStore
    from topology_store.keys import Keys

    store = CameraRegistryStore(
        store_client(settings, redis_url), Keys(prefix, settings.redis.shards)
    )
    return RegistrySync(
        network, store.version, store.load, settings.processor.camera_registry_poll_seconds
    )
