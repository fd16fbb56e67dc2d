"""Early close: a range closes once every live camera has sent past it (Td only the cap)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from camtopo.core.ranges import ProcessorClock, RangeAssembler, RangeGrid, Verdict

# Tr = 2 s, Td = 5 s, 10 FPS (20 ticks a range), 5 ticks of temporal tolerance.
GRID = RangeGrid(ticks_per_range=20, tick_ms=100.0, late_ms=5000.0, tolerance=5)
SILENCE_MS = 2000.0
HOLD_MS = 1000.0


def early() -> RangeAssembler:
    return RangeAssembler(GRID, silence_ms=SILENCE_MS, hold_ms=HOLD_MS)


def send(asm: RangeAssembler, cam: int, ticks: range, sent: float) -> list[Verdict]:
    """One record of ``cam``'s frames for ``ticks``, sent at ``sent`` ms."""
    verdicts = []
    for tick in ticks:
        v = asm.verdict(tick, sent)
        if v in (Verdict.ACCEPTED, Verdict.HELD):
            asm.add(cam, tick, np.array([cam], dtype=np.int64), v)
        verdicts.append(v)
    asm.progress(cam, ticks[-1], sent)
    return verdicts


def test_a_range_closes_once_every_live_camera_sent_past_it() -> None:
    asm, td_only = early(), RangeAssembler(GRID)
    for a in (asm, td_only):
        send(a, 0, range(0, 45), 4_550)
        send(a, 1, range(0, 25), 2_550)
        send(a, 1, range(25, 41), 4_150)
    # Clock 5 s: both cameras have sent past range 1 (ticks 20..39), which ended 1 s ago (the
    # hold); range 2 is not delivered yet. Td alone waits until 9 s.
    assert asm.close(4_999) is not None and asm.closed_through == 0
    batch = asm.close(5_000)
    assert batch is not None and batch.range_id == 1 and batch.ranges == [1]
    assert sorted(set(batch.ticks.tolist())) == list(range(20, 40))
    assert td_only.close(5_000) is None
    assert asm.closed_early == 2


def test_a_frame_at_a_ranges_last_tick_does_not_close_it() -> None:
    # A camera faster than the network's ticks sends several frames of one tick, maybe in two
    # records: only a frame in the next range shows that range k is complete.
    asm = early()
    send(asm, 0, range(0, 40), 3_950)  # through tick 39, range 1's last
    batch = asm.close(5_000)
    assert batch is not None and batch.range_id == 0
    assert send(asm, 0, range(40, 41), 4_050) == [Verdict.ACCEPTED]
    batch = asm.close(5_100)
    assert batch is not None and batch.range_id == 1


def test_a_camera_behind_holds_the_range_and_the_hold_bounds_it() -> None:
    asm = early()
    send(asm, 0, range(0, 60), 6_050)
    send(asm, 1, range(0, 30), 3_050)  # camera 1 is behind: its progress is in range 1
    batch = asm.close(3_100)
    assert batch is not None and batch.range_id == 0  # 3.1 s: range 0 ended 1.1 s ago
    assert asm.close(3_500) is None  # range 1 waits for camera 1 (still live)
    send(asm, 1, range(30, 45), 4_550)  # a frame in range 2: range 1 delivered
    assert asm.close(4_999) is None  # range 1 ended at 4 s: the hold keeps it until 5 s
    batch = asm.close(5_000)
    assert batch is not None and batch.range_id == 1


def test_a_silent_camera_stops_holding_ranges_after_the_silence() -> None:
    asm = early()
    send(asm, 1, range(0, 25), 2_550)
    send(asm, 1, range(25, 35), 3_550)  # camera 1 then goes silent in range 1
    send(asm, 0, range(0, 81), 8_150)
    first = asm.close(3_000)
    assert first is not None and first.range_id == 0
    assert asm.close(5_549) is None  # camera 1's last record 2.0 s ago: still live, holding
    batch = asm.close(5_551)
    assert batch is not None and batch.range_id == 1  # silent: range 1 closes without it
    later = asm.close(8_000)
    assert later is not None and later.range_id == 2  # the hold: range 2 ended at 6 s


def test_a_resumed_cameras_old_frames_for_closed_ranges_are_lost_and_counted() -> None:
    asm = early()
    send(asm, 1, range(0, 25), 2_550)
    send(asm, 0, range(0, 81), 8_150)
    assert asm.close(7_100) is not None  # ranges 0..3 closed without silent camera 1
    # Camera 1 comes back with a backlog of ticks 25..44, sent at 7.2 s: before range 1's
    # Td (9 s), but range 1 was counted: lost as "closed" (the late metric), never silently.
    verdicts = send(asm, 1, range(25, 45), 7_200)
    assert set(verdicts) == {Verdict.CLOSED}
    assert send(asm, 1, range(80, 85), 8_550) == [Verdict.ACCEPTED] * 5  # its new frames count


def test_a_camera_not_seen_yet_holds_nothing_and_is_not_cut_off_within_the_hold() -> None:
    asm = early()
    send(asm, 0, range(0, 45), 4_550)
    batch = asm.close(3_000)
    assert batch is not None and batch.range_id == 0  # camera 2, not seen, held nothing
    # Camera 2's first record is sent within the hold after range 1's end (4 s): counted.
    assert asm.close(4_999) is None
    assert send(asm, 2, range(30, 41), 4_990) == [Verdict.ACCEPTED] * 11
    batch = asm.close(5_000)
    assert batch is not None and batch.range_id == 1 and 2 in batch.cameras.tolist()


def test_early_close_is_off_without_a_silence_and_hold_is_checked() -> None:
    asm = RangeAssembler(GRID)
    for start in range(0, 100, 5):
        send(asm, 0, range(start, start + 5), start * 100 + 550)
    assert asm.close(6_999) is None
    assert asm.close(8_999) is not None and asm.closed_through == 0  # Td: range 0 at 7 s
    with pytest.raises(ValueError):
        RangeAssembler(GRID, silence_ms=0)
    with pytest.raises(ValueError):
        RangeAssembler(GRID, silence_ms=1000, hold_ms=GRID.late_ms + 1)


def _records(seed: int) -> dict[int, list[tuple[int, range, int]]]:
    """Per partition, records (camera, ticks, sent ms) in send order: cameras 0 and 1 on
    partition 0, 2 and 3 on partition 1; 5 frames a record, sent 50 ms after the last one's
    capture (+ jitter). Camera 1 is silent from 6 s to 12 s, camera 3 lags 1.5 s behind."""
    rng = random.Random(seed)
    parts: dict[int, list[tuple[int, range, int]]] = {0: [], 1: []}
    for start in range(0, 300, 5):
        for cam in (0, 1, 2, 3):
            if cam == 1 and 60 <= start < 120:
                continue
            sent = (start + 4) * 100 + 50 + (1500 if cam == 3 else 0) + rng.randrange(40)
            parts[cam // 2].append((cam, range(start, start + 5), sent))
    for recs in parts.values():
        recs.sort(key=lambda r: r[2])  # a partition's timestamps do not go back
    return parts


def _run(parts: dict[int, list[tuple[int, range, int]]], order: list[int], silence: bool):
    """Drive the clock and the assembler through the records taken from the partitions in
    ``order`` (one partition id per record), closing after each one."""
    asm = early() if silence else RangeAssembler(GRID)
    wall = 10**9  # replay: the wall clock is far past every timestamp, no partition idles
    clock = ProcessorClock(idle_ms=60_000)
    clock.assign([0, 1], wall_ms=wall)
    counted: dict[int, set[tuple[int, int]]] = {}
    lost: list[tuple[int, int]] = []
    at = {0: 0, 1: 0}

    def take(batch) -> None:
        for cam, tick in zip(batch.cameras.tolist(), batch.ticks.tolist(), strict=True):
            counted.setdefault(GRID.range_of(tick), set()).add((cam, tick))

    for p in order:
        cam, ticks, sent = parts[p][at[p]]
        at[p] += 1
        clock.observe(p, sent, wall)
        verdicts = send(asm, cam, ticks, sent)
        lost += [(cam, t) for t, v in zip(ticks, verdicts, strict=True) if v is not Verdict.ACCEPTED
                 and v is not Verdict.HELD]  # fmt: skip
        if (batch := asm.close(clock.now(wall))) is not None:
            take(batch)
    if (batch := asm.close(10**7)) is not None:  # the stream ended: Td closes the rest
        take(batch)
    return counted, lost, asm


def _interleaving(parts: dict[int, list], seed: int) -> list[int]:
    rng = random.Random(seed)
    left = {p: len(r) for p, r in parts.items()}
    order = []
    while any(left.values()):
        # Runs of one partition: one partition gets several seconds ahead of the other.
        p = rng.choice([q for q, n in left.items() if n])
        for _ in range(rng.randrange(1, 40)):
            if left[p]:
                order.append(p)
                left[p] -= 1
    return order


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_interleavings_close_the_same_ranges_with_the_same_frames_as_td(seed: int) -> None:
    parts = _records(seed)
    # As sent: the partitions merged by timestamp.
    merged = [p for _, p in sorted((r[2], p) for p, recs in parts.items() for r in recs)]
    reference, lost_td, _ = _run(parts, merged, silence=False)
    assert not lost_td and sum(map(len, reference.values())) == 4 * 300 - 60
    early_closes = []
    for order in (merged, _interleaving(parts, seed), _interleaving(parts, seed + 100)):
        counted, lost, asm = _run(parts, order, silence=True)
        assert not lost
        assert counted == reference  # every range, every frame: as with Td alone
        early_closes.append(asm.closed_early)
    assert min(early_closes) > 0


def test_the_partitioned_assembler_closes_each_partition_early() -> None:
    from camtopo.core.partitioned import PartitionRanges

    windows = [np.array([0], dtype=np.int64)] * 5
    blocks_by = {}
    for silence in (None, SILENCE_MS):
        ranges: PartitionRanges[int] = PartitionRanges(
            GRID, idle_ms=60_000, silence_ms=silence, hold_ms=HOLD_MS
        )
        ranges.assign([0], wall_ms=0)
        for n, start in enumerate(range(0, 60, 5)):
            sent = start * 100 + 450
            ticks = list(range(start, start + 5))
            ranges.take(0, 7, ticks, windows, sent, sent, n, n, through=ticks[-1])
        blocks_by[silence] = ranges.due(wall_ms=6_000)
    # Clock 5.95 s: camera 7 sent through range 2; the hold lets ranges 0 and 1 close.
    assert [b.range_id for b in blocks_by[SILENCE_MS]] == [1]
    assert blocks_by[None] == []  # Td: range 0 waits until 7 s
