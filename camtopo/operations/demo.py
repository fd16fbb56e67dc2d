"""``camtopo demo``: the main job on an embedded default — a simulated plaza, end to end.

1. simulate a campus with ground truth (``camtopo simulate``);
2. estimate its topology offline, score it against the truth, draw it (``estimate``,
   ``score``, ``render``);
3. unless ``--offline-only``: start the local Kafka and Redis (``infra/``), run the streaming
   processor, the query service, the consumer-lag exporter and Prometheus with the alert rules,
   and play the same simulated cameras into Kafka at real-time pace (``produce --simulate``);
   the live viewer shows the topology as it is learnt; at the end the streamed topology is
   scored against the truth beside the offline one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="simulated campus through the whole pipeline")
    # A plaza: busy and overlapping, so a few streamed minutes already show a topology.
    p.add_argument("--scenario", default="plaza")
    p.add_argument("--cameras", type=int, default=20)
    p.add_argument("--minutes", type=float, default=20.0, help="simulated minutes offline")
    p.add_argument("--stream-minutes", type=float, default=4.0, help="real-time minutes streamed")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("out/demo"))
    p.add_argument("--offline-only", action="store_true", help="skip Kafka/Redis/streaming")
    p.add_argument("--keep-serving", action="store_true", help="keep the viewer up at the end")
    p.set_defaults(func=run)


def step(n: int, text: str) -> None:
    print(f"\n[{n}/4] {text}", flush=True)


def camtopo(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([sys.executable, "-m", "camtopo.cli", *args], check=True, env=env)


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    step(1, f"simulating {args.cameras} cameras ({args.scenario}) for {args.minutes:g} min")
    camtopo("simulate", "--scenario", args.scenario, "--cameras", str(args.cameras),
            "--duration", str(args.minutes * 60), "--seed", str(args.seed), "--out", str(out),
            "--render-map")  # fmt: skip
    step(2, "estimating the topology offline, scoring it against the truth, drawing it")
    topo = out / "topology.json"
    camtopo("estimate", str(out / "occupancy.jsonl"), "-o", str(topo), "--snapshot-every", "60")
    camtopo("score", str(topo), str(out / "truth.json"), "--json", str(out / "score.json"))
    camtopo("render", str(topo))
    print(f"pictures: {out / 'map.png'} (the world), {topo.with_suffix('.png')} (the topology)")
    if args.offline_only:
        return 0
    return stream(args, out, json.loads(topo.read_text()))


def stream(args: argparse.Namespace, out: Path, offline: dict[str, Any]) -> int:
    from camtopo.operations.localstack import KafkaCluster, RedisServer, free_port
    from camtopo.settings import get_settings

    settings = get_settings()
    step(3, "starting Kafka and Redis (infra/), the processor and the query service")
    # Fresh services on free ports and temporary data: a demo never mixes with an old run.
    kafka = KafkaCluster()
    redis = RedisServer()
    procs: list[subprocess.Popen[bytes]] = []
    http_port = free_port()
    metrics = {  # Prometheus job -> port, as in infra/prometheus/prometheus.yml
        "camtopo-processor": free_port(),
        "camtopo-query": http_port,
        "camtopo-producers": free_port(),
        "camtopo-lag": free_port(),
    }
    env = dict(os.environ)
    env.update(
        CAMTOPO_KAFKA_BOOTSTRAP=kafka.bootstrap,
        CAMTOPO_REDIS_URL=redis.url,
        CAMTOPO_HTTP_PORT=str(http_port),
        CAMTOPO_PROCESSOR_METRICS_PORT=str(metrics["camtopo-processor"]),
        CAMTOPO_PRODUCER_METRICS_PORT=str(metrics["camtopo-producers"]),
        CAMTOPO_LAG_EXPORTER_PORT=str(metrics["camtopo-lag"]),
    )
    try:
        kafka.start()
        redis.start()
        kafka.create_topic(
            settings.kafka.occupancy_topic, partitions=settings.kafka.occupancy_partitions
        )
        for topic in (settings.kafka.topology_changes_topic, settings.kafka.dead_letter_topic):
            kafka.create_topic(topic, partitions=1)
        cli = [sys.executable, "-m", "camtopo.cli"]
        procs.append(subprocess.Popen([*cli, "process", "--network", str(out / "network.json")],
                                      env=env))  # fmt: skip
        procs.append(subprocess.Popen([*cli, "serve", "--network", str(out / "network.json")],
                                      env=env))  # fmt: skip
        procs.append(subprocess.Popen([*cli, "lag-exporter"], env=env))
        prometheus = _start_prometheus(metrics, out)
        if prometheus is not None:
            procs.append(prometheus[0])
        url = f"http://{settings.service.host}:{http_port}/"
        _wait_http(url + "healthz", 60)
        print(f"live viewer: {url}  (API: {url}openapi.json, metrics: {url}metrics)")
        if prometheus is not None:
            print(f"Prometheus with the alert rules: {prometheus[1]}alerts")
        step(4, f"streaming {args.cameras} simulated cameras at real-time pace for "
                f"{args.stream_minutes:g} min")  # fmt: skip
        camtopo("produce", "--simulate", "--scenario", args.scenario,
                "--cameras", str(args.cameras), "--seed", str(args.seed),
                "--duration", str(args.stream_minutes * 60), env=env)  # fmt: skip
        time.sleep(settings.processor.range_seconds + settings.processor.late_cutoff_seconds + 3)
        streamed = _get_json(url + "api/graph")
        truth = json.loads((out / "truth.json").read_text())
        _compare(offline, streamed, truth, args.stream_minutes, args.minutes)
        if args.keep_serving:
            print(f"serving {url} — Ctrl-C to stop")
            signal.pause()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        redis.stop()
        kafka.stop()
    return 0


def _start_prometheus(
    jobs: dict[str, int], out: Path
) -> tuple[subprocess.Popen[bytes], str] | None:
    """Debian's Prometheus (installed by infra/setup.sh) scraping every component, with
    infra/prometheus/alerts.yml loaded; None (with a note) where it is not installed."""
    import shutil

    from camtopo.operations.localstack import INFRA_DIR, free_port

    binary = shutil.which("prometheus")
    if binary is None:
        print("prometheus is not installed (make setup installs it): no alerts in this demo")
        return None
    rules = INFRA_DIR / "prometheus" / "alerts.yml"  # package data, installed or not
    config = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            for job, port in jobs.items()
        ],
    }
    (out / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={out / 'prometheus.yml'}",
         f"--storage.tsdb.path={out / 'prometheus-data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}/"


def _wait_http(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {seconds:.0f} s") from None
            time.sleep(0.5)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _compare(
    offline: dict[str, Any],
    streamed: Any,
    truth: dict[str, Any],
    stream_min: float,
    offline_min: float,
) -> None:
    from camtopo.evaluation.score import score_sets

    edges = streamed.get("edges", streamed.get("camera_edges", []))
    live = score_sets([], [(e["a"], e["b"], e["kind"]) for e in edges], truth)["camera"]
    off = score_sets([], [(e["a"], e["b"], e["kind"]) for e in offline["camera_edges"]], truth)
    print(
        f"streamed topology after {stream_min:g} min: {live.estimated} camera links, precision "
        f"{live.precision:.2f}, recall {live.recall:.2f}; offline after {offline_min:g} min: "
        f"{off['camera'].estimated} links, precision {off['camera'].precision:.2f}, recall "
        f"{off['camera'].recall:.2f}"
    )
