"""Bad input to the offline estimator: a clear error naming file and line, or counted skips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camtopo.cli import main
from camtopo.core.grid import Grid, Network
from camtopo.estimate import estimate_trace
from camtopo.settings import Settings
from camtopo.traces import TraceError

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

    from camtopo import avro

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
    settings = Settings(activity_gate=0, prune=False)
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
