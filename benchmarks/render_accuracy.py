"""Occupancy from rendered video vs the simulator's exact occupancy (strict and +-1 window).

    python benchmarks/render_accuracy.py [--cameras 12] [--seconds 120] [--seed 1]

Prints a table per configuration and writes benchmarks/results/render_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from producers.agreement import measure_agreement
from producers.detection import DetectionParams
from producers.render import RenderConfig

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cameras", type=int, default=12)
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--warmup", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--density", type=float, default=3.0)
    args = p.parse_args()
    configs = {
        "default (varThreshold 25, JPEG q80)": (DetectionParams.from_settings(), RenderConfig()),
        "OpenCV varThreshold 16, JPEG q80": (DetectionParams(var_threshold=16), RenderConfig()),
        "varThreshold 25, no cast shadows": (
            DetectionParams.from_settings(),
            RenderConfig(shadows=False),
        ),
    }
    rows = {}
    for name, (params, render) in configs.items():
        a = measure_agreement(
            n_cameras=args.cameras,
            seconds=args.seconds,
            warmup_s=args.warmup,
            seed=args.seed,
            density=args.density,
            params=params,
            render=render,
        )
        rows[name] = a.summary()
    print(
        f"\n{args.cameras} cameras x {args.seconds - args.warmup:.0f} s scored (campus, "
        f"density {args.density}, seed {args.seed})"
    )
    head = f"{'true':>6} {'recall':>7} {'false':>6} {'recall±1':>9} {'false±1':>8}"
    print(f"{'configuration':40} {head}")
    for name, r in rows.items():
        print(
            f"{name:40} {r['true_windows']:6d} {r['recall_strict']:7.3f} "
            f"{r['false_rate_strict']:6.3f} {r['recall_tolerant']:9.3f} "
            f"{r['false_rate_tolerant']:8.4f}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "render_accuracy.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
