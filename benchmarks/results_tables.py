"""The README's result tables, generated from the committed result JSON (`make results`).

Each table sits between marker comments in README.md::

    <!-- results:accuracy -->
    | ... |
    <!-- /results:accuracy -->

`python -m benchmarks.results_tables` rewrites every such block from the files in
benchmarks/results/; `--check` only compares and exits 1 when the README differs (the unit test
tests/unit/test_results_tables.py does the same, so a figure cannot drift from its JSON).
The prose around the tables is written by hand and names its sources.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE.parent / "README.md"


def _load(name: str) -> Any:
    return json.loads((RESULTS / name).read_text())


def _pr(score: dict[str, float]) -> str:
    return f"{score['precision']:.2f} / {score['recall']:.2f}"


def accuracy_table() -> list[str]:
    """benchmarks/accuracy.py → accuracy.json: camera-level overlap links, then window level."""
    data = _load("accuracy.json")
    target = data["targets"]["camera_overlap"]
    rows = [
        "| network | camtopo P / R | Makris-style baseline P / R | window level P / R |",
        "|---|---|---|---|",
    ]
    for i, net in enumerate(data["networks"]):
        links = net["truth"]["overlap_links"]
        name = net["net"]["name"]
        name = f"{name} ({links} overlap links)" if i == 0 else f"{name} ({links})"
        ours = net["camtopo"]["score"]["final"]
        cam = ours["camera_overlap"]
        met = cam["precision"] >= target["precision"] and cam["recall"] >= target["recall"]
        camtopo = f"**{_pr(cam)}**" if met else _pr(cam)
        base = _pr(net["baseline"]["score"]["final"]["camera_overlap"])
        rows.append(f"| {name} | {camtopo} | {base} | {_pr(ours['window'])} |")
    return rows


ENGINE_SPEED_CAMERAS = (400, 1000, 1500)


def _times(x: float) -> str:
    return f"{x:.0f}" if x >= 20 else f"{x:.1f}"


def engine_speed_table() -> list[str]:
    """benchmarks/engine_speed.py → engine_speed.json: fast engine and dense reference.

    Memory in GB = MiB / 1024 (peak RSS). Where the dense reference was not run, its need is
    the dense count matrix (bytes per window pair as measured at the largest dense run, times
    windows²), in decimal GB, up to the largest size the fast engine still fits; beyond, "—".
    """
    data = _load("engine_speed.json")
    fast = {r["cameras"]: r for r in data if r["engine"] == "fast"}
    dense = {r["cameras"]: r for r in data if r["engine"] == "dense"}
    largest = dense[max(dense)]
    bytes_per_pair = largest["engine_mb"] * 2**20 / largest["windows"] ** 2
    rows = [
        "| cameras | fast engine (× real time at 10 FPS) | peak memory "
        "| dense reference (× real time) |",
        "|---|---|---|---|",
    ]
    for n in ENGINE_SPEED_CAMERAS:
        f = fast[n]
        if n in dense:
            d = dense[n]
            ref = f"{d['realtime_factor']:.2f} ({d['peak_rss_mb'] / 1024:.1f} GB)"
        elif n == ENGINE_SPEED_CAMERAS[1]:
            need = bytes_per_pair * f["windows"] ** 2 / 1e9
            ref = f"would need {need:.0f} GB"
        else:
            ref = "—"
        rows.append(
            f"| {n:,} | {_times(f['realtime_factor'])} | {f['peak_rss_mb'] / 1024:.2f} GB | {ref} |"
        )
    return rows


def _mem(first_mb: float, last_mb: float) -> str:
    if last_mb < 1000:
        return f"{first_mb:.0f} → {last_mb:.0f} MB"
    return f"{first_mb / 1000:.1f} → {last_mb / 1000:.1f} GB"


def streaming_table() -> list[str]:
    """benchmarks/streaming.py (single worker) → streaming.json."""
    rows = [
        "| cameras | frames/s counted | late data | detection delay p50 / p99 | processor memory |",
        "|---|---|---|---|---|",
    ]
    for r in _load("streaming.json"):
        rows.append(
            f"| {r['cameras']:,} | {r['frames_counted_per_s']:,.0f} of {r['frames_in_per_s']:,.0f} "
            f"| {r['late_fraction'] * 100:.0f} % "
            f"| {r['delay_p50_s']:.1f} / {r['delay_p99_s']:.1f} s "
            f"| {_mem(r['rss_mb_first'], r['rss_mb_last'])} |"
        )
    return rows


# name → (table, the result files it reads)
TABLES: dict[str, tuple[Callable[[], list[str]], tuple[str, ...]]] = {
    "accuracy": (accuracy_table, ("accuracy.json",)),
    "engine_speed": (engine_speed_table, ("engine_speed.json",)),
    "streaming": (streaming_table, ("streaming.json",)),
}


def render(text: str) -> str:
    """`text` with every results block regenerated; every table in TABLES must have one."""
    for name, (table, _) in TABLES.items():
        pattern = re.compile(
            rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", re.DOTALL
        )
        if not pattern.search(text):
            raise ValueError(f"README.md has no <!-- results:{name} --> … block")
        body = "\n".join(table()) + "\n"
        text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only compare; exit 1 if they differ")
    p.add_argument("--readme", type=Path, default=README)
    args = p.parse_args(argv)
    old = args.readme.read_text()
    new = render(old)
    if new == old:
        print(f"{args.readme.name}: result tables up to date")
        return 0
    if args.check:
        sys.stdout.writelines(
            difflib.unified_diff(
                old.splitlines(True), new.splitlines(True), "README.md", "generated"
            )
        )
        return 1
    args.readme.write_text(new)
    print(f"{args.readme.name}: result tables rewritten from {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
