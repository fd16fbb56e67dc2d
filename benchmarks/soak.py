"""A day-long soak (issue 23, item 5): simulated cameras through the real Kafka, the streaming
processor and Redis for many simulated hours, accelerated, sampling memory, lag and late data.

The simulator's campus already has what a day brings: lecture-change crowd surges every
slot and quiet spells between them, and camera outages (2 % of each camera's time, two
minutes on average). The producer (this file with ``--produce``) sends its records
``--speed`` times faster than real time. Capture times start far enough in the past that
they never pass the wall clock (the processor refuses frames ahead of it), so the processor's
event-time clock runs ``--speed`` times faster than the wall: ranges, the late cutoff Td and
checkpoints all happen in simulated time, exactly as they would over a day; only delivery
(Kafka, the worker's fetches) keeps wall-clock speed, so Td is ``--speed`` times shorter in
wall time than in production (the late share is an upper bound on a real day's).

Every ``--sample-every`` wall seconds it records the RSS of each process (processor, Kafka
broker, Redis, producer), Redis used memory, consumer lag, frames in and counted, and the
late share. After ``--warmup-hours`` it fits a line to each memory series against simulated
hours: the slope (MB per simulated hour), its 95 % bound, and what that bound would add over
a week. Writes ``benchmarks/results/soak<tag>.json`` after every sample (an interrupted run
keeps what it measured) and ``soak<tag>.png`` (everything against simulated hours).

    python -m benchmarks.soak --cameras 100 --hours 24 --speed 10

``--replot`` redraws the picture and the summary from the JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.streaming import (
    REPO,
    RESULTS,
    _sample,
    _start_workers,
    late_share,
    rss_mb,
    scrape_workers,
)

TOPIC_PARTITIONS = 8


# --- the producer (a child process) ---------------------------------------------------------------
def produce(args: argparse.Namespace) -> int:
    from confluent_kafka import Producer

    from camtopo.simulation import Simulation
    from processors.trace import simulated_records

    sim = Simulation.from_name(args.scenario, args.cameras, seed=args.seed, warmup_s=60.0)
    sim.network.save(args.network)
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "enable.idempotence": True,
            "linger.ms": 20,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 500_000,
        }
    )
    span_ms = args.hours * 3_600_000.0
    # Capture times end a minute before the wall clock does at the run's end: never ahead
    # of it (ahead_of_clock dead letters), at most ~hours in the past (the broker keeps 24 h).
    wall0 = time.time() * 1000.0 + 1000.0
    event0 = wall0 + span_ms / args.speed - span_ms - 60_000.0
    offset = int(event0 - sim.start_ms)
    n_ticks = int(args.hours * 3600 * sim.fps)
    status = Path(args.status)
    Path(args.ready).write_text(json.dumps({"wall0_ms": wall0, "speed": args.speed}))
    sent, next_status = 0, 0.0
    for rec in simulated_records(sim, n_ticks, args.frames_per_record, 0, offset):
        sim_ms = rec.send_ms - offset - sim.start_ms
        wait = (wall0 + sim_ms / args.speed - time.time() * 1000.0) / 1000.0
        if wait > 0:
            time.sleep(wait)
        while True:
            try:
                # The record timestamp is the processor's clock: the simulated send time.
                producer.produce(args.topic, rec.value, rec.camera.encode(), timestamp=rec.send_ms)
                break
            except BufferError:  # the local queue is full: let the broker catch up
                producer.poll(0.1)
        producer.poll(0)
        sent += 1
        if sim_ms >= next_status:
            offline = int(len(sim.network.cameras) - sim.noise.available.sum())
            status.write_text(
                json.dumps({"sim_s": sim_ms / 1000.0, "records_sent": sent, "offline": offline})
            )
            next_status = sim_ms + 10_000.0
    producer.flush(60)
    status.write_text(json.dumps({"sim_s": args.hours * 3600, "records_sent": sent, "done": True}))
    return 0


# --- the run -------------------------------------------------------------------------------------
def run(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    import redis as redis_lib
    from confluent_kafka.admin import AdminClient, NewTopic
    from tqdm import tqdm

    from camtopo.operations.localstack import KafkaCluster, RedisServer

    workdir = Path(tempfile.mkdtemp(prefix="camtopo-soak-"))
    kafka = KafkaCluster(data_dir=workdir / "kafka").start()
    redis_server = RedisServer(data_dir=workdir / "redis").start()
    procs: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "func"}}
    try:
        tag = f"soak-{int(time.time())}"
        topic = f"occupancy-{tag}"
        admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
        topics = [NewTopic(topic, TOPIC_PARTITIONS, 1), NewTopic(f"dead-{tag}", 1, 1),
                  NewTopic(f"changes-{tag}", 4, 1)]  # fmt: skip
        for fut in admin.create_topics(topics).values():
            fut.result(60)
        rc = redis_lib.Redis.from_url(redis_server.url)
        env = dict(os.environ)
        env.update(
            CAMTOPO_KAFKA_BOOTSTRAP=kafka.bootstrap,
            CAMTOPO_OCCUPANCY_TOPIC=topic,
            CAMTOPO_DEAD_LETTER_TOPIC=f"dead-{tag}",
            CAMTOPO_TOPOLOGY_CHANGES_TOPIC=f"changes-{tag}",
            CAMTOPO_REDIS_URL=redis_server.url,
            CAMTOPO_PROCESSOR_GROUP=f"proc-{tag}",
        )
        network, ready, status = workdir / "network.json", workdir / "ready", workdir / "status"
        producer = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.soak", "--produce", "--cameras", str(args.cameras),
             "--hours", str(args.hours), "--speed", str(args.speed), "--bootstrap",
             kafka.bootstrap, "--topic", topic, "--network", str(network), "--ready", str(ready),
             "--status", str(status), "--scenario", args.scenario, "--seed", str(args.seed),
             "--frames-per-record", str(args.frames_per_record)],
            env=env, cwd=REPO,
        )  # fmt: skip
        procs.append(producer)
        while not ready.exists():
            if producer.poll() is not None:
                raise RuntimeError("the producer exited before it was ready")
            time.sleep(0.2)
        wall0 = json.loads(ready.read_text())["wall0_ms"] / 1000.0
        workers = _start_workers(args.cameras, args, env, network, workdir)
        procs += [w.proc for w in workers]
        others = {"producer": producer.pid, "kafka": kafka.pid(), "redis": redis_server.pid()}
        samples: list[dict[str, Any]] = []
        result.update(cameras=args.cameras, speed=args.speed, samples=samples)
        total_s = args.hours * 3600 / args.speed
        with tqdm(total=round(args.hours, 2), desc="simulated hours", unit="h") as bar:
            while True:
                time.sleep(args.sample_every)
                scraped = scrape_workers(workers)
                if scraped is None:
                    continue  # the metrics server is not up yet
                now = time.time()
                s = _sample(now - wall0, scraped, rc, others)
                row: dict[str, Any] = asdict(s)
                # the Sample's delay histograms measure capture -> count in wall time: with
                # capture times in the past they say nothing here
                for key in ("delay_buckets", "durable_buckets", "phase_s"):
                    row.pop(key)
                row["sim_h"] = (now - wall0) * args.speed / 3600.0
                row["rss_by_process"] = {
                    "processor": s.rss_mb,
                    # 0 once a process is gone (the producer when it is done)
                    **{n: rss_mb(p) or math.nan for n, p in others.items() if p is not None},
                }
                try:
                    row["producer"] = json.loads(status.read_text())
                except (OSError, ValueError):
                    row["producer"] = {}
                samples.append(row)
                bar.update(round(min(row["sim_h"], args.hours) - bar.n, 2))
                result["summary"] = summarise(samples, args.warmup_hours)
                out.with_suffix(".json").write_text(json.dumps(result, indent=1))
                if row["producer"].get("done") or now - wall0 > total_s + 120:
                    break
                if producer.poll() not in (None, 0):
                    raise RuntimeError(f"the producer exited {producer.returncode}")
        # let the processor take the tail before the last sample
        time.sleep(max(10.0, 2 * args.sample_every))
        result["dead_letters"] = _count(kafka.bootstrap, f"dead-{tag}")
        result["summary"] = summarise(samples, args.warmup_hours)
        out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        kafka.stop()
        redis_server.stop()
        for data in ("kafka", "redis"):
            shutil.rmtree(workdir / data, ignore_errors=True)
        print(f"workers' logs: {workdir}")
    return result


def _count(bootstrap: str, topic: str) -> int:
    """Records on a topic (the dead letters): high watermarks summed."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "soak-count"})
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        return sum(
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.partitions
        )
    finally:
        c.close()


# --- the figures ---------------------------------------------------------------------------------
def fit(xs: list[float], ys: list[float]) -> dict[str, float]:
    """Least-squares slope of ys against xs, with its standard error and 95 % upper bound."""
    n = len(xs)
    if n < 3:
        return {"slope": math.nan, "stderr": math.nan, "bound95": math.nan, "n": n}
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    resid = [y - my - slope * (x - mx) for x, y in zip(xs, ys, strict=True)]
    stderr = math.sqrt(sum(r * r for r in resid) / (n - 2) / sxx) if sxx > 0 else math.nan
    return {"slope": slope, "stderr": stderr, "bound95": slope + 1.96 * stderr, "n": n}


def series(samples: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Each memory series (MB) by name, in sample order."""
    names = sorted({k for s in samples for k in s["rss_by_process"]})
    out = {f"{k} RSS": [s["rss_by_process"].get(k, math.nan) for s in samples] for k in names}
    out["Redis used memory"] = [s["redis_mb"] for s in samples]
    return out


def summarise(samples: list[dict[str, Any]], warmup_hours: float) -> dict[str, Any]:
    warm = [s for s in samples if s["sim_h"] >= warmup_hours]
    if len(warm) < 3:
        return {"error": "too few samples after warm-up"}
    xs = [s["sim_h"] for s in warm]
    memory = {}
    for name, all_ys in series(warm).items():
        # A process that has already exited (the producer at the end) leaves NaN samples.
        pairs = [(x, y) for x, y in zip(xs, all_ys, strict=True) if not math.isnan(y)]
        if not pairs:
            continue
        f = fit([x for x, _ in pairs], [y for _, y in pairs])
        ys = [y for _, y in pairs]
        memory[name] = {
            "first_mb": ys[0],
            "last_mb": ys[-1],
            "max_mb": max(ys),
            "slope_mb_per_h": f["slope"],
            "bound95_mb_per_h": f["bound95"],
            "week_growth_at_bound_mb": 7 * 24 * max(f["bound95"], 0.0),
        }
    a, b = warm[0], warm[-1]
    span_s = max((b["t"] - a["t"]), 1e-9)
    frames = sum(b["frames"].values()) - sum(a["frames"].values())
    return {
        "warmup_hours": warmup_hours,
        "simulated_hours": samples[-1]["sim_h"],
        "wall_hours": samples[-1]["t"] / 3600.0,
        "memory": memory,
        "late_share": late_share(a["frames"], b["frames"], empty=math.nan),
        "frames_in_per_wall_s": frames / span_s,
        "frames_counted_per_wall_s": (b["counted"] - a["counted"]) / span_s,
        "lag_max_records": max(s["lag"] for s in warm),
        "lag_median_records": sorted(s["lag"] for s in warm)[len(warm) // 2],
        "verdicts": {k: v - a["frames"].get(k, 0) for k, v in b["frames"].items()},
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ss = result["samples"]
    h = [s["sim_h"] for s in ss]
    fig, (ax1, ax2, ax3, ax4) = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    summary = result.get("summary", {}).get("memory", {})
    for name, ys in series(ss).items():
        slope = summary.get(name, {}).get("slope_mb_per_h", math.nan)
        ax1.plot(h, ys, label=f"{name} ({slope:+.2f} MB/h after warm-up)")
    ax1.axvline(result["args"]["warmup_hours"], color="grey", ls="--", lw=0.8)
    ax1.set_ylabel("memory (MB)")
    ax1.set_yscale("log")
    ax1.set_title(
        f"Soak: {result['cameras']} cameras, {result['speed']:g}x real time, single worker"
    )
    ax1.legend(fontsize=7)
    ax2.plot(h, [s["lag"] for s in ss])
    ax2.set_ylabel("consumer lag (records)")
    pairs = list(itertools.pairwise(ss))
    ax3.plot(h[1:], [100 * late_share(a["frames"], b["frames"]) for a, b in pairs])
    ax3.set_ylabel("late + closed (%)")
    rate = [(b["counted"] - a["counted"]) / max(b["t"] - a["t"], 1e-9) for a, b in pairs]
    ax4.plot(h[1:], rate, label="frames counted per wall second")
    crowd = [(b["occupied"] - a["occupied"]) / max(b["counted"] - a["counted"], 1)
             for a, b in pairs]  # fmt: skip
    ax4b = ax4.twinx()
    ax4b.plot(h[1:], crowd, color="tab:orange", lw=0.8, label="occupied windows per frame")
    ax4b.set_ylabel("occupied windows per frame\n(crowd surges)", color="tab:orange")
    ax4.set_ylabel("frames counted / s")
    offline = [s.get("producer", {}).get("offline", math.nan) for s in ss]
    ax4.set_xlabel("simulated hours")
    ax4.legend(fontsize=7, loc="lower left")
    ax2b = ax2.twinx()
    ax2b.plot(h, offline, color="tab:red", lw=0.6)
    ax2b.set_ylabel("cameras offline", color="tab:red")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_summary(result: dict[str, Any]) -> None:
    s = result.get("summary", {})
    if "memory" not in s:
        print(s)
        return
    print(
        f"{result['cameras']} cameras, {s['simulated_hours']:.1f} simulated hours in "
        f"{s['wall_hours']:.2f} wall hours ({result['speed']:g}x); after "
        f"{s['warmup_hours']:g} h warm-up:"
    )
    print(f"{'memory':<26} {'first':>7} {'last':>7} {'max':>7} {'MB/h':>8} {'95% MB/h':>8}")
    for name, m in s["memory"].items():
        print(
            f"{name:<26} {m['first_mb']:>7.1f} {m['last_mb']:>7.1f} {m['max_mb']:>7.1f} "
            f"{m['slope_mb_per_h']:>+8.3f} {m['bound95_mb_per_h']:>+8.3f}"
        )
    print(
        f"late + closed {100 * s['late_share']:.3f} %; "
        f"frames in {s['frames_in_per_wall_s']:.0f}/s, "
        f"counted {s['frames_counted_per_wall_s']:.0f}/s (wall); lag median "
        f"{s['lag_median_records']:.0f}, max {s['lag_max_records']:.0f} records; dead letters "
        f"{result.get('dead_letters', 'n/a')}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cameras", type=int, default=100)
    ap.add_argument("--hours", type=float, default=24.0, help="simulated hours")
    ap.add_argument("--speed", type=float, default=10.0, help="simulated seconds per wall second")
    ap.add_argument("--warmup-hours", type=float, default=2.0, help="left out of the slopes")
    ap.add_argument("--sample-every", type=float, default=30.0, help="wall seconds")
    ap.add_argument("--frames-per-record", type=int, default=5)
    ap.add_argument("--scenario", default="campus")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tag", default="", help="suffix of the result files (soak<tag>.json)")
    ap.add_argument(
        "--replot", action="store_true", help="re-summarise and redraw from soak<tag>.json"
    )
    # producer mode (internal)
    for name in ("--bootstrap", "--topic", "--network", "--ready", "--status"):
        ap.add_argument(name, help=argparse.SUPPRESS)
    ap.add_argument("--produce", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.counters, args.assemblers = 0, 0  # _start_workers: one single worker
    if args.produce:
        return produce(args)
    out = RESULTS / f"soak{args.tag}"
    if args.replot:
        result = json.loads(out.with_suffix(".json").read_text())
        result["summary"] = summarise(result["samples"], result["args"]["warmup_hours"])
        out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    else:
        RESULTS.mkdir(parents=True, exist_ok=True)
        result = run(args, out)
    plot(result, out.with_suffix(".png"))
    print_summary(result)
    print(f"wrote {out}.json and {out}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
