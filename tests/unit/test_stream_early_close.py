"""The processor with early close: ranges close once every live camera has sent past them,
with the same counts as the offline estimator (and as waiting Td)."""

from __future__ import annotations

import zlib

from camtopo.core.grid import Network
from camtopo.core.topology import TopologyEstimator
from camtopo.formats.avro import OCCUPANCY, encode
from camtopo.settings import Settings
from camtopo.simulation import Simulation
from processors.pipeline import StreamProcessor
from processors.trace import simulated_records

PARTITIONS = 4


def _rows(est: TopologyEstimator) -> list[tuple[bytes, ...]]:
    out = []
    for i in range(est.network.n_windows):
        o, state, p, activity = est.counts.export_row(i)  # type: ignore[attr-defined]
        out.append((o.tobytes(), state.tobytes(), p.tobytes(), activity))
    return out


def _stream(sim: Simulation, records: list, settings: Settings) -> tuple[StreamProcessor, list]:
    """Replay at the pace of sending; returns the processor and (range, wall ms) of closes."""
    proc: StreamProcessor[int] = StreamProcessor(sim.network, settings)
    proc.clock.assign(range(PARTITIONS), wall_ms=records[0].send_ms)
    offsets = [0] * PARTITIONS
    closes = []
    for n, rec in enumerate(records):
        part = zlib.crc32(rec.camera.encode()) % PARTITIONS
        wall = rec.send_ms
        assert proc.on_record(part, offsets[part], rec.send_ms, rec.value, n, wall_ms=wall) is None
        offsets[part] += 1
        batch = proc.due_batch(wall_ms=wall)
        if batch is not None:
            closes += [(k, wall) for k in batch.ranges]
            proc.apply(batch, proc.resume_offsets(batch.frontier))
    batch = proc.due_batch(wall_ms=records[-1].send_ms + 60_000)  # the stream ends
    assert batch is not None
    proc.apply(batch, {})
    return proc, closes


def test_early_close_counts_what_the_offline_estimator_and_td_count_sooner() -> None:
    sim = Simulation.from_name("campus", 12, seed=3)
    records = list(simulated_records(sim, 600, frames_per_record=5, send_delay_ms=300))
    # A 2 s silence: cameras that stop sending in the trace hold no range to Td (10 s would).
    early = Settings().replace(processor={"early_close": True, "camera_silence_seconds": 2.0})
    td = Settings().replace(processor={"early_close": False})
    proc, closes = _stream(sim, records, early)
    proc_td, closes_td = _stream(sim, records, td)
    offline = TopologyEstimator(sim.network, early.estimator_parameters())
    for rec in records:
        cam = sim.network.camera_index(rec.camera)
        for t, occ in rec.frames:
            offline.add_frame(cam, t, list(occ))
    assert proc.assembler.closed_through == proc_td.assembler.closed_through
    offline.advance(proc.grid.first_tick(proc.assembler.closed_through + 1))
    assert offline.observations > 1000
    assert _rows(proc.estimator) == _rows(offline) == _rows(proc_td.estimator)
    # Ranges close the hold after their end (+ the wait for the next record, sent every
    # 0.5 s, 300 ms after its last frame), all before Td; with Td alone none before Td.
    grid, hold = proc.grid, early.processor.early_close_hold_seconds * 1000
    waits = sorted(wall - grid.end_ms(k) for k, wall in closes)
    assert waits[len(waits) // 2] <= hold + 500 and waits[-1] < grid.late_ms
    assert min(wall - grid.end_ms(k) for k, wall in closes_td) >= grid.late_ms
    assert proc.assembler.closed_early > 0 and proc_td.assembler.closed_early == 0


def _record(net: Network, camera: int, frames: list[tuple[int, str]]) -> bytes:
    return encode(
        OCCUPANCY,
        {
            "camera": net.cameras[camera],
            "grid": net.grids[camera].to_json(),
            "frames": [
                {"t_ms": t, "seq": t // 100, "status": status, "occupied": [], "detail": None}
                for t, status in frames
            ],
            "producer": "test",
        },
    )


def test_a_dark_camera_sending_missing_frames_does_not_hold_ranges() -> None:
    # Camera b goes dark at 3.5 s. If its producer still runs, MISSING frames say "no data for
    # this tick": its progress moves and range 1 (2..4 s) closes at 5 s, the hold after its
    # end. If b sends nothing, it holds range 1 until it is silent (or Td).
    net = Network.uniform(["a", "b"])
    closed = {}
    for dark in ("MISSING", "nothing"):
        proc: StreamProcessor[int] = StreamProcessor(
            net, Settings().replace(processor={"early_close": True})
        )
        proc.clock.assign([0], wall_ms=0)
        n = 0
        for start in range(0, 5000, 500):  # 5 frames a record, sent after the last one
            send = start + 500
            for cam in (0, 1):
                status = "OK" if cam == 0 or start < 3500 else dark
                if status == "nothing":
                    continue
                frames = [(t, status) for t in range(start, start + 500, 100)]
                assert proc.on_record(0, n, send, _record(net, cam, frames), n, send) is None
                n += 1
        assert proc.due_batch(wall_ms=5_000) is not None
        closed[dark] = proc.assembler.closed_through
    assert closed == {"MISSING": 1, "nothing": 0}
