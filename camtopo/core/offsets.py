"""Records read again, told by their offset (pure; the single worker and the assemblers share it).

After every rebalance Faust seeks each assigned partition back to its committed offset, also for
a worker that keeps the partition and the state built from it, so records already taken come
again. They are not bad input: not to be judged (so not dead-lettered as duplicates) or counted
again, but acked with their original record, so Kafka never commits past frames still waiting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

H = TypeVar("H")  # a record's handle, acked by the caller


@dataclass
class PartitionOffsets(Generic[H]):
    """One partition's offsets: the next one not yet taken, and for each record held (its
    frames not yet durable) the handles of its copies read again."""

    next_offset: int | None = None  # after the last record taken (None: none yet)
    copies: dict[int, list[H]] = field(default_factory=dict)  # offset of a held original

    def again(self, offset: int, handle: H) -> list[H] | None:
        """None for a record not taken before (it is now: judge it). Else the handles to ack
        now: none while the original is held (the copy is released with it by
        :meth:`release`; acked now, it would let Kafka commit past its frames), else
        ``[handle]`` (the original was released, kept nothing, or was dead-lettered)."""
        if self.next_offset is None or offset >= self.next_offset:
            self.next_offset = offset + 1
            return None
        held = self.copies.get(offset)
        if held is None:
            return [handle]
        held.append(handle)
        return []

    def hold(self, offset: int) -> None:
        """The record at ``offset`` is kept until its frames are durable, or its dead letter is
        on Kafka (a copy acked before that would let Kafka commit past a record whose dead
        letter may yet fail)."""
        self.copies[offset] = []

    def release(self, offset: int) -> list[H]:
        """The record at ``offset`` is acked: the handles of its copies, to ack with it (none
        if this state was started afresh since it was held)."""
        return self.copies.pop(offset, [])


def next_offsets(parts: dict[int, PartitionOffsets[H]]) -> dict[int, int]:
    """Per partition, the offset after the last record taken."""
    return {p: o.next_offset for p, o in parts.items() if o.next_offset is not None}
