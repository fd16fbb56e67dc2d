"""Whole-system measurement (paper section 6.4) on this machine: simulated cameras at 10 FPS, at
real-time pace, through Kafka -> `camtopo process` (Faust) -> Redis.

For each network size it starts a fresh processor and a simulated producer (this file run with
``--produce``), lets them run for ``--duration`` seconds, and samples every few seconds:
records and frames in, frames counted, late frames, detection delay (capture -> update of the
counts; the processor's histogram) and durable delay (capture -> the Redis checkpoint holding
them), processor RSS and engine bytes, Redis used memory, consumer lag. Prints a table and
writes a Figure-5-like plot (late fraction per minute and memory over time) plus the raw
samples to ``benchmarks/results/``.

    python benchmarks/streaming.py --cameras 100 500 1000 --duration 180

Kafka and Redis are started on free loopback ports through camtopo.operations.localstack (needs
``make setup`` once). ``--tls-compare R`` runs each size R times on a PLAINTEXT broker and R times
on a SASL_SSL one (SCRAM-SHA-512 over TLS, ACLs on: infra/kafka.sh's secured mode; the producer
and the processor log in as their roles' users), alternating, and prints the medians side by
side (streaming_tls.json; docs/security.md):

    python benchmarks/streaming.py --cameras 100 --duration 150 --tls-compare 2

``--early-close-compare R`` runs each size R times with ranges waiting Td (CAMTOPO_EARLY_CLOSE
false) and R times closing early (true), alternating, and prints the medians side by side
(streaming_early_close.json; docs/streaming.md, "Detection delay"):

    python benchmarks/streaming.py --cameras 100 500 --duration 120 --early-close-compare 2
 Everything shares the machine's cores: the producer, the broker, Redis
and the processor all run here.
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
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


# --- the producer (a child process) ---------------------------------------------------------------
def produce(args: argparse.Namespace) -> int:
    from confluent_kafka import Producer

    from camtopo.connections import kafka_config
    from camtopo.settings import get_settings
    from camtopo.simulation import Simulation
    from processors.trace import simulated_records

    sim = Simulation.from_name(args.scenario, args.n, seed=args.seed, warmup_s=60.0)
    sim.network.save(args.network)
    # kafka_config: the CAMTOPO_KAFKA_* security settings of the environment (--tls-compare).
    producer = Producer(
        kafka_config(
            get_settings(),
            "producer",
            **{
                "bootstrap.servers": args.bootstrap,
                "enable.idempotence": True,
                "linger.ms": 20,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 200_000,
            },
        )
    )
    # Capture times are "now": the simulation's t=0 is the moment production starts.
    start_wall = time.time() * 1000.0 + 2000
    offset = int(start_wall - sim.start_ms)
    n_ticks = int(args.seconds * sim.fps)
    Path(args.ready).write_text("ready")
    sent = 0
    for rec in simulated_records(sim, n_ticks, args.frames_per_record, 0, offset):
        wait = (rec.send_ms - time.time() * 1000.0) / 1000.0
        if wait > 0:
            # Real-time pace. Not flush(wait): it returns at once when nothing is queued.
            time.sleep(wait)
        producer.produce(args.topic, rec.value, rec.camera.encode())
        producer.poll(0)
        sent += 1
    producer.flush(30)
    print(json.dumps({"records_sent": sent}), flush=True)
    return 0


# --- measurement -------------------------------------------------------------------------------
@dataclass
class Sample:
    t: float
    records_in: float = 0
    frames: dict[str, float] = field(default_factory=dict)
    counted: float = 0
    occupied: float = 0  # occupied (window, tick) pairs counted: the crowd
    deferred: float = 0  # ranges whose checkpoint slice and half-edges waited (all workers)
    # per counting worker: which one is slowest changes from sample to sample, so a quantile
    # over an interval is taken per worker (the worst is reported), never across two workers
    delay_buckets: dict[str, dict[float, float]] = field(default_factory=dict)
    durable_buckets: dict[str, dict[float, float]] = field(default_factory=dict)
    rss_mb: float = 0  # all workers together
    rss_by_role: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds so far, per component
    phase_s: dict[str, float] = field(default_factory=dict)  # "worker phase": seconds so far
    engine_mb: float = 0
    redis_mb: float = 0
    # Redis AOF rewrites so far (each forks a child that dumps every row: CPU outside the
    # `redis` column), and the last one's duration: to tell its stalls from ours
    aof_rewrites: float = 0
    aof_last_rewrite_s: float = 0
    lag: float = 0
    clock_lag_s: float = 0
    range_s_sum: float = 0
    range_s_count: float = 0
    checkpoint_s_sum: float = 0
    checkpoint_s_count: float = 0
    topology_s_sum: float = 0
    topology_s_count: float = 0
    rows_written: float = 0
    unacked: float = 0


@dataclass
class Worker:
    name: str
    role: str  # single | assemble | count
    proc: subprocess.Popen[bytes]
    port: int
    log: Path


def _start_workers(
    n: int, args: argparse.Namespace, env: dict[str, str], network: Path, workdir: Path
) -> list[Worker]:
    """One single worker, or ``--assemblers`` assemblers and ``--counters`` counting workers."""
    from camtopo.operations.localstack import free_port

    roles = (
        [("single", "processor")]
        if args.counters == 0
        else [("assemble", f"assemble-{k}") for k in range(args.assemblers)]
        + [("count", f"count-{k}") for k in range(args.counters)]
    )
    out = []
    for role, name in roles:
        port = free_port()
        log = workdir / f"{name}-{n}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "camtopo.cli", "process", "--role", role,
             "--network", str(network)],
            env={**env, "CAMTOPO_PROCESSOR_METRICS_PORT": str(port)}, cwd=REPO,
            stdout=log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        out.append(Worker(name, role, proc, port, log))
    return out


def _buckets(m: dict, name: str) -> dict[float, float]:
    return {float(lab["le"]): v for lab, v in m.get(name, [])}


def _sample(
    t: float, scraped: list[tuple[Worker, dict]], rc: Any, others: dict[str, int | None]
) -> Sample:
    """One sample of the whole pipeline: input from the single worker or the assemblers,
    counting from the single worker or the *slowest* counting worker (each counts every
    frame for its rows), delay histograms of each counting worker, memory of all workers
    together."""
    taking = [m for w, m in scraped if w.role in ("single", "assemble")]
    counters = [(w, m) for w, m in scraped if w.role in ("single", "count")]
    counting = [m for _, m in counters]
    frames: dict[str, float] = {}
    for m in taking:
        for lab, v in m.get("camtopo_frames_total", []):
            frames[lab["verdict"]] = frames.get(lab["verdict"], 0) + v
    slowest = min(counting, key=lambda m: _one(m, "camtopo_frames_counted_total"))
    persistence = rc.info("persistence")
    tail = max(counting, key=lambda m: _one(m, "camtopo_range_processing_seconds_sum"))
    return Sample(
        t=t,
        records_in=sum(_one(m, "camtopo_records_in_total") for m in taking),
        frames=frames,
        counted=_one(slowest, "camtopo_frames_counted_total"),
        occupied=_one(slowest, "camtopo_occupied_windows_counted_total"),
        deferred=sum(_one(m, "camtopo_counter_deferred_ranges_total") for m in counting),
        delay_buckets={
            w.name: _buckets(m, "camtopo_detection_delay_seconds_bucket") for w, m in counters
        },
        durable_buckets={
            w.name: _buckets(m, "camtopo_durable_delay_seconds_bucket") for w, m in counters
        },
        rss_mb=sum(rss_mb(w.proc.pid) for w, _ in scraped),
        rss_by_role={
            role: sum(rss_mb(w.proc.pid) for w, _ in scraped if w.role == role)
            for role in {w.role for w, _ in scraped}
        },
        cpu_s={
            "machine": machine_cpu_seconds(),
            **{w.name: cpu_seconds(w.proc.pid) for w, _ in scraped},
            **{name: cpu_seconds(pid) for name, pid in others.items() if pid is not None},
        },
        phase_s={
            f"{w.name} {lab['phase']}": v
            for w, m in scraped
            for lab, v in m.get("camtopo_counter_phase_seconds_total", [])
        },
        engine_mb=sum(_one(m, "camtopo_engine_bytes") for m in counting) / 2**20,
        redis_mb=int(rc.info("memory")["used_memory"]) / 2**20,
        aof_rewrites=float(persistence.get("aof_rewrites", 0)),
        aof_last_rewrite_s=float(persistence.get("aof_last_rewrite_time_sec", 0)),
        lag=sum(_one(m, "camtopo_consumer_lag_records") for m in taking),
        clock_lag_s=max(_one(m, "camtopo_processor_clock_lag_seconds") for m in taking),
        range_s_sum=_one(tail, "camtopo_range_processing_seconds_sum"),
        range_s_count=_one(tail, "camtopo_range_processing_seconds_count"),
        checkpoint_s_sum=sum(_one(m, "camtopo_store_checkpoint_seconds_sum") for m in counting),
        checkpoint_s_count=sum(_one(m, "camtopo_store_checkpoint_seconds_count") for m in counting),
        topology_s_sum=sum(_one(m, "camtopo_store_topology_update_seconds_sum") for m in counting),
        topology_s_count=sum(
            _one(m, "camtopo_store_topology_update_seconds_count") for m in counting
        ),
        rows_written=sum(_one(m, "camtopo_store_rows_written_total") for m in counting),
        unacked=sum(_one(m, "camtopo_unacked_records") for m in taking),
    )


def scrape_workers(
    workers: list[Worker],
) -> list[tuple[Worker, dict[str, list[tuple[dict[str, str], float]]]]] | None:
    """Every worker's metrics, None while a metrics server is not up yet; a worker that has
    exited stops the run, naming its log."""
    for w in workers:
        if w.proc.poll() is not None:
            raise RuntimeError(f"{w.name} exited {w.proc.returncode}; see {w.log}")
    try:
        return [(w, scrape(w.port)) for w in workers]
    except OSError:
        return None


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _one(m: dict, name: str) -> float:
    return sum(v for _, v in m.get(name, []))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (all cores, every process)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def quantile(buckets: dict[float, float], q: float) -> float:
    """From cumulative histogram buckets (le -> count), linear inside the bucket."""
    items = sorted(buckets.items())
    total = items[-1][1] if items else 0
    if total <= 0:
        return float("nan")
    target = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in items:
        if c >= target:
            if le == float("inf"):
                return prev_le
            frac = (target - prev_c) / max(c - prev_c, 1e-9)
            return prev_le + frac * (le - prev_le)
        prev_le, prev_c = le, c
    return prev_le


@dataclass
class Secured:
    """A SASL_SSL broker's logins (--tls-compare): the admin's librdkafka configuration and
    the CAMTOPO_KAFKA_* variables of the producer's and the processor's users."""

    admin: dict[str, Any]
    admin_env: dict[str, str]
    producer_env: dict[str, str]
    worker_env: dict[str, str]


def _settings_of(env: dict[str, str]) -> Any:
    """Settings as a process with ``env`` reads them (whatever their layout)."""
    from unittest import mock

    from camtopo.settings import Settings

    with mock.patch.dict(os.environ, env, clear=True):
        return Settings()


def secure(kafka, workdir: Path) -> Secured:
    """Users ``producer`` and ``single`` on the secured ``kafka``; ACLs per run (grant)."""
    import secrets

    from camtopo.connections import kafka_config
    from processors.acls import create_users

    sec = kafka.security
    passwords = {"producer": secrets.token_urlsafe(18), "single": secrets.token_urlsafe(18)}

    def env(user: str, password: str) -> dict[str, str]:
        return {
            "CAMTOPO_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "CAMTOPO_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CAMTOPO_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "CAMTOPO_KAFKA_USERNAME": user,
            "CAMTOPO_KAFKA_PASSWORD": password,
            "CAMTOPO_KAFKA_CA_FILE": str(sec.tls_ca_file),
        }

    admin_env = env(sec.admin, sec.admin_password_file.read_text().strip())
    admin = _settings_of(admin_env)
    create_users(admin, passwords)
    return Secured(
        kafka_config(admin, "admin", log_level=0),
        admin_env,
        env("producer", passwords["producer"]),
        env("single", passwords["single"]),
    )


def secured_kafka(workdir: Path):
    """infra/kafka.sh's secured mode with a CA and certificate made by infra/certs.sh."""
    import secrets

    from camtopo.operations.localstack import KafkaCluster, KafkaSecurity

    tls = workdir / "tls"
    subprocess.run([str(REPO / "infra" / "certs.sh"), str(tls), "kafka"], check=True)
    password = tls / "admin.pw"
    password.write_text(secrets.token_hex(16))
    password.chmod(0o600)
    security = KafkaSecurity(tls / "kafka.crt", tls / "kafka.key", tls / "ca.crt", password)
    return KafkaCluster(data_dir=workdir / "kafka-tls", security=security).start()


def run_size(
    n: int,
    args: argparse.Namespace,
    kafka,
    redis_server,
    workdir: Path,
    secured: Secured | None = None,
    extra_env: dict[str, str] | None = None,
) -> dict:
    import redis as redis_lib
    from confluent_kafka.admin import AdminClient, NewTopic

    tag = f"bench{n}-{int(time.time())}"
    topic = f"occupancy-{tag}"
    admin = AdminClient(secured.admin if secured else {"bootstrap.servers": kafka.bootstrap})
    topics = [
        NewTopic(topic, 8, 1),
        NewTopic(f"dead-{tag}", 1, 1),
        NewTopic(f"changes-{tag}", 4, 1),
    ]
    for fut in admin.create_topics(topics).values():
        fut.result(60)
    db = 1 + (n % 14)
    redis_url = f"redis://127.0.0.1:{redis_server.port}/{db}"
    rc = redis_lib.Redis.from_url(redis_url)
    rc.flushdb()
    env = dict(os.environ)
    env.update(
        CAMTOPO_KAFKA_BOOTSTRAP=kafka.bootstrap,
        CAMTOPO_OCCUPANCY_TOPIC=topic,
        CAMTOPO_DEAD_LETTER_TOPIC=f"dead-{tag}",
        CAMTOPO_TOPOLOGY_CHANGES_TOPIC=f"changes-{tag}",
        CAMTOPO_REDIS_URL=redis_url,
        CAMTOPO_PROCESSOR_GROUP=f"proc-{tag}",
        CAMTOPO_CHECKPOINT_SPREAD_RANGES=str(args.checkpoint_spread),
        CAMTOPO_COUNTER_CHECKPOINT_SPREAD_RANGES=str(args.counter_checkpoint_spread),
        CAMTOPO_ASSEMBLER_GROUP=f"asm-{tag}",
        CAMTOPO_COUNTER_GROUP=f"cnt-{tag}",
        CAMTOPO_RANGES_TOPIC=f"ranges-{tag}",
        CAMTOPO_COUNTER_SHARDS_TOPIC=f"shards-{tag}",
    )
    env.update(extra_env or {})
    producer_env, worker_env = env, env
    if secured is not None:
        from processors.acls import grant_roles

        names = {k: v for k, v in env.items() if k.endswith(("_TOPIC", "_GROUP"))}
        grant_roles(
            _settings_of(secured.admin_env | names), {"producer": "producer", "single": "single"}
        )
        producer_env, worker_env = env | secured.producer_env, env | secured.worker_env
    network = workdir / f"network-{n}.json"
    ready = workdir / f"ready-{n}"
    producer = subprocess.Popen(
        [sys.executable, __file__, "--produce", "--n", str(n), "--bootstrap", kafka.bootstrap,
         "--topic", topic, "--network", str(network), "--ready", str(ready),
         "--seconds", str(args.duration + 10), "--frames-per-record", str(args.frames_per_record),
         "--scenario", args.scenario],
        env=producer_env, cwd=REPO,
    )  # fmt: skip
    while not ready.exists():
        if producer.poll() is not None:
            raise RuntimeError("the producer exited before it was ready")
        time.sleep(0.2)
    workers = _start_workers(n, args, worker_env, network, workdir)
    samples: list[Sample] = []
    others = {"producer": producer.pid, "kafka": kafka.pid(), "redis": redis_server.pid()}
    t0 = time.time()
    from tqdm import tqdm

    try:
        with tqdm(total=args.duration, desc=f"{n} cameras", unit="s") as bar:
            while time.time() - t0 < args.duration:
                time.sleep(args.sample_every)
                bar.update(min(args.sample_every, args.duration - bar.n))
                scraped = scrape_workers(workers)
                if scraped is not None:
                    samples.append(_sample(time.time() - t0, scraped, rc, others))
    finally:
        producer.terminate()
        for w in workers:
            w.proc.terminate()
        for p in [producer] + [w.proc for w in workers]:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
    result = summarise(n, samples, args)
    result["kafka_security"] = "SASL_SSL" if secured else "PLAINTEXT"
    result["early_close"] = env.get("CAMTOPO_EARLY_CLOSE", "false").lower() not in ("0", "false")
    result["loadavg_end"] = os.getloadavg()  # the machine is shared: how busy it was
    return result


def _delta(later: dict, earlier: dict) -> dict[float, float]:
    """Histogram buckets of what happened between two samples (keys are text after JSON)."""
    return {float(le): later[le] - earlier.get(le, 0) for le in later}


def worst(later: dict, earlier: dict, q: float) -> float:
    """The ``q`` quantile between two samples of the counting worker where it is highest."""
    if later and not isinstance(next(iter(later.values())), dict):  # results before round 4
        later, earlier = {"slowest": later}, {"slowest": earlier}
    values = [quantile(_delta(b, earlier.get(w, {})), q) for w, b in later.items()]
    return max((v for v in values if not math.isnan(v)), default=float("nan"))


def late_share(before: dict, after: dict, empty: float = 0.0) -> float:
    """Frames judged late or closed (dropped) among the frames with data in between, from two
    samples' ``frames`` counters by verdict."""
    frames = sum(after.values()) - sum(before.values())
    dropped = lambda f: f.get("late", 0) + f.get("closed", 0)  # noqa: E731
    return (dropped(after) - dropped(before)) / frames if frames else empty


def crowd(occupied: float, counted: float, empty: float = 0.0) -> float:
    """Occupied windows per frame counted between two samples (differences): a crowd surge
    shows here, and in the counting work."""
    return occupied / counted if counted else empty


def summarise(n: int, samples: list[Sample], args: argparse.Namespace) -> dict:
    if len(samples) < 3:
        return {"cameras": n, "error": "too few samples"}
    warm = [s for s in samples if s.t >= args.warmup] or samples
    a, b = warm[0], warm[-1]
    span = max(b.t - a.t, 1e-9)
    frames_in = sum(b.frames.values()) - sum(a.frames.values())
    per_minute, p99_per_minute, crowd_per_minute, aof_per_minute = [], [], [], []
    for k in range(int(samples[-1].t // 60) + 1):
        inside = [s for s in samples if k * 60 <= s.t < (k + 1) * 60 + 1e-9]
        if len(inside) >= 2:
            p, q = inside[0], inside[-1]
            per_minute.append(late_share(p.frames, q.frames))
            p99_per_minute.append(worst(q.delay_buckets, p.delay_buckets, 0.99))
            crowd_per_minute.append(crowd(q.occupied - p.occupied, q.counted - p.counted))
            aof_per_minute.append(q.aof_rewrites - p.aof_rewrites)
    return {
        "cameras": n,
        "workers": "single" if args.counters == 0 else f"{args.assemblers}+{args.counters}",
        "redis_config": args.redis_config,
        "expected_frames_per_s": n * 10,
        "frames_in_per_s": frames_in / span,
        "frames_counted_per_s": (b.counted - a.counted) / span,
        "records_in_per_s": (b.records_in - a.records_in) / span,
        "late_fraction": late_share(a.frames, b.frames, empty=float("nan")),
        "late_per_minute": per_minute,
        "delay_p99_per_minute": p99_per_minute,
        # occupied windows per frame counted: a crowd surge shows here (and in the work)
        "occupied_per_frame_per_minute": crowd_per_minute,
        "aof_rewrites_per_minute": aof_per_minute,
        "deferred_ranges": b.deferred - a.deferred,
        "delay_p50_s": worst(b.delay_buckets, a.delay_buckets, 0.5),
        "delay_p99_s": worst(b.delay_buckets, a.delay_buckets, 0.99),
        "durable_p50_s": worst(b.durable_buckets, a.durable_buckets, 0.5),
        "durable_p99_s": worst(b.durable_buckets, a.durable_buckets, 0.99),
        "range_seconds_mean": (b.range_s_sum - a.range_s_sum)
        / max(b.range_s_count - a.range_s_count, 1),
        "checkpoint_seconds_mean": (b.checkpoint_s_sum - a.checkpoint_s_sum)
        / max(b.checkpoint_s_count - a.checkpoint_s_count, 1),
        "checkpoints_per_s": (b.checkpoint_s_count - a.checkpoint_s_count) / span,
        "rows_per_checkpoint": (b.rows_written - a.rows_written)
        / max(b.checkpoint_s_count - a.checkpoint_s_count, 1),
        "topology_seconds_mean": (b.topology_s_sum - a.topology_s_sum)
        / max(b.topology_s_count - a.topology_s_count, 1),
        "lag_last_records": warm[-1].lag,
        "rss_mb_first": warm[0].rss_mb,
        "rss_mb_last": warm[-1].rss_mb,
        "rss_mb_max": max(s.rss_mb for s in samples),
        "rss_mb_by_role_last": warm[-1].rss_by_role,
        # where the machine's cores go after warm-up (cores = CPU seconds per wall second)
        "cores_by_component": {
            name: (b.cpu_s.get(name, 0.0) - a.cpu_s.get(name, 0.0)) / span for name in b.cpu_s
        },
        # a counting worker's busy share per phase (seconds per wall second) after warm-up
        "phase_share": {
            name: (b.phase_s.get(name, 0.0) - a.phase_s.get(name, 0.0)) / span for name in b.phase_s
        },
        "engine_mb_last": warm[-1].engine_mb,
        "redis_mb_first": warm[0].redis_mb,
        "redis_mb_last": warm[-1].redis_mb,
        "lag_max_records": max(s.lag for s in warm),
        "clock_lag_s_max": max(s.clock_lag_s for s in warm),
        "samples": [asdict(s) for s in samples],
    }


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3, ax4, ax5) = plt.subplots(5, 1, figsize=(9, 13), sharex=True)
    for r in results:
        if "samples" not in r:
            continue
        ss = r["samples"]
        t = [s["t"] / 60 for s in ss]
        # late fraction over each sampling interval (finer than per minute, same quantity)
        lf = [100 * late_share(p["frames"], q["frames"]) for p, q in itertools.pairwise(ss)]
        what = f"{r['cameras']} cameras, {r.get('workers', 'single')}"
        if "early_close" in r:
            what += ", early close" if r["early_close"] else ", Td"
        ax1.plot(t[1:], lf, label=what)
        ax2.plot(t, [s["rss_mb"] for s in ss], label=f"workers' RSS, {what}")
        ax2.plot(t, [s["redis_mb"] for s in ss], "--", label=f"Redis, {what}")
        ax3.plot(t, [s["lag"] for s in ss], label=what)
        # Detection delay of the frames counted in each sampling interval: a pipeline that
        # falls behind shows here first.
        for q, style in ((0.5, "-"), (0.99, ":")):
            delays = [
                worst(b["delay_buckets"], a["delay_buckets"], q) for a, b in itertools.pairwise(ss)
            ]
            ax4.plot(t[1:], delays, style, label=f"p{round(q * 100)}, {what}")
        # Redis AOF rewrites (a forked child dumps every row) started in these intervals
        rewrites = [b["t"] / 60 for a, b in itertools.pairwise(ss)
                    if b.get("aof_rewrites", 0) > a.get("aof_rewrites", 0)]  # fmt: skip
        for k, x in enumerate(rewrites):
            ax4.axvline(x, color="tab:red", lw=0.5, alpha=0.5,
                        label="Redis AOF rewrite" if k == 0 else None)  # fmt: skip
        per_frame = [
            crowd(b.get("occupied", 0) - a.get("occupied", 0), b["counted"] - a["counted"],
                  empty=float("nan"))
            for a, b in itertools.pairwise(ss)
        ]  # fmt: skip
        ax5.plot(t[1:], per_frame, label=what)
    ax1.set_ylabel("late data (%)")
    ax1.set_title("Late data and memory over time (cf. paper Figure 5)")
    ax1.legend()
    ax2.set_ylabel("memory (MB)")
    ax2.legend(fontsize=7)
    ax3.set_ylabel("consumer lag (records)")
    ax3.legend(fontsize=7)
    ax4.set_ylabel("detection delay (s)")
    ax4.set_yscale("log")
    ax4.axhline(10, color="grey", lw=0.8, ls="--")  # the p99 target
    ax4.legend(fontsize=7)
    ax5.set_ylabel("occupied windows\nper frame (crowd)")
    ax5.set_xlabel("minutes")
    ax5.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_delay_compare(results: list[dict], path: Path) -> None:
    """Detection delay p50 / p99 per sampling interval, waiting Td against closing early."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["cameras"] for r in results if "samples" in r})
    fig, axes = plt.subplots(len(sizes), 1, figsize=(9, 3.2 * len(sizes)), squeeze=False)
    for ax, n in zip(axes[:, 0], sizes, strict=True):
        for r in (r for r in results if r["cameras"] == n and "samples" in r):
            ss = r["samples"]
            t = [s["t"] for s in ss[1:]]
            color = "tab:green" if r.get("early_close") else "tab:grey"
            for q, style in ((0.5, "-"), (0.99, ":")):
                delays = [worst(b["delay_buckets"], a["delay_buckets"], q)
                          for a, b in itertools.pairwise(ss)]  # fmt: skip
                ax.plot(t, delays, style, color=color, lw=1)
        ax.plot([], [], color="tab:grey", label="waiting Td (p50 solid, p99 dotted)")
        ax.plot([], [], color="tab:green", label="early close")
        ax.axhline(4 if n <= 500 else 5, color="tab:red", lw=0.8, ls="--", label="p99 target")
        ax.set_title(f"{n} cameras: detection delay per sampling interval")
        ax.set_ylabel("seconds")
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("seconds into the run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def tls_comparison(
    results: list[dict],
    key: str = "kafka_security",
    modes: tuple[Any, Any] = ("PLAINTEXT", "SASL_SSL"),
) -> dict[str, dict[str, dict[str, float]]]:
    """Per camera count and mode (``key`` of each result: Kafka security, or early close):
    the medians over the runs of the figures the mode could change, and their ratios."""
    import statistics

    figures = ("frames_in_per_s", "frames_counted_per_s", "delay_p50_s", "delay_p99_s",
               "durable_p99_s", "late_fraction", "lag_max_records")  # fmt: skip
    out: dict[str, dict[str, dict[str, float]]] = {}
    for n in sorted({r["cameras"] for r in results}):
        by = {}
        for mode in modes:
            runs = [r for r in results if r["cameras"] == n and r.get(key) == mode]
            runs = [r for r in runs if "error" not in r]
            if not runs:
                continue
            med = {f: statistics.median(r[f] for r in runs) for f in figures}
            for part in ("producer", "kafka", "processor"):
                med[f"cores_{part}"] = statistics.median(
                    sum(v for k, v in r["cores_by_component"].items() if k.startswith(part))
                    for r in runs
                )
            med["runs"] = len(runs)
            med["machine_cores_busy"] = statistics.median(
                r["cores_by_component"].get("machine", float("nan")) for r in runs
            )
            by[str(mode)] = med
        if len(by) == 2:
            plain, tls = by[str(modes[0])], by[str(modes[1])]
            by["ratio"] = {
                f: tls[f] / plain[f] for f in plain if f != "runs" and plain[f] not in (0, None)
            }
        out[str(n)] = by
    return out


def print_tls_comparison(results: list[dict], args: argparse.Namespace) -> None:
    if args.early_close_compare:
        key, modes, runs = "early_close", (False, True), args.early_close_compare
        title, heads = "ranges waiting Td vs early close", ("Td", "early")
    else:
        key, modes, runs = "kafka_security", ("PLAINTEXT", "SASL_SSL"), args.tls_compare
        title, heads = "PLAINTEXT vs SASL_SSL", ("PLAINTEXT", "SASL_SSL")
    table = tls_comparison(results, key, modes)
    (RESULTS / f"streaming{args.tag}_summary.json").write_text(json.dumps(table, indent=1))
    print(f"\n{title} (medians of {runs} runs each, alternating)")
    for n, by in table.items():
        print(f"{n} cameras")
        names = [k for k in by.get(str(modes[0]), {}) if k != "runs"]
        print(f"{'':>22} {heads[0]:>10} {heads[1]:>10} {'ratio':>7}")
        for name in names:
            row = [by.get(str(m), {}).get(name, float("nan")) for m in modes]
            ratio = by.get("ratio", {}).get(name, float("nan"))
            print(f"{name:>22} {row[0]:>10.4g} {row[1]:>10.4g} {ratio:>7.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cameras", type=int, nargs="+", default=[100, 500, 1000])
    ap.add_argument("--duration", type=float, default=180.0, help="seconds per size")
    ap.add_argument("--warmup", type=float, default=30.0, help="seconds left out of the rates")
    ap.add_argument("--sample-every", type=float, default=5.0)
    ap.add_argument("--frames-per-record", type=int, default=5)
    ap.add_argument("--scenario", default="campus")
    ap.add_argument("--tag", default="", help="suffix of the result files (streaming<tag>.json)")
    ap.add_argument(
        "--checkpoint-spread", type=int, default=10, help="CAMTOPO_CHECKPOINT_SPREAD_RANGES"
    )
    ap.add_argument(
        "--counter-checkpoint-spread", type=int, default=60,
        help="CAMTOPO_COUNTER_CHECKPOINT_SPREAD_RANGES (partitioned runs)",
    )  # fmt: skip
    ap.add_argument(
        "--counters",
        type=int,
        default=0,
        help="counting workers of the partitioned pipeline; 0 = one single worker",
    )
    ap.add_argument("--assemblers", type=int, default=1, help="assembler workers (with --counters)")
    ap.add_argument(
        "--tls-compare", type=int, default=0, metavar="R",
        help="R runs per size on a PLAINTEXT and R on a SASL_SSL broker, alternating; medians "
        "side by side (result file streaming_tls<tag>.json)",
    )  # fmt: skip
    ap.add_argument(
        "--early-close-compare", type=int, default=0, metavar="R",
        help="R runs per size waiting Td and R closing early, alternating; medians side by "
        "side (result file streaming_early_close<tag>.json)",
    )  # fmt: skip
    # producer mode (internal)
    ap.add_argument("--produce", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--bootstrap", help=argparse.SUPPRESS)
    ap.add_argument("--topic", help=argparse.SUPPRESS)
    ap.add_argument("--network", help=argparse.SUPPRESS)
    ap.add_argument("--ready", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--replot", action="store_true", help="redraw streaming<tag>.png only")
    ap.add_argument(
        "--redis-config", action="append", default=[], metavar="NAME=VALUE",
        help="CONFIG SET on the benchmark's Redis before the run (e.g. "
        "auto-aof-rewrite-percentage=400); repeatable",
    )  # fmt: skip
    args = ap.parse_args()
    if args.produce:
        return produce(args)
    if args.replot:
        out = RESULTS / f"streaming{args.tag}"
        results = json.loads(out.with_suffix(".json").read_text())
        plot(results, out.with_suffix(".png"))
        if any("early_close" in r for r in results):
            plot_delay_compare(results, RESULTS / f"streaming{args.tag}_delay.png")
        return 0

    from camtopo.operations.localstack import KafkaCluster, RedisServer

    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="camtopo-bench-"))
    kafka = KafkaCluster(data_dir=workdir / "kafka").start()
    redis_server = RedisServer(data_dir=workdir / "redis").start()
    if args.redis_config:
        import redis

        admin = redis.Redis.from_url(redis_server.url)
        for item in args.redis_config:
            name, _, value = item.partition("=")
            admin.config_set(name, value)
    results = []
    tls_kafka = None
    if args.tls_compare:
        args.tag = f"_tls{args.tag}"
    if args.early_close_compare:
        args.tag = f"_early_close{args.tag}"
    try:
        if args.tls_compare:
            tls_kafka = secured_kafka(workdir)
            secured = secure(tls_kafka, workdir)
        for n in args.cameras:
            for _ in range(args.early_close_compare):
                for on in ("false", "true"):
                    env = {"CAMTOPO_EARLY_CLOSE": on}
                    results.append(run_size(n, args, kafka, redis_server, workdir, extra_env=env))
                    out = RESULTS / f"streaming{args.tag}.json"
                    out.write_text(json.dumps(results, indent=1))
            for _ in range(0 if args.early_close_compare else max(args.tls_compare, 1)):
                results.append(run_size(n, args, kafka, redis_server, workdir))
                if args.tls_compare:
                    results.append(
                        run_size(n, args, tls_kafka, redis_server, workdir, secured=secured)
                    )
                out = RESULTS / f"streaming{args.tag}.json"
                out.write_text(json.dumps(results, indent=1))
    finally:
        for k in (kafka, tls_kafka):
            if k is not None:
                k.stop()
        redis_server.stop()
        # Kafka's log and Redis's AOF reach several GB at 1,000 cameras: a run must not fill
        # the disk of the next (the workers' logs stay, for a look after a failure).
        for data in ("kafka", "kafka-tls", "redis"):
            shutil.rmtree(workdir / data, ignore_errors=True)
        print(f"workers' logs: {workdir}")
    if args.tls_compare or args.early_close_compare:
        print_tls_comparison(results, args)
    print(
        f"\nwhole system, {args.duration:.0f} s per size (rates after {args.warmup:.0f} s "
        f"warm-up), checkpoints spread over {args.checkpoint_spread} range(s) (single worker) / "
        f"{args.counter_checkpoint_spread} (counting workers)"
    )
    head = (
        f"{'cameras':>7} {'workers':>7} {'frames/s in':>11} {'expected':>8} {'counted/s':>9} "
        f"{'late %':>7} "
        f"{'p50 s':>6} {'p99 s':>6} {'durable p99':>11} {'range s':>7} {'ckpt s':>6} "
        f"{'rows/ckpt':>9} {'RSS MB':>13} "
        f"{'Redis MB':>13} {'lag max':>7} {'lag end':>7}"
    )
    print(head)
    for r in results:
        if args.tls_compare:
            print(f"{'':>7} {r['kafka_security']}:")
        if args.early_close_compare:
            print(f"{'':>7} {'early close' if r['early_close'] else 'waiting Td'}:")
        if "error" in r:
            print(f"{r['cameras']:>7} {r['error']}")
            continue
        print(
            f"{r['cameras']:>7} {r['workers']:>7} {r['frames_in_per_s']:>11.0f} "
            f"{r['expected_frames_per_s']:>8} "
            f"{r['frames_counted_per_s']:>9.0f} {100 * r['late_fraction']:>7.3f} "
            f"{r['delay_p50_s']:>6.2f} {r['delay_p99_s']:>6.2f} {r['durable_p99_s'] or 0:>11.2f} "
            f"{r['range_seconds_mean']:>7.3f} "
            f"{r['checkpoint_seconds_mean']:>6.3f} {r['rows_per_checkpoint']:>9.0f} "
            f"{r['rss_mb_first']:>6.0f}->{r['rss_mb_last']:<6.0f} "
            f"{r['redis_mb_first']:>6.1f}->{r['redis_mb_last']:<6.1f} {r['lag_max_records']:>7.0f} "
            f"{r['lag_last_records']:>7.0f}"
        )
        cores = r.get("cores_by_component", {})
        if cores:
            phases = r.get("phase_share", {})
            if phases:
                print(
                    f"{'':>7} counting workers' time per wall second: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in sorted(phases.items()))
                )
            parts = {k: v for k, v in cores.items() if k != "machine"}
            print(
                f"{'':>7} cores busy: machine {cores.get('machine', float('nan')):.2f} of "
                f"{os.cpu_count()}; " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(parts.items()))
            )
    plot(results, RESULTS / f"streaming{args.tag}.png")
    if args.early_close_compare:
        plot_delay_compare(results, RESULTS / f"streaming{args.tag}_delay.png")
    out = RESULTS / f"streaming{args.tag}"
    print(f"wrote {out}.json and {out}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
