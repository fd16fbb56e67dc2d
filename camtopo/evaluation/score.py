"""``camtopo score``: precision and recall of a topology against ground truth (the contract's
scoring), at the end and along the topology's history of snapshots."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TOPOLOGY_FORMAT = "camtopo-topology/1"  # what `camtopo estimate` and `baseline` write
KINDS = ("overlap", "transit")
_WINDOW = re.compile(r".+:\d+")  # the contract's window label, "cam007:17"
# The contract's transit scoring: links walked by at least WALKED people (both ways together),
# split by blind-walk time; transit times on directions walked by at least TIMED people.
WALKED, TIMED = 20, 10
BLIND_BANDS = (("walked_le14s", 0.0, 14.0), ("walked_14_30s", 14.0, 30.0),
               ("walked_30_60s", 30.0, 60.0))  # fmt: skip
WAYS = ("a->b", "b->a")


@dataclass(frozen=True)
class PR:
    precision: float
    recall: float
    found: int  # true items found
    estimated: int
    true: int


def pr(estimated: set[Any], true: set[Any]) -> PR:
    hit = len(estimated & true)
    return PR(
        precision=hit / len(estimated) if estimated else 1.0,
        recall=hit / len(true) if true else 1.0,
        found=hit,
        estimated=len(estimated),
        true=len(true),
    )


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def score_sets(
    window_pairs: Iterable[Sequence[str]],
    camera_links: Iterable[Sequence[str]],
    truth: dict[str, Any],
) -> dict[str, PR]:
    """The contract's figures: window level, camera level overall and by kind.

    ``camera_links`` are (a, b) or (a, b, kind). Recall by kind counts the true links of that
    kind found by any estimated link (the contract). Precision by kind, where the estimated
    kinds are known, is the share of links *reported* as that kind that are true links of
    either kind — what an operator relying on, say, the overlap links needs to know.
    """
    true_windows = {_pair(a, b) for a, b in truth.get("window_overlaps", [])}
    true_links = {_pair(x["a"], x["b"]): x["kind"] for x in truth.get("camera_links", [])}
    est_kind = {_pair(x[0], x[1]): (x[2] if len(x) > 2 else None) for x in camera_links}
    est_links = set(est_kind)
    out = {
        "window": pr({_pair(a, b) for a, b in window_pairs}, true_windows),
        "camera": pr(est_links, set(true_links)),
    }
    kinds_known = all(k is not None for k in est_kind.values())
    for kind in sorted(set(true_links.values())):
        true_k = {p for p, k in true_links.items() if k == kind}
        recall = pr(est_links, true_k)
        if kinds_known:
            reported = {p for p, k in est_kind.items() if k == kind}
        else:  # no kinds: estimated links not explained by a true link of another kind
            reported = est_links - {p for p, k in true_links.items() if k != kind}
        precision = pr(reported, set(true_links))
        out[f"camera_{kind}"] = PR(
            precision.precision, recall.recall, recall.found, len(reported), recall.true
        )
    for band, walked in walked_links(truth).items():
        # recall of the band at the camera level's precision (the contract's "at precision")
        found = pr(est_links, walked)
        out[band] = PR(
            out["camera"].precision, found.recall, found.found, len(est_links), len(walked)
        )
    return out


def directions(link: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(source, destination, what walkers did) for each direction a truth link describes."""
    ends = {"a->b": (link["a"], link["b"]), "b->a": (link["b"], link["a"])}
    return [(*ends[w], link[w]) for w in WAYS if isinstance(link.get(w), dict)]


def blind_walk(link: dict[str, Any]) -> tuple[int, float | None]:
    """Walkers of a truth link (both ways) and its blind-walk time: the directions' median
    times weighted by their walkers (None when nobody walked it)."""
    ways = [
        (d.get("walkers", 0), d["median_s"])
        for _, _, d in directions(link)
        if d.get("median_s") is not None
    ]
    n = sum(w for w, _ in ways)
    walkers = sum(d.get("walkers", 0) for _, _, d in directions(link))
    return walkers, (sum(w * t for w, t in ways) / n if n else None)


def walked_links(truth: dict[str, Any]) -> dict[str, set[tuple[str, str]]]:
    """The true transit links walked by at least WALKED people, by blind-walk band; empty when
    the truth does not say what walkers did."""
    links = [x for x in truth.get("camera_links", []) if x["kind"] == "transit"]
    if not any(directions(x) for x in links):
        return {}
    out: dict[str, set[tuple[str, str]]] = {band: set() for band, _, _ in BLIND_BANDS}
    for x in links:
        walkers, t = blind_walk(x)
        band = next((b for b, _, hi in BLIND_BANDS if t is not None and t <= hi), None)
        if walkers >= WALKED and band is not None:  # bands are contiguous, in ascending order
            out[band].add(_pair(x["a"], x["b"]))
    return out


def transit_times(topology: dict[str, Any], truth: dict[str, Any]) -> dict[str, Any]:
    """The share of true transit directions walked by at least TIMED people whose estimated
    median transit time is within 20 % of the walkers' median."""
    estimated: dict[tuple[str, str], float] = {}
    for e in topology["camera_edges"]:
        ends = {"a->b": (e["a"], e["b"]), "b->a": (e["b"], e["a"])}
        for way, d in (e.get("transit") or {}).items():
            if way in ends and isinstance(d, dict) and d.get("median_s") is not None:
                estimated[ends[way]] = float(d["median_s"])
    timed = [
        (src, dst, d["median_s"])
        for x in truth.get("camera_links", [])
        if x["kind"] == "transit"
        for src, dst, d in directions(x)
        if d.get("walkers", 0) >= TIMED and d.get("median_s")
    ]
    within = sum(
        abs(estimated[(s, t)] - true) <= 0.2 * true for s, t, true in timed if (s, t) in estimated
    )
    return {
        "directions": len(timed),
        "timed": sum((s, t) in estimated for s, t, _ in timed),
        "within_20pct": within,
        "share": within / len(timed) if timed else None,
    }


def score_topology(topology: dict[str, Any], truth: dict[str, Any]) -> dict[str, Any]:
    final = score_sets(
        ((e["a"], e["b"]) for e in topology["window_edges"]),
        ((e["a"], e["b"], e["kind"]) for e in topology["camera_edges"]),
        truth,
    )
    curve = [
        {
            "t_s": snap["t_s"],
            **{
                k: asdict(v)
                for k, v in score_sets(
                    (tuple(p) for p in snap["window_pairs"]),
                    (tuple(x) for x in snap["camera_links"]),
                    truth,
                ).items()
            },
        }
        for snap in topology.get("history", [])
    ]
    return {
        "observed_s": topology.get("observed_s"),
        "final": {k: asdict(v) for k, v in final.items()},
        "transit_times": transit_times(topology, truth),
        "curve": curve,
        "time_to_final_s": _time_to_reach(curve, final),
    }


def _time_to_reach(curve: list[dict[str, Any]], final: dict[str, PR]) -> dict[str, float | None]:
    """First snapshot time at which each level's precision and recall reached the final value
    (within 0.01): how much simulated time the result needed."""
    out: dict[str, float | None] = {}
    for level, target in final.items():
        out[level] = next(
            (
                snap["t_s"]
                for snap in curve
                if level in snap
                and snap[level]["recall"] >= target.recall - 0.01
                and snap[level]["precision"] >= target.precision - 0.01
            ),
            None,
        )
    return out


def format_table(result: dict[str, Any]) -> str:
    rows = [
        f"{'level':<18}{'precision':>10}{'recall':>8}{'found':>7}{'est.':>7}{'true':>7}{'t (s)':>8}"
    ]
    for level, v in result["final"].items():
        t = result["time_to_final_s"].get(level)
        rows.append(
            f"{level:<18}{v['precision']:>10.3f}{v['recall']:>8.3f}{v['found']:>7}"
            f"{v['estimated']:>7}{v['true']:>7}{'' if t is None else f'{t:.0f}':>8}"
        )
    return "\n".join(rows)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("score", help="precision/recall of topology.json against truth.json")
    p.add_argument("topology", type=Path)
    p.add_argument("truth", type=Path)
    p.add_argument("--json", type=Path, help="also write the scores (and curve) here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = score_topology(load_topology(args.topology), load_truth(args.truth))
    print(format_table(result))
    summary = {"observed_s": result["observed_s"], "final": result["final"],
               "time_to_final_s": result["time_to_final_s"]}  # fmt: skip
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


# --- the inputs, checked: a truth of {} scored 1.000 / 1.000 (nothing to find, nothing found) --
class ScoreInputError(ValueError):
    """topology.json or truth.json lacks what scoring needs; the message names file and field."""


def load_truth(path: Path) -> dict[str, Any]:
    """truth.json with the fields scoring reads checked (docs/formats.md)."""
    truth = _object(_load(path), str(path))
    for n, pair in enumerate(_list(truth, "window_overlaps", str(path))):
        _window_pair(pair, f"{path}: window_overlaps[{n}]")
    for n, link in enumerate(_list(truth, "camera_links", str(path))):
        _link(link, f"{path}: camera_links[{n}]")
        for way in WAYS:
            if way in link:
                _walked(link[way], f"{path}: camera_links[{n}].{way}")
    return truth


def load_topology(path: Path) -> dict[str, Any]:
    """topology.json with the fields scoring reads checked (docs/formats.md)."""
    topology = _object(_load(path), str(path))
    if topology.get("format") != TOPOLOGY_FORMAT:
        found = repr(topology["format"]) if "format" in topology else "no 'format' field"
        raise ScoreInputError(f"{path}: expected 'format': {TOPOLOGY_FORMAT!r}, found {found}")
    for n, edge in enumerate(_list(topology, "window_edges", str(path))):
        where = f"{path}: window_edges[{n}]"
        _window_pair([_field(edge, "a", where), _field(edge, "b", where)], where)
    for n, edge in enumerate(_list(topology, "camera_edges", str(path))):
        _link(edge, f"{path}: camera_edges[{n}]")
    history = _list(topology, "history", str(path)) if "history" in topology else []
    for n, snap in enumerate(history):
        _snapshot(snap, f"{path}: history[{n}]")
    return topology


def _snapshot(snap: Any, where: str) -> None:
    if not isinstance(_field(snap, "t_s", where), int | float):
        raise ScoreInputError(f"{where}: 't_s' must be a number")
    for k, pair in enumerate(_list(snap, "window_pairs", where)):
        _window_pair(pair, f"{where}.window_pairs[{k}]")
    for k, link in enumerate(_list(snap, "camera_links", where)):
        if not _strings(link, 2, 3):
            raise ScoreInputError(f"{where}.camera_links[{k}]: expected [a, b] or [a, b, kind]")


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    # ValueError: not JSON, not UTF-8, or an integer of more than 4,300 digits;
    # RecursionError: arrays or objects nested thousands deep
    except (ValueError, RecursionError) as exc:
        raise ScoreInputError(f"{path}: not valid JSON: {exc}") from None


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScoreInputError(f"{where}: expected a JSON object")
    return value


def _field(obj: Any, key: str, where: str) -> Any:
    if key not in _object(obj, where):
        raise ScoreInputError(f"{where}: missing field {key!r}")
    return obj[key]


def _list(obj: Any, key: str, where: str) -> list[Any]:
    value = _field(obj, key, where)
    if not isinstance(value, list):
        raise ScoreInputError(f"{where}: {key!r} must be a list")
    return value


def _strings(value: Any, *lengths: int) -> bool:
    return (
        isinstance(value, list) and len(value) in lengths and all(isinstance(v, str) for v in value)
    )


def _window_pair(pair: Any, where: str) -> None:
    if not _strings(pair, 2) or not all(_WINDOW.fullmatch(w) for w in pair):
        raise ScoreInputError(f"{where}: expected two window labels 'camera:index', got {pair!r}")


def _link(link: Any, where: str) -> None:
    for key in ("a", "b"):
        if not isinstance(_field(link, key, where), str):
            raise ScoreInputError(f"{where}: {key!r} must be a camera id (a string)")
    if _field(link, "kind", where) not in KINDS:
        raise ScoreInputError(f"{where}: 'kind' must be one of {list(KINDS)}, got {link['kind']!r}")


def _walked(way: Any, where: str) -> None:
    walkers = _field(way, "walkers", where)
    if not isinstance(walkers, int) or isinstance(walkers, bool) or walkers < 0:
        raise ScoreInputError(f"{where}: 'walkers' must be a count (an integer >= 0)")
    median = _field(way, "median_s", where)
    if median is not None and (not isinstance(median, int | float) or median < 0):
        raise ScoreInputError(f"{where}: 'median_s' must be seconds >= 0 or null")
