"""The input formats (docs/formats.md): the JSON Schemas describe what camtopo writes, and
network.json is checked field by field, every error naming the file and the field."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource

from camtopo.cli import main
from camtopo.core.grid import Network, NetworkError
from camtopo.estimate import estimate_trace, topology_json
from camtopo.evaluation import baseline
from camtopo.formats.traces import TraceError, read_jsonl
from camtopo.settings import Settings
from camtopo.simulation.appearance import AppearanceConfig
from camtopo.simulation.engine import Simulation
from camtopo.simulation.writer import write_scenario

SCHEMAS = ("occupancy_line", "network", "topology", "truth")


def schema(name: str) -> dict[str, Any]:
    """A schema as the installed package holds it (read the way code would read it)."""
    text = (files("camtopo") / "schemas" / f"{name}.v1.schema.json").read_text()
    return json.loads(text)


def validator(name: str) -> jsonschema.Draft202012Validator:
    # topology.json's "network" refers to network.json's schema by its $id
    registry = Registry().with_resources(
        (schema(n)["$id"], Resource.from_contents(schema(n))) for n in SCHEMAS
    )
    return jsonschema.Draft202012Validator(schema(name), registry=registry)


@pytest.mark.parametrize("name", SCHEMAS)
def test_each_schema_is_a_valid_versioned_json_schema(name):
    jsonschema.Draft202012Validator.check_schema(schema(name))
    assert schema(name)["$id"].endswith(":1")


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sim")
    sim = Simulation.from_name("corridor", 6, seed=3, warmup_s=60, appearance=AppearanceConfig())
    write_scenario(folder, sim, duration_s=60.0, progress=False)
    return folder


def test_the_simulators_files_validate(simulated):
    validator("network").validate(json.loads((simulated / "network.json").read_text()))
    validator("truth").validate(json.loads((simulated / "truth.json").read_text()))
    lines = validator("occupancy_line")
    for raw in (simulated / "occupancy.jsonl").read_text().splitlines():
        lines.validate(json.loads(raw))


def test_estimate_and_baseline_topologies_validate(simulated):
    network = Network.load(simulated / "network.json")
    # low thresholds, so the file holds window edges, camera edges and snapshots to check
    settings = Settings(algorithm={"o_ref": 2, "c_star": 0.3, "activity_gate": 0})
    result = estimate_trace(
        simulated / "occupancy.jsonl", network, settings, snapshot_every_s=20, progress=False
    )
    ours = json.loads(json.dumps(topology_json(network, settings, result)))
    assert ours["window_edges"] and ours["camera_edges"] and ours["history"]
    validator("topology").validate(ours)
    theirs = baseline.baseline_trace(simulated / "occupancy.jsonl", network, progress=False)
    validator("topology").validate(json.loads(json.dumps(baseline.topology_json(network, theirs))))


def test_cli_topology_validates(simulated, tmp_path):
    out = tmp_path / "topology.json"
    camera = Network.load(simulated / "network.json").cameras[0]
    trace = str(simulated / "occupancy.jsonl")
    assert main(["estimate", trace, "-o", str(out), "--quiet", "--moved", f"{camera}@10"]) == 0
    written = json.loads(out.read_text())
    validator("topology").validate(written)
    assert {"camera": camera, "t_s": 10.0, "cause": "operator"} in written["camera_moves"]


# --- network.json: strict, and the schema refuses what the loader refuses ---------------------
GOOD = {"grid": {"cols": 4, "rows": 3, "width": 320, "height": 240}, "fps": 25,
        "cameras": ["a", "b"]}  # fmt: skip


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != key}


BAD_NETWORKS: dict[str, tuple[Any, str]] = {
    "no fps": (without("fps"), "missing field 'fps'"),
    "no grid": (without("grid"), "missing field 'grid'"),
    "no cameras": (without("cameras"), "missing field 'cameras'"),
    "fps a word": ({**GOOD, "fps": "ten"}, "'fps' must be a whole number >= 1, got \"ten\""),
    "fps zero": ({**GOOD, "fps": 0}, "'fps' must be a whole number >= 1, got 0"),
    "fps fraction": ({**GOOD, "fps": 12.5}, "'fps' must be a whole number >= 1, got 12.5"),
    "grid without width": (
        {**GOOD, "grid": {"cols": 4, "rows": 3, "height": 240}},
        "missing field 'grid.width'",
    ),
    "grid cols a string": (
        {**GOOD, "grid": {**GOOD["grid"], "cols": "4"}},
        "'grid.cols' must be a whole number >= 1",
    ),
    "camera twice": ({**GOOD, "cameras": ["a", "a"]}, "'cameras' lists 'a' more than once"),
    "camera not a string": ({**GOOD, "cameras": ["a", 7]}, "'cameras' must hold non-empty strings"),
    "no camera": ({**GOOD, "cameras": []}, "'cameras' must be a non-empty list"),
    "bad camera grid": (
        {**GOOD, "camera_grids": {"b": {"cols": 4}}},
        "missing field 'camera_grids.b.rows'",
    ),
    "camera fps a word": (
        {**GOOD, "camera_fps": {"b": "ten"}},
        "'camera_fps.b' must be a whole number >= 1, got \"ten\"",
    ),
    "camera fps zero": ({**GOOD, "camera_fps": {"b": 0}}, "'camera_fps.b' must be a whole number"),
    "not an object": ([GOOD], "must be a JSON object"),
}
# What a JSON Schema cannot say (a key naming a camera of another list, equal numbers): the
# loader refuses these, the schema's descriptions say so.
LOADER_ONLY: dict[str, tuple[Any, str]] = {
    "camera grid of an unknown camera": (
        {**GOOD, "camera_grids": {"zz": GOOD["grid"]}},
        "'camera_grids' names cameras not in 'cameras': ['zz']",
    ),
    "camera fps of an unknown camera": (
        {**GOOD, "camera_fps": {"zz": 10}},
        "'camera_fps' names cameras not in 'cameras': ['zz']",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_NETWORKS.keys() | LOADER_ONLY.keys()))
def test_bad_network_stops_naming_the_file_and_the_field(tmp_path, name):
    data, message = {**BAD_NETWORKS, **LOADER_ONLY}[name]
    path = tmp_path / "network.json"
    path.write_text(json.dumps(data))
    with pytest.raises(NetworkError) as err:
        Network.load(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)
    assert validator("network").is_valid(data) == (name in LOADER_ONLY)


def test_network_accepts_what_it_writes_and_redundant_camera_fps(tmp_path):
    net = Network.from_json({**GOOD, "camera_fps": {"a": 25}, "camera_grids": {"b": GOOD["grid"]}})
    assert net.fps == 25 and net.cameras == ("a", "b") and not net.mixed_rates
    assert Network.from_json(net.to_json()) == net
    assert validator("network").is_valid(net.to_json())
    mixed = Network.from_json({**GOOD, "camera_fps": {"b": 15}})
    assert (mixed.rate(0), mixed.rate(1)) == (25, 15)
    assert Network.from_json(mixed.to_json()) == mixed
    assert validator("network").is_valid(mixed.to_json())


def test_network_without_fps_stops_estimate_with_one_line(tmp_path, capsys):
    (tmp_path / "network.json").write_text(json.dumps(without("fps")))
    trace = tmp_path / "occupancy.jsonl"
    trace.write_text('{"camera": "a", "t_ms": 0, "occupied": []}\n')
    assert main(["estimate", str(trace), "-o", str(tmp_path / "t.json"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"camtopo estimate: error: {tmp_path / 'network.json'}: missing field 'fps' "
        f"(the cameras' frames per second)"
    )


def test_network_not_json_names_the_file(tmp_path):
    path = tmp_path / "network.json"
    path.write_text("fps: 10")
    with pytest.raises(NetworkError, match=f"^{re.escape(str(path))}: not valid JSON"):
        Network.load(path)


# --- occupancy lines: the reader and the schema refuse the same lines -------------------------
BAD_LINES = {
    "no camera": ({"t_ms": 0, "occupied": []}, "missing field 'camera'"),
    "no t_ms": ({"camera": "a", "occupied": []}, "missing field 't_ms'"),
    "no occupied": ({"camera": "a", "t_ms": 0}, "missing field 'occupied'"),
    "nothing": ({}, "missing fields 'camera', 't_ms', 'occupied'"),
    "camera a number": ({"camera": 7, "t_ms": 0, "occupied": []}, "'camera' must be a string"),
    "t_ms a string": ({"camera": "a", "t_ms": "0", "occupied": []}, "'t_ms' must be an integer"),
    "t_ms a fraction": ({"camera": "a", "t_ms": 0.5, "occupied": []}, "'t_ms' must be an integer"),
    "t_ms true": ({"camera": "a", "t_ms": True, "occupied": []}, "'t_ms' must be an integer"),
    "occupied a number": (
        {"camera": "a", "t_ms": 0, "occupied": 3},
        "'occupied' must be a list of integers, got 3",
    ),
    "occupied strings": (
        {"camera": "a", "t_ms": 0, "occupied": ["3"]},
        "'occupied' must be a list of integers",
    ),
    "occupied twice": ({"camera": "a", "t_ms": 0, "occupied": [3, 3]}, "repeats a window"),
    "a list": ([1, 2], "a line must be a JSON object"),
    "blob of seven hue bins": (
        {
            "camera": "a",
            "t_ms": 0,
            "occupied": [3],
            "blobs": [{"window": 3, "hue": [1, 0, 0, 0, 0, 0, 0], "value": 0.5}],
        },
        "'blobs[0]'.hue must be 8 numbers",
    ),
    "blob without brightness": (
        {"camera": "a", "t_ms": 0, "occupied": [3], "blobs": [{"window": 3, "hue": [0] * 8}]},
        "'blobs[0]' must be an object with 'window', 'hue' and 'value'",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_LINES))
def test_reader_and_schema_refuse_the_same_lines(tmp_path, name):
    line, message = BAD_LINES[name]
    path = tmp_path / "occupancy.jsonl"
    path.write_text('{"camera": "a", "t_ms": 0, "occupied": [1]}\n' + json.dumps(line) + "\n")
    good, bad = list(read_jsonl(path))
    assert not isinstance(good, TraceError)
    assert isinstance(bad, TraceError)
    assert str(bad).startswith(f"{path}:2: ") and message in str(bad)
    assert not validator("occupancy_line").is_valid(line)


def test_whole_numbers_written_with_a_point_are_integers_to_both(tmp_path):
    line = {"camera": "a", "t_ms": -300.0, "occupied": [2.0]}
    path = tmp_path / "occupancy.jsonl"
    path.write_text(json.dumps(line) + "\n")
    (frame,) = read_jsonl(path)
    assert (frame.t_ms, frame.occupied) == (-300, [2])
    assert validator("occupancy_line").is_valid(line)
