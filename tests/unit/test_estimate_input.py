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
