"""What the Faust consumer knows of each input partition: records waiting, the broker's
silence, the committed lag. The wall-clock rule of the processor clock closes ranges when a
partition is *idle*; that must mean "the broker answers and has nothing", never "the broker is
down" (producers are buffering then, and their records would all find their ranges closed).

aiokafka stamps a partition each time a fetch answer for it comes back (``last_poll_timestamp``;
an idle partition is answered every ``fetch_max_wait_ms``, 1.5 s under Faust), so a partition
with no answer for ``stale_ms`` is *unconfirmed*: it is reported behind, which holds the clock
(:meth:`camtopo.core.ranges.ProcessorClock.now`). Past ``hold_ms`` of silence the producers have
given up their records too (librdkafka's ``message.timeout.ms``), so it may close ranges again.
:func:`judge` is the logic without Faust; :func:`watch` reads Faust's (internal) state for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from camtopo.settings import Settings
from processors import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartitionView:
    """One assigned partition as the consumer sees it (None: not known yet)."""

    partition: int
    highwater: int | None  # the broker's next offset, from the last fetch answer
    polled_ms: float | None  # wall ms of the last fetch answer
    position: int | None  # next offset the processor takes (what it has read)
    committed: int | None  # the group's committed offset


@dataclass
class ConsumerWatch:
    """Remembers since when each partition is unconfirmed (``stale_ms`` without a fetch answer)."""

    stale_ms: float
    hold_ms: float
    since: dict[int, float] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> ConsumerWatch:
        return cls(
            settings.processor.broker_silence_seconds * 1000.0,
            settings.processor.broker_outage_hold_seconds * 1000.0,
        )

    def behind(
        self,
        app: Any,
        assignment: Iterable[Any],
        topic: str,
        seen: Mapping[int, int],
        wall_ms: float,
    ) -> list[int]:
        """:meth:`judge` on a running Faust app's partitions of ``topic`` (see :func:`watch`).

        Only ``topic``'s: the assignment also holds Faust's own ``__assignor-__leader``
        partition, created with one replica; with its broker lost it never answers again, and
        judged with the input it held partition 0 (same number) behind for the whole hold."""
        mine = [tp for tp in assignment if tp.topic == topic]
        return self.judge(watch(app, mine, seen), wall_ms)[0]

    def judge(self, views: Iterable[PartitionView], wall_ms: float) -> tuple[list[int], int]:
        """(partitions that must not count as idle, committed lag in records)."""
        behind: list[int] = []
        lag = 0
        unconfirmed = 0
        seen: set[int] = set()
        outage = False
        for v in views:
            seen.add(v.partition)
            if v.highwater is None:
                # No fetch answered yet (just assigned, a restart): it may hold a backlog.
                behind.append(v.partition)
                continue
            lag += max(0, v.highwater - (v.committed if v.committed is not None else 0))
            if v.polled_ms is not None and wall_ms - v.polled_ms > self.stale_ms:
                first = self.since.setdefault(v.partition, wall_ms)
                unconfirmed += 1
                if wall_ms - first <= self.hold_ms:
                    behind.append(v.partition)
                    outage = True
                    continue
            else:
                self.since.pop(v.partition, None)
            if v.highwater > (v.position or 0):
                behind.append(v.partition)
        for p in set(self.since) - seen:
            del self.since[p]
        if outage:
            # A lost broker stalls every partition it replicates, not only those it leads:
            # with acks=all their high watermark stands still until it is fenced (Kafka's
            # broker.session.timeout.ms, 9 s by default), so they answer fetches with nothing
            # and would look idle while producers wait. Hold them all for the outage.
            behind = sorted(seen)
        metrics.UNCONFIRMED_PARTITIONS.set(unconfirmed)
        metrics.CONSUMER_LAG.set(lag)
        return behind, lag


def watch(app: Any, assignment: Iterable[Any], seen: Mapping[int, int]) -> list[PartitionView]:
    """Read the views of ``assignment`` from a running Faust app. ``seen``: partition -> next
    offset the processor has taken (records Faust fetched but still holds in its stream buffer
    are not taken: counting their partition idle would close ranges before they arrive)."""
    consumer = app.consumer
    try:
        aio = consumer._thread._ensure_consumer()  # Faust has no public getter for these
    except Exception:  # not started yet: nothing is known
        return [PartitionView(tp.partition, None, None, None, None) for tp in assignment]
    views = []
    for tp in assignment:
        try:
            high = consumer.highwater(tp)
            polled = aio.last_poll_timestamp(tp)
        except Exception:  # revoked meanwhile: unknown, so not idle
            high = polled = None
        committed = consumer._committed_offset.get(tp)
        position = seen.get(tp.partition, committed)
        views.append(PartitionView(tp.partition, high, polled, position, committed))
    return views
