"""Transit-link benchmark: lag-resolved transit evidence (camtopo/core/transit.py) beside the
Makris-style baseline, on campus-100 and branching-60 (one simulated hour each).

Traces come from the same cache as ``benchmarks/accuracy.py`` (``benchmarks/.cache/``,
generated with ``camtopo.simulation.writer.write_scenario`` when missing). For each network:

- camtopo with transit evidence (snapshots every 300 s) and, for the "overlap unchanged"
  check, camtopo with ``transit_enabled=False``; the baseline (``camtopo.evaluation.baseline``);
- transit-link precision / recall (the contract's camera_transit scoring) over simulated time,
  plus recall on the *detectable* links: walked at least ``--min-walks`` times per simulated
  hour with a true median transit within the maximum lag (the others cannot be found in an hour
  by any method that counts walkers, or are beyond the lag range);
- per-direction median transit time against the walkers' true median (relative error);
- the transit estimator's counters and memory.

    python -m benchmarks.transit                  # both networks (~10 min on 2 cores)
    python -m benchmarks.transit --only branching-60
    CAMTOPO_TRANSIT_MAX_LAG_S=120 python -m benchmarks.transit --stem transit-lag120
    python -m benchmarks.transit --hours 4         # how recall grows past the first hour

Writes benchmarks/results/transit.json and transit.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.accuracy import CACHE, RESULTS, Net, generate
from camtopo.evaluation.score import directions

SUITE = (
    ("campus-100", "campus", 100),
    ("branching-60", "branching", 60),
    ("corridor-40", "corridor", 40),
    ("plaza-30", "plaza", 30),
)
TARGETS = {"precision": 0.90, "recall": 0.80, "median_time_rel_error": 0.20}


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def truth_sets(truth: dict[str, Any], min_walks: int, max_lag_s: float) -> dict[str, Any]:
    transit = {_pair(x["a"], x["b"]): x for x in truth["camera_links"] if x["kind"] == "transit"}
    detectable = {
        k
        for k, x in transit.items()
        if any(
            d["walkers"] >= min_walks and (d["median_s"] or 1e9) <= max_lag_s
            for _, _, d in directions(x)
        )
    }
    ways = {
        (src, dst): d
        for x in transit.values()
        for src, dst, d in directions(x)
        if d["median_s"] is not None
    }
    return {"transit": transit, "detectable": detectable, "directions": ways}


def transit_scores(
    links: list[tuple[str, str, str]], truth: dict[str, Any], sets: dict[str, Any]
) -> dict[str, Any]:
    from camtopo.evaluation.score import BLIND_BANDS, score_sets

    scores = score_sets([], [(a, b) for a, b, _ in links], truth)
    base = scores["camera_transit"]
    est = {_pair(a, b) for a, b, kind in links if kind == "transit"}
    det = sets["detectable"]
    return {
        "precision": base.precision,  # contract scoring: all estimated links not overlaps
        "recall": base.recall,
        "found": base.found,
        "true": base.true,
        "estimated_transit_kind": len(est),
        "precision_transit_kind": len(est & set(sets["transit"])) / len(est) if est else 1.0,
        "recall_detectable": len(est & det) / len(det) if det else 1.0,
        "detectable": len(det),
        "camera_precision": scores["camera"].precision,
        # the contract's walked links (>= 20 walkers) by blind-walk time
        "walked": {
            band: {"recall": v.recall, "found": v.found, "true": v.true}
            for band, v in ((b, scores.get(b)) for b, _, _ in BLIND_BANDS)
            if v is not None
        },
    }


def time_errors(edges: list[dict[str, Any]], sets: dict[str, Any]) -> dict[str, Any]:
    """Relative error of per-direction medians on found true transit directions."""
    rows = []
    for e in edges:
        if e.get("kind") != "transit":
            continue
        for way, ev in (e.get("transit") or {}).items():
            src, dst = (e["a"], e["b"]) if way == "a->b" else (e["b"], e["a"])
            true = sets["directions"].get((src, dst))
            if true and true["median_s"] > 0:
                rows.append((abs(ev["median_s"] - true["median_s"]) / true["median_s"], ev, true))
    errs = np.array([r[0] for r in rows])
    return {
        "directions_with_time": len(rows),
        "median_rel_error": float(np.median(errs)) if len(errs) else None,
        "within_20pct": int((errs <= 0.2).sum()),
        "examples": [
            {
                "est": [ev["median_s"], ev["p10_s"], ev["p90_s"]],
                "true": [t["median_s"], t["p10_s"], t["p90_s"]],
                "n_true": t["walkers"],
            }
            for _, ev, t in rows[:10]
        ],
    }


def baseline_time_errors(edges: list[dict[str, Any]], sets: dict[str, Any]) -> dict[str, Any]:
    errs = []
    for e in edges:
        if e.get("kind") != "transit" or e.get("transit_s") is None:
            continue
        ways = [sets["directions"].get((e["a"], e["b"])), sets["directions"].get((e["b"], e["a"]))]
        ways = [w for w in ways if w]
        if ways:
            true = min(ways, key=lambda w: abs(w["median_s"] - e["transit_s"]))
            errs.append(abs(e["transit_s"] - true["median_s"]) / true["median_s"])
    return {
        "links_with_time": len(errs),
        "median_rel_error": float(np.median(errs)) if errs else None,
        "within_20pct": int(sum(x <= 0.2 for x in errs)),
    }


def run_network(net: Net, snapshot_s: float, min_walks: int, progress: bool) -> dict[str, Any]:
    from camtopo import estimate
    from camtopo.core.grid import Network
    from camtopo.evaluation import baseline
    from camtopo.evaluation.score import score_sets
    from camtopo.settings import Settings

    def say(msg: str) -> None:
        print(f"[{net.name}] {msg}", file=sys.stderr, flush=True)

    folder = generate(net, CACHE, progress)
    trace = folder / "occupancy.jsonl"
    network = Network.load(folder / "network.json")
    truth = json.loads((folder / "truth.json").read_text())
    settings = Settings()
    hours = net.duration_s / 3600
    sets = truth_sets(truth, round(min_walks * hours), settings.transit.max_lag_s)

    say("camtopo with transit evidence ...")
    res = estimate.estimate_trace(
        trace, network, settings, snapshot_every_s=snapshot_s, progress=progress
    )
    topo = estimate.topology_json(network, settings, res)
    tr = res.estimator.transit if res.estimator else None
    curve = [{"t_s": s.t_s, **transit_scores(s.camera_links, truth, sets)} for s in res.history]
    final_links = [(e["a"], e["b"], e["kind"]) for e in topo["camera_edges"]]
    ours = {
        "elapsed_s": res.elapsed_s,
        "final": transit_scores(final_links, truth, sets),
        "curve": curve,
        "times": time_errors(topo["camera_edges"], sets),
        "counters": tr.counters() if tr else None,
        "memory_mb": tr.memory_bytes() / 2**20 if tr else None,
        "overlap": {
            k: v.__dict__
            for k, v in score_sets(
                [(e["a"], e["b"]) for e in topo["window_edges"]],
                [(a, b) for a, b, _ in final_links],
                truth,
            ).items()
        },
    }
    say(f"camtopo done in {res.elapsed_s:.0f} s")

    say("camtopo without transit evidence (overlap unchanged?) ...")
    plain = estimate.estimate_trace(
        trace, network, settings.replace(transit={"enabled": False}), progress=progress
    )
    plain_links = [(e.a, e.b, e.kind) for e in plain.topology.camera_edges]
    overlap_with = {_pair(a, b) for a, b, k in final_links if k == "overlap"}
    overlap_without = {_pair(a, b) for a, b, _ in plain_links}
    ours["overlap_unchanged"] = overlap_with == overlap_without
    ours["overlap_without"] = {
        k: v.__dict__
        for k, v in score_sets([], [(a, b) for a, b, _ in plain_links], truth).items()
        if "overlap" in k
    }
    ours["elapsed_without_transit_s"] = plain.elapsed_s

    say("baseline ...")
    bres = baseline.baseline_trace(trace, network, snapshot_every_s=snapshot_s, progress=progress)
    theirs_topo = baseline.topology_json(network, bres)
    theirs = {
        "elapsed_s": bres.elapsed_s,
        "final": transit_scores(
            [(e["a"], e["b"], e["kind"]) for e in theirs_topo["camera_edges"]], truth, sets
        ),
        "curve": [
            {"t_s": s["t_s"], **transit_scores([tuple(x) for x in s["camera_links"]], truth, sets)}
            for s in theirs_topo.get("history", [])
        ],
        "times": baseline_time_errors(theirs_topo["camera_edges"], sets),
    }
    return {
        "net": net.name,
        "cameras": network.n_cameras,
        "truth": {
            "transit_links": len(sets["transit"]),
            "detectable": len(sets["detectable"]),
            "never_walked": sum(x.get("transit_s") is None for x in sets["transit"].values()),
            "one_way": sum(bool(x.get("one_way")) for x in sets["transit"].values()),
            "median_over_max_lag": sum(
                (x.get("transit_s") or 0) > settings.transit.max_lag_s
                for x in sets["transit"].values()
            ),
        },
        "camtopo": ours,
        "baseline": theirs,
    }


def format_network(r: dict[str, Any]) -> str:
    t, o, b = r["truth"], r["camtopo"], r["baseline"]

    def row(who: str, x: dict[str, Any]) -> str:
        f = x["final"]
        return (
            f"{who:<10}{f['precision']:>7.2f}{f['recall']:>7.2f}{f['recall_detectable']:>9.2f}"
            f"{f['found']:>7}{f['estimated_transit_kind']:>6}{x['elapsed_s']:>8.0f}"
        )

    def walked(who: str, x: dict[str, Any]) -> str:
        f = x["final"]
        bands = "  ".join(
            f"{band[7:]} {v['found']}/{v['true']} ({v['recall']:.2f})"
            for band, v in f["walked"].items()
        )
        return f"{who:<10}walked links by blind walk: {bands}; camera P {f['camera_precision']:.3f}"

    def times(x: dict[str, Any]) -> str:
        n = x.get("directions_with_time", x.get("links_with_time"))
        if not n:
            return "none"
        return f"{x['within_20pct']}/{n} within 20%, median error {x['median_rel_error']:.1%}"

    ov = o["overlap"]["camera_overlap"]
    lines = [
        f"{r['net']}: {r['cameras']} cameras, {t['transit_links']} transit links "
        f"({t['never_walked']} never walked, {t['median_over_max_lag']} with median "
        f"transit > max lag, {t['one_way']} one-way); detectable {t['detectable']}",
        f"{'':<10}{'P':>7}{'R':>7}{'R(det.)':>9}{'found':>7}{'est.':>6}{'run s':>8}",
        row("camtopo", o),
        row("baseline", b),
        walked("camtopo", o),
        walked("baseline", b),
        f"transit times: camtopo {times(o['times'])}; baseline {times(b['times'])}",
        f"overlap links with transit on: P {ov['precision']:.2f} R {ov['recall']:.2f}; "
        f"overlap edge set unchanged: {o['overlap_unchanged']}; run time without transit "
        f"{o['elapsed_without_transit_s']:.0f} s",
        f"transit estimator: {o['memory_mb']:.1f} MiB, counters {o['counters']}",
    ]
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(2, len(results))
    rows = -(-len(results) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 4.2 * rows), squeeze=False)
    for ax in axes.ravel()[len(results) :]:
        ax.set_visible(False)
    for ax, r in zip(axes.ravel(), results, strict=False):
        for who, style in (("camtopo", "-"), ("baseline", "--")):
            curve = r[who]["curve"]
            t = [c["t_s"] / 60 for c in curve]
            ax.plot(t, [c["precision"] for c in curve], style, color="tab:green",
                    label=f"{who} precision")  # fmt: skip
            if who == "camtopo":
                ax.plot(t, [c["precision_transit_kind"] for c in curve], ":", color="tab:green",
                        label="camtopo precision of its transit-kind edges")  # fmt: skip
            ax.plot(t, [c["recall"] for c in curve], style, color="tab:orange",
                    label=f"{who} recall (all)")  # fmt: skip
            ax.plot(t, [c["recall_detectable"] for c in curve], style, color="tab:purple",
                    label=f"{who} recall (detectable)")  # fmt: skip
        ax.axhline(TARGETS["precision"], color="grey", lw=0.6)
        ax.axhline(TARGETS["recall"], color="grey", lw=0.6, ls=":")
        ax.set_title(f"{r['net']}: transit links")
        ax.set_xlabel("simulated time (min)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes.ravel()[0].legend(fontsize=7, loc="center right")
    fig.suptitle("transit links: camtopo lag-resolved evidence (solid) vs baseline (dashed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bands_table(stems: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """Recall of walked links by blind-walk band, pooled over networks and per network, for
    each labelled result file (e.g. without and with appearance), beside the baseline."""
    rows, data = [], {}
    header = "| run | network | ≤ 14 s | 14–30 s | 30–60 s | camera precision |"
    rows += [header, "|---|---|---|---|---|---|"]
    for label, stem in stems.items():
        result = json.loads((RESULTS / f"{stem}.json").read_text())
        for who in ("camtopo", "baseline"):
            if who == "baseline" and result.get("appearance"):
                continue  # the baseline reads no appearance: its rows come with the plain run
            pooled: dict[str, list[int]] = {}
            for r in result["networks"]:
                f = r[who]["final"]
                cells = []
                for band, v in f["walked"].items():
                    pooled.setdefault(band, [0, 0])
                    pooled[band][0] += v["found"]
                    pooled[band][1] += v["true"]
                    cells.append(f"{v['found']}/{v['true']}")
                name = label if who == "camtopo" else f"baseline, seed {result['seed']}"
                rows.append(f"| {name} | {r['net']} | {' | '.join(cells)} | "
                            f"{f['camera_precision']:.3f} |")  # fmt: skip
                data.setdefault(name, {})[r["net"]] = f["walked"]
            cells = [f"**{a}/{b} ({a / b:.2f})**" if b else "–" for a, b in pooled.values()]
            rows.append(f"| {name} | all | {' | '.join(cells)} | |")
            data.setdefault(name, {})["all"] = pooled
    return "\n".join(rows), data


def plot_bands(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from camtopo.evaluation.score import BLIND_BANDS

    bands = [b for b, _, _ in BLIND_BANDS]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    width = 0.8 / len(data)
    for i, (label, nets) in enumerate(data.items()):
        pooled = nets["all"]
        recall = [pooled[b][0] / pooled[b][1] if pooled.get(b, [0, 0])[1] else 0 for b in bands]
        xs = [k + i * width for k in range(len(bands))]
        ax.bar(xs, recall, width, label=label)
        for x, b in zip(xs, bands, strict=True):
            a, n = pooled.get(b, [0, 0])
            ax.text(x, a / n if n else 0, f"{a}/{n}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks([k + width * (len(data) - 1) / 2 for k in range(len(bands))])
    ax.set_xticklabels(["≤ 14 s", "14–30 s", "30–60 s"])
    ax.set_xlabel("blind-walk time of the link (walkers' median)")
    ax.set_ylabel("recall of links walked by ≥ 20 people")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    ax.set_title("transit links found in one simulated hour (3 networks, pooled)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", action="append", metavar="NAME")
    p.add_argument("--snapshot-every", type=float, default=300.0, metavar="S")
    p.add_argument("--min-walks", type=int, default=10, help="walkers per hour: detectable")
    p.add_argument("--hours", type=float, default=1.0, help="simulated hours per network")
    p.add_argument(
        "--seed", type=int, default=1, help="simulation seed (1 chose the settings; 2 holds out)"
    )
    p.add_argument("--stem", help="results file name (default transit[-ONLY][-seedN])")
    p.add_argument(
        "--appearance",
        action="store_true",
        help="traces whose blobs carry hue and brightness (same occupancy), used by camtopo",
    )
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--bands",
        nargs="+",
        metavar="LABEL=STEM",
        help="only tabulate and plot recall by blind-walk time of earlier result files "
        "(writes transit-bands.md and .png)",
    )
    args = p.parse_args(argv)
    if args.bands:
        table, data = bands_table(dict(x.split("=", 1) for x in args.bands))
        print(table)
        (RESULTS / "transit-bands.md").write_text(table + "\n")
        plot_bands(data, RESULTS / "transit-bands.png")
        return 0
    suite = tuple(
        Net(name, scenario, cameras, 3600.0 * args.hours, args.seed, appearance=args.appearance)
        for name, scenario, cameras in SUITE
        if not args.only or name in args.only
    )
    if not suite:
        p.error(f"no network named {args.only}; choose from {[n[0] for n in SUITE]}")
    CACHE.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = [run_network(n, args.snapshot_every, args.min_walks, not args.quiet) for n in suite]
    print()
    for r in results:
        print(format_network(r))
        print()
    from camtopo.settings import Settings

    out = {
        "targets": TARGETS,
        "settings": {
            k: v
            for k, v in Settings().by_variable().items()
            if k not in {"api_token", "redis_url", "kafka_bootstrap"}
        },
        "min_walks_per_hour": args.min_walks,
        "hours": args.hours,
        "seed": args.seed,
        "appearance": args.appearance,
        "wall_s": time.perf_counter() - started,
        "networks": results,
    }
    stem = args.stem or "-".join(
        [
            "transit",
            *(args.only or []),
            *([f"{args.hours:g}h"] if args.hours != 1 else []),
            *([f"seed{args.seed}"] if args.seed != 1 else []),
            *(["looks"] if args.appearance else []),
        ]
    )
    (RESULTS / f"{stem}.json").write_text(json.dumps(out, indent=1, default=str))
    plot(results, RESULTS / f"{stem}.png")
    print(f"wrote {RESULTS / (stem + '.json')} and {stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
