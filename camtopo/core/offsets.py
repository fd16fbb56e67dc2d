"""The records of one partition a worker holds unacked, and those read again (pure; the single
worker and the assemblers share it).

A record whose frames are kept is acked only once they are durable (counted and checkpointed,
or on the ranges topic), and a dead-lettered one once its dead letter is on Kafka: acked
earlier, Kafka could commit past frames or a dead letter that may yet be lost.

After every rebalance Faust seeks each assigned partition back to its committed offset, also for
a worker that keeps the partition and the state built from it, so records already taken come
again. They are not bad input: not to be judged (so not dead-lettered as duplicates) or counted
again, but acked with their original record.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Generic, TypeVar

H = TypeVar("H")  # a record's handle, acked by the caller


@dataclass(order=True)
class _Held(Generic[H]):
    max_tick: int  # its newest kept frame
    offset: int = field(compare=False)
    handle: H = field(compare=False)


@dataclass
class PartitionOffsets(Generic[H]):
    """One partition's offsets: the next one not yet taken, the records whose frames are kept
    (by their newest frame's tick), and for each record held the handles of its copies read
    again."""

    next_offset: int | None = None  # after the last record taken (None: none yet)
    copies: dict[int, list[H]] = field(default_factory=dict)  # offset of a held original
    kept: list[_Held[H]] = field(default_factory=list)  # heap, oldest newest-frame first

    def again(self, offset: int, handle: H) -> list[H] | None:
        """None for a record not taken before (it is now: judge it). Else the handles to ack
        now: none while the original is held (the copy is released with it), else
        ``[handle]`` (the original was released or kept nothing)."""
        if self.next_offset is None or offset >= self.next_offset:
            self.next_offset = offset + 1
            return None
        held = self.copies.get(offset)
        if held is None:
            return [handle]
        held.append(handle)
        return []

    def keep(self, max_tick: int, offset: int, handle: H) -> None:
        """The record keeps frames up to ``max_tick``: acked by :meth:`release_before` once
        every frame before a tick past it is durable."""
        heapq.heappush(self.kept, _Held(max_tick, offset, handle))
        self.copies[offset] = []

    def release_before(self, tick: int) -> list[H]:
        """Frames before ``tick`` are durable: the handles of the records kept for them, with
        their copies."""
        out = []
        while self.kept and self.kept[0].max_tick < tick:
            done = heapq.heappop(self.kept)
            out.append(done.handle)
            out.extend(self.copies.pop(done.offset, []))
        return out

    def lowest_kept_offset(self, from_tick: int) -> int | None:
        """The lowest offset of a record keeping frames at or after ``from_tick``."""
        return min((h.offset for h in self.kept if h.max_tick >= from_tick), default=None)

    def dead_lettered(self, offset: int) -> None:
        """The record went to the dead-letter topic: its copies wait for :meth:`sent`."""
        self.copies[offset] = []

    def sent(self, offset: int) -> list[H]:
        """Its dead letter is on Kafka: the handles of its copies, to ack with it (none if
        this state was started afresh since)."""
        return self.copies.pop(offset, [])


def next_offsets(parts: dict[int, PartitionOffsets[H]]) -> dict[int, int]:
    """Per partition, the offset after the last record taken."""
    return {p: o.next_offset for p, o in parts.items() if o.next_offset is not None}
