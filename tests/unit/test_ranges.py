"""Event-time ranges: closing by the partition watermark, lateness by the record's own time."""

from __future__ import annotations

import numpy as np
import pytest

from camtopo.core.ranges import ProcessorClock, RangeAssembler, RangeGrid, Verdict
from camtopo.settings import Settings

# Paper values: Tr = 2 s, Td = 5 s, 10 FPS (20 ticks a range), 500 ms tolerance (5 ticks).
GRID = RangeGrid(ticks_per_range=20, tick_ms=100.0, late_ms=5000.0, tolerance=5)


def test_grid_from_settings_uses_paper_defaults() -> None:
    assert Settings().range_grid() == GRID


def test_range_closes_td_after_its_end() -> None:
    # range 3 = ticks 60..79 = [6 s, 8 s); closes at 13 s
    assert GRID.range_of(79) == 3 and GRID.range_of(80) == 4
    assert GRID.close_ms(3) == 13_000
    assert GRID.last_closed(12_999) == 2
    assert GRID.last_closed(13_000) == 3


def test_lateness_is_decided_by_the_records_own_timestamp() -> None:
    assert not GRID.is_late(79, 12_999)
    assert GRID.is_late(79, 13_000)
    assert not GRID.is_late(80, 13_000)


def test_clock_is_the_lowest_partition_and_waits_for_silent_ones() -> None:
    clock = ProcessorClock(idle_ms=5000)
    clock.assign([0, 1], wall_ms=20_000)
    clock.observe(0, 10_000, wall_ms=20_100)
    assert clock.now(20_200) is None  # partition 1 has not spoken and is not idle yet
    clock.observe(1, 4_000, wall_ms=20_300)
    assert clock.now(20_400) == 4_000
    clock.observe(1, 12_000, wall_ms=20_500)
    assert clock.now(20_600) == 10_000


def test_an_idle_partition_stops_holding_the_clock_back() -> None:
    clock = ProcessorClock(idle_ms=5000)
    clock.assign([0, 1], wall_ms=50_000)
    clock.observe(0, 1_000, wall_ms=50_000)
    clock.observe(1, 50_000, wall_ms=50_000)
    for wall in range(51_000, 59_000, 1000):
        clock.observe(1, wall, wall_ms=wall)
    assert clock.now(58_000) == 58_000  # partition 0 idle since 50 s


def test_a_record_stamped_ahead_of_wall_time_cannot_carry_the_clock() -> None:
    # A forged (or badly skewed) timestamp 30 days ahead on every partition: the clock stays
    # at the wall clock, so no range closes before its time.
    clock = ProcessorClock(idle_ms=5000)
    clock.assign([0, 1], wall_ms=10_000)
    for p in (0, 1):
        clock.observe(p, 10_000 + 30 * 86_400_000, wall_ms=10_000)
    assert clock.now(10_100) == 10_000
    clock.observe(0, 10_200, wall_ms=10_300)
    clock.observe(1, 10_250, wall_ms=10_300)
    assert clock.now(10_400) == 10_200


def test_a_partition_behind_is_not_idle_and_starts_its_idleness_again() -> None:
    # A broker outage: no record, and no fetch answer, from 1 s to 21 s. While the partitions
    # are reported behind the clock stays; afterwards they need idle_ms of silence again
    # before wall time moves it, so frames the producers buffered still find their ranges open.
    clock = ProcessorClock(idle_ms=5000)
    clock.assign([0, 1], wall_ms=0)
    clock.observe(0, 1_000, wall_ms=1_000)
    clock.observe(1, 1_000, wall_ms=1_000)
    for wall in range(2_000, 21_000, 1_000):
        assert clock.now(wall, behind=[0, 1]) == 1_000
    assert clock.now(23_000) == 1_000  # the broker answers again: 2 s of silence, not 22
    # Idle 5 s: wall time moves it by the silence since the outage, not over the outage.
    assert clock.now(26_500) == 1_000 + 6_500


def test_all_idle_advances_with_wall_time_and_never_goes_back() -> None:
    clock = ProcessorClock(idle_ms=1000)
    clock.observe(0, 20_000, wall_ms=20_000)
    assert clock.now(20_500) == 20_000
    assert clock.now(23_000) == 23_000
    clock.observe(0, 21_000, wall_ms=23_100)  # an old-stamped record does not turn it back
    assert clock.now(23_200) == 23_000


def _frame(asm: RangeAssembler, cam: int, tick: int, sent: float) -> Verdict:
    v = asm.verdict(tick, sent)
    if v in (Verdict.ACCEPTED, Verdict.HELD):
        asm.add(cam, tick, np.array([1], dtype=np.int64), v)
    return v


def test_closing_hands_out_ranges_and_holds_the_padding_tail() -> None:
    asm = RangeAssembler(GRID)
    for tick in range(0, 100):
        assert _frame(asm, 0, tick, tick * 100 + 50) is Verdict.ACCEPTED
    assert asm.close(6_999) is None  # range 0 ends at 2 s, closes at 7 s
    batch = asm.close(9_000)  # ranges 0..1 close (range 1 ends at 4 s, closes at 9 s)
    assert batch is not None and batch.range_id == 1 and batch.frontier == 40
    assert sorted(batch.ticks.tolist()) == list(range(40))
    # a frame of tick 37 (range 1, closed) is still held for padding: counted next time
    assert _frame(asm, 1, 37, 8_000) is Verdict.HELD
    assert _frame(asm, 1, 30, 8_000) is Verdict.CLOSED
    assert _frame(asm, 1, 41, 11_000) is Verdict.LATE  # range 2 closes at 11 s
    assert _frame(asm, 1, 42, 10_999) is Verdict.ACCEPTED
    nxt = asm.close(12_000)
    assert nxt is not None and 37 in nxt.ticks.tolist()


def test_duplicates_are_found_within_a_record_and_across_records() -> None:
    asm = RangeAssembler(GRID)
    _frame(asm, 3, 10, 1_100)
    assert asm.is_duplicate(3, [10])
    assert not asm.is_duplicate(4, [10])
    assert asm.is_duplicate(5, [11, 11])
    asm.close(30_000)
    # Its range is long counted, but the camera sent it already: a record sent again (a replay,
    # a producer restarted on old footage), not a frame lost to the clock.
    assert asm.is_duplicate(3, [10]) and asm.is_duplicate(3, [9, 12])
    assert not asm.is_duplicate(3, [11]) and not asm.is_duplicate(4, [10])


@pytest.mark.parametrize("at_most", [None, 0])
def test_close_can_be_limited_to_one_range(at_most: int | None) -> None:
    asm = RangeAssembler(GRID)
    for tick in range(0, 60):
        _frame(asm, 0, tick, tick * 100)
    batch = asm.close(60_000, at_most=at_most)
    assert batch is not None
    assert batch.range_id == (0 if at_most == 0 else GRID.last_closed(60_000))


def test_peek_is_a_side_effect_free_lower_bound_of_the_clock() -> None:
    clock = ProcessorClock(idle_ms=5000)
    assert clock.peek() is None  # nothing assigned
    clock.assign([0, 1], wall_ms=10_000)
    clock.observe(0, 9_000, wall_ms=10_100)
    assert clock.peek() is None  # partition 1 has not spoken
    clock.observe(1, 4_000, wall_ms=10_200)
    assert clock.peek() == 4_000
    # partition 1 idles: now() passes it by, peek() still counts it, and stays below now()
    now = clock.now(60_000)
    assert now is not None and now >= 9_000 and clock.peek() == 4_000


def test_due_frames_counts_only_ranges_the_clock_has_closed() -> None:
    asm = RangeAssembler(GRID)
    for tick in range(0, 100):  # ranges 0..4, 20 frames each
        _frame(asm, 0, tick, tick * 100)
    assert asm.due_frames(6_999) == 0  # range 0 closes at 7 s
    assert asm.due_frames(7_000) == 20
    assert asm.due_frames(9_000) == 40
    batch = asm.close(9_000)
    assert batch is not None and len(batch) == 40
    assert asm.due_frames(9_000) == 0 and asm.n_open_frames == 60
