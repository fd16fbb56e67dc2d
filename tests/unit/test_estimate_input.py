"""Bad input to the offline estimator: a clear error naming file and line, or counted skips."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from camtopo.cli import main
from camtopo.core.grid import Grid, Network
from camtopo.estimate import estimate_trace
from camtopo.formats.traces import TraceError
from camtopo.settings import Settings

NETWORK = Network.uniform(["a", "b"], Grid(cols=4, rows=3))


def write_trace(tmp_path: Path, lines: list[str]) -> Path:
    NETWORK.save(tmp_path / "network.json")
    good = [json.dumps({"camera": c, "t_ms": t * 100, "occupied": [t % 12]})
            for t in range(200) for c in ("a", "b")]  # fmt: skip
    path = tmp_path / "occupancy.jsonl"
    path.write_text("\n".join(good[:100] + lines + good[100:]) + "\n")
    return path


BAD = {
    "malformed": "{not json",
    "unknown_camera": json.dumps({"camera": "zz", "t_ms": 5000, "occupied": []}),
    "window_outside_grid": json.dumps({"camera": "a", "t_ms": 5100, "occupied": [12]}),
    "duplicate_frame": json.dumps({"camera": "a", "t_ms": 0, "occupied": []}),
    "time_jump": json.dumps({"camera": "a", "t_ms": 10**9, "occupied": []}),
}


@pytest.mark.parametrize("reason", sorted(BAD))
def test_bad_line_stops_with_file_and_line(tmp_path, reason):
    path = write_trace(tmp_path, [BAD[reason]])
    with pytest.raises(TraceError) as err:
        estimate_trace(path, NETWORK, Settings(), progress=False)
    assert err.value.reason == reason
    assert f"{path}:101" in str(err.value)


def test_far_out_of_order_line_is_refused(tmp_path):
    late = json.dumps({"camera": "b", "t_ms": 100, "occupied": [1]})  # 5 s behind
    path = write_trace(tmp_path, [json.dumps({"camera": "a", "t_ms": 99_900, "occupied": []})])
    path.write_text(path.read_text() + late + "\n")
    with pytest.raises(TraceError, match="behind the trace") as err:
        estimate_trace(path, NETWORK, Settings(), progress=False)
    assert err.value.reason == "out_of_order"


def test_skip_bad_counts_every_reason_and_keeps_good_frames(tmp_path):
    path = write_trace(tmp_path, list(BAD.values()))
    (tmp_path / "clean").mkdir()
    clean_path = write_trace(tmp_path / "clean", [])
    clean = estimate_trace(clean_path, NETWORK, Settings(), progress=False)
    result = estimate_trace(path, NETWORK, Settings(), skip_bad=True, progress=False)
    assert dict(result.report.skipped) == dict.fromkeys(BAD, 1)
    assert result.report.frames == clean.report.frames == 400


def test_cli_reports_error_without_traceback(tmp_path, capsys):
    path = write_trace(tmp_path, [BAD["malformed"]])
    assert main(["estimate", str(path), "-o", str(tmp_path / "t.json"), "--quiet"]) == 2
    assert f"{path}:101: not valid JSON" in capsys.readouterr().err


def test_avro_container_file_gives_the_same_counts_as_json_lines(tmp_path):
    import fastavro
    import numpy as np

    from camtopo.formats import avro

    path = write_trace(tmp_path, [])
    frames: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        obj = json.loads(line)
        frames.setdefault(obj["camera"], []).append(
            {"t_ms": obj["t_ms"], "seq": len(frames.get(obj["camera"], [])), "status": "OK",
             "occupied": obj["occupied"], "detail": None}
        )  # fmt: skip
    # a dark camera-frame: MISSING carries no data (no opportunities), never an empty frame
    frames["b"].append({"t_ms": 20_000, "seq": 999, "status": "MISSING", "occupied": [],
                        "detail": None})  # fmt: skip
    grid = {"cols": 4, "rows": 3, "width": 320, "height": 240}
    records = sorted(  # as consumed from the topic: roughly in time order across cameras
        (
            {"camera": cam, "grid": grid, "frames": fs[k : k + 5], "producer": "test"}
            for cam, fs in frames.items()
            for k in range(0, len(fs), 5)
        ),
        key=lambda r: r["frames"][0]["t_ms"],
    )
    avro_path = tmp_path / "occupancy.avro"
    with avro_path.open("wb") as fh:
        fastavro.writer(fh, avro.schema(avro.OCCUPANCY), records)
    settings = Settings(algorithm={"activity_gate": 0, "prune": False})
    from_json = estimate_trace(path, NETWORK, settings, progress=False)
    from_avro = estimate_trace(avro_path, NETWORK, settings, progress=False)
    assert from_avro.report.frames == from_json.report.frames == 400
    n = NETWORK.n_windows
    i, j = np.divmod(np.arange(n * n), n)
    for a, b in zip(
        from_json.estimator.counts.pair_counts(i, j),
        from_avro.estimator.counts.pair_counts(i, j),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_empty_trace_stops_rather_than_writing_an_empty_topology(tmp_path, capsys):
    NETWORK.save(tmp_path / "network.json")
    path = tmp_path / "occupancy.jsonl"
    path.write_text("\n")
    with pytest.raises(
        TraceError, match=f"^{re.escape(str(path))}: no frames to estimate from: it is empty"
    ):
        estimate_trace(path, NETWORK, Settings(), progress=False)
    out = tmp_path / "t.json"
    assert main(["estimate", str(path), "-o", str(out), "--quiet"]) == 2
    assert "no frames to estimate from" in capsys.readouterr().err
    assert not out.exists()


def test_trace_of_only_bad_lines_stops_even_when_skipping_them(tmp_path):
    NETWORK.save(tmp_path / "network.json")
    path = tmp_path / "occupancy.jsonl"
    path.write_text("{not json\n" + json.dumps({"camera": "zz", "t_ms": 0, "occupied": []}) + "\n")
    with pytest.raises(TraceError, match="all 2 were skipped as bad input"):
        estimate_trace(path, NETWORK, Settings(), skip_bad=True, progress=False)


def test_ticks_follow_the_networks_frame_rate(tmp_path):
    network = Network.uniform(["a", "b"], Grid(cols=4, rows=3), fps=25)
    path = tmp_path / "occupancy.jsonl"
    path.write_text("".join(json.dumps({"camera": c, "t_ms": t * 40, "occupied": [t % 12]}) + "\n"
                            for t in range(500) for c in ("a", "b")))  # fmt: skip
    # at CAMTOPO_FPS's default 10 fps, frames 40 ms apart fell two or three to a tick
    result = estimate_trace(path, network, Settings(), progress=False)
    assert result.report.frames == 1000
    assert result.topology.observed_ticks == 500
    with pytest.raises(ValueError, match=r"network\.json's 'fps' is 25 but CAMTOPO_FPS is 10"):
        estimate_trace(path, network, Settings(grid={"fps": 10}), progress=False)


def test_a_frame_within_the_allowance_is_taken_at_the_very_start(tmp_path):
    # the probe's trace: camera b's clock is behind a's, its first frame before 0
    path = tmp_path / "occupancy.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in [
        {"camera": "a", "t_ms": 350, "occupied": [1]},
        {"camera": "b", "t_ms": -299, "occupied": [1]},  # 0.65 s behind: within the 2 s
        {"camera": "a", "t_ms": 6_750, "occupied": []},
        {"camera": "b", "t_ms": 5_300, "occupied": []},  # 1.45 s behind, after a block
    ]))  # fmt: skip
    assert estimate_trace(path, NETWORK, Settings(), progress=False).report.frames == 4


def skewed_trace(tmp_path: Path) -> tuple[Path, Path, Network]:
    """A simulated trace as a real network starts: every camera's clock off by up to
    +-0.4 s, cameras switched on at different moments in the first 3 s, the first frames
    of some before 0 on their own clock, lines in order of arrival (up to 0.25 s late)."""
    import numpy as np

    from camtopo.simulation.engine import Simulation
    from camtopo.simulation.noise import NoiseConfig

    sim = Simulation.from_name(
        "corridor", 6, seed=5, noise=NoiseConfig(max_skew_ms=400), start_ms=0, warmup_s=60
    )
    rng = np.random.default_rng(7)
    first = np.where(rng.random(6) < 0.5, 0, rng.integers(1, 30, 6))  # tick each camera starts
    keys, lines = [], []
    for tick in sim.ticks(300):
        for c in np.flatnonzero(tick.available & (tick.index >= first)).tolist():
            occupied = tick.window[tick.cam == c].tolist()
            line = {"camera": sim.network.cameras[c], "t_ms": int(tick.t_ms[c]),
                    "occupied": occupied}  # fmt: skip
            keys.append(tick.index * 100 + rng.uniform(0, 250))
            lines.append(line)
    arrival = [lines[k] for k in np.argsort(keys, kind="stable")]
    by_time = sorted(lines, key=lambda line: line["t_ms"])
    # what made the old reader stop: the first line is not the earliest, and some t_ms < 0
    assert arrival[0]["t_ms"] > by_time[0]["t_ms"] and by_time[0]["t_ms"] < 0
    paths = tmp_path / "arrival.jsonl", tmp_path / "by_time.jsonl"
    for path, order in zip(paths, (arrival, by_time), strict=True):
        path.write_text("".join(json.dumps(line) + "\n" for line in order))
    return *paths, sim.network


def test_skewed_clocks_and_staggered_starts_are_taken_from_the_first_frame(tmp_path):
    import numpy as np

    arrival, by_time, network = skewed_trace(tmp_path)
    settings = Settings(
        algorithm={"activity_gate": 0, "prune": False}
    )  # the fast engine, counting exactly
    got = estimate_trace(arrival, network, settings, progress=False)  # no --skip-bad
    want = estimate_trace(by_time, network, settings, engine="dense", progress=False)
    assert got.report.frames == want.report.frames == len(arrival.read_text().splitlines())
    n = network.n_windows
    i, j = np.divmod(np.arange(n * n), n)
    for a, b in zip(
        got.estimator.counts.pair_counts(i, j), want.estimator.counts.pair_counts(i, j), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert want.estimator.counts.pair_counts(i, j)[0].sum() > 0  # there was something to count


def test_avro_record_of_another_grid_is_refused(tmp_path):
    import fastavro

    from camtopo.formats import avro

    grid = {"cols": 12, "rows": 9, "width": 320, "height": 240}  # the network's is 4 x 3
    frame = {"t_ms": 0, "seq": 0, "status": "OK", "occupied": [5], "detail": None}
    path = tmp_path / "occupancy.avro"
    with path.open("wb") as fh:
        record = {"camera": "a", "grid": grid, "frames": [frame], "producer": "test"}
        fastavro.writer(fh, avro.schema(avro.OCCUPANCY), [record])
    with pytest.raises(TraceError, match=r"'a' sent a 12x9 grid; network\.json has 4x3") as err:
        estimate_trace(path, NETWORK, Settings(), progress=False)
    assert err.value.reason == "grid_mismatch" and f"{path}#0.0" in str(err.value)
