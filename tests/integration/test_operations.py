"""Operations end to end: a REAL Prometheus (Debian's package) scrapes every component.

Real Kafka and Redis (fixtures), the processor, the producers, the query service and the lag
exporter each started through their ``camtopo`` sub-command, and ``prometheus`` on a free
loopback port scraping them every second with ``infra/prometheus/alerts.yml`` loaded. Asserted
through Prometheus' HTTP API: every target up, the lag of a group with known committed offsets
exactly, each component's series, every dashboard query valid, the rules healthy and the
dead-letter alert firing after one undecodable record. ``promtool`` checks and unit-tests the
rules (``infra/prometheus/alerts_test.yml``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from camtopo.operations.localstack import KafkaCluster, RedisServer, free_port

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
PROM_DIR = REPO / "infra" / "prometheus"
DASHBOARD = REPO / "infra" / "grafana" / "dashboards" / "camtopo.json"
CAMERAS = 6
PRODUCE_SECONDS = 45


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: run `make setup` (infra/setup.sh installs prometheus)")
    return path


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def _wait(what: str, check: Callable[[], Any], seconds: float, procs: list[Any] = ()) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` and the last error."""
    deadline = time.monotonic() + seconds
    last: object = None
    while time.monotonic() < deadline:
        for proc, log in procs:
            if proc.poll() is not None:
                pytest.fail(f"{log.name} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            result = check()
            if result:
                return result
            last = result
        except Exception as exc:  # not up yet: keep polling
            last = exc
        time.sleep(0.5)
    pytest.fail(f"timed out after {seconds:.0f} s waiting for {what}; last: {last!r}")


class Prom:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.base}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        body = json.loads(_get(url))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]

    def values(self, expr: str, label: str) -> dict[str, float]:
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(expr)}


class Services:
    """Subprocesses started through the CLI, each logging to its own file; stopped at the end."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp = tmp
        self.env = env
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, *argv: str, camtopo: bool = True) -> None:
        log = self.tmp / f"{name}.log"
        cmd = [sys.executable, "-m", "camtopo.cli", *argv] if camtopo else list(argv)
        # cwd = tmp: Faust writes its data folder in the working directory.
        proc = subprocess.Popen(
            cmd, env=self.env, cwd=self.tmp, stdout=log.open("ab"), stderr=subprocess.STDOUT
        )
        self.procs.append((proc, log))

    def stop(self) -> None:
        for proc, _ in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    svc = Services(tmp_path, dict(os.environ))
    yield svc
    svc.stop()


def _committed_lag(kafka: KafkaCluster, topic: str, group: str, records: int) -> dict[str, int]:
    """Produce ``records`` keyed records, commit a third of each partition for ``group``.

    Returns the expected lag per partition (high watermark - committed), from delivery reports.
    """
    per_partition: dict[int, int] = {}

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        per_partition[msg.partition()] = per_partition.get(msg.partition(), 0) + 1

    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})
    for i in range(records):
        producer.produce(topic, key=f"k{i}".encode(), value=b"v", on_delivery=delivered)
    assert producer.flush(30) == 0
    assert sum(per_partition.values()) == records
    consumer = Consumer(
        {"bootstrap.servers": kafka.bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    commits = {p: n // 3 for p, n in per_partition.items()}
    consumer.commit(
        offsets=[TopicPartition(topic, p, off) for p, off in commits.items()], asynchronous=False
    )
    consumer.close()
    return {str(p): per_partition[p] - commits[p] for p in per_partition}


def _dead_letter_reason(kafka: KafkaCluster, topic: str) -> str:
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "group.id": f"ops-read-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                return dict(msg.headers() or [])["reason"].decode()
    finally:
        consumer.close()
    pytest.fail(f"no record on the dead-letter topic {topic}")


def _n_rules() -> int:
    """The alerts in alerts.yml, as written (each must load, healthy)."""
    text = (PROM_DIR / "alerts.yml").read_text()
    return sum(line.strip().startswith("- alert:") for line in text.splitlines())


def test_promtool_checks_and_unit_tests_the_alert_rules() -> None:
    promtool = _tool("promtool")
    check = subprocess.run(
        [promtool, "check", "rules", str(PROM_DIR / "alerts.yml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {_n_rules()} rules found" in check.stdout
    unit = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=PROM_DIR,
        capture_output=True,
        text=True,
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_promtool_accepts_the_compose_prometheus_config(tmp_path: Path) -> None:
    # The compose file mounts alerts.yml at /etc/prometheus; point that at the repo's copy.
    config = (PROM_DIR / "prometheus.yml").read_text()
    assert "/etc/prometheus/alerts.yml" in config
    local = tmp_path / "prometheus.yml"
    local.write_text(config.replace("/etc/prometheus/alerts.yml", str(PROM_DIR / "alerts.yml")))
    check = subprocess.run(
        [_tool("promtool"), "check", "config", str(local)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    compose = (REPO / "docker-compose.yml").read_text()
    assert "./infra/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in compose


def test_grafana_provisioning_loads_the_dashboard_from_the_compose_mount() -> None:
    grafana = REPO / "infra" / "grafana"
    provider = (grafana / "provisioning" / "dashboards" / "camtopo.yml").read_text()
    path = re.search(r"path: (\S+)", provider)
    assert path is not None
    compose = (REPO / "docker-compose.yml").read_text()
    assert f"./infra/grafana/dashboards:{path.group(1)}:ro" in compose
    uid = re.search(
        r"uid: (\w+)", (grafana / "provisioning/datasources/prometheus.yml").read_text()
    )
    assert uid is not None
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid.group(1), panel["title"]


def test_prometheus_scrapes_every_component_and_evaluates_the_rules(
    kafka: KafkaCluster,
    redis_server: RedisServer,
    kafka_topic: Callable[..., str],
    services: Services,
    tmp_path: Path,
) -> None:
    prometheus = _tool("prometheus")
    tag = uuid.uuid4().hex[:8]
    occupancy = kafka_topic(partitions=4, prefix="ops-occupancy")
    dead = kafka_topic(partitions=1, prefix="ops-dead")
    changes = kafka_topic(partitions=1, prefix="ops-changes")
    lag_topic = kafka_topic(partitions=3, prefix="ops-lag")
    lag_group = f"ops-lagging-{tag}"
    expected_lag = _committed_lag(kafka, lag_topic, lag_group, 300)

    ports = {
        job: free_port()
        for job in ("camtopo-processor", "camtopo-query", "camtopo-producers", "camtopo-lag")
    }
    prom_port = free_port()
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/7"  # a db of its own in the shared server
    group = f"ops-proc-{tag}"
    services.env.update(
        CAMTOPO_KAFKA_BOOTSTRAP=kafka.bootstrap,
        CAMTOPO_REDIS_URL=redis_url,
        CAMTOPO_OCCUPANCY_TOPIC=occupancy,
        CAMTOPO_OCCUPANCY_PARTITIONS="4",
        CAMTOPO_DEAD_LETTER_TOPIC=dead,
        CAMTOPO_TOPOLOGY_CHANGES_TOPIC=changes,
        CAMTOPO_PROCESSOR_GROUP=group,
        CAMTOPO_IDLE_PARTITION_SECONDS="2",
        CAMTOPO_PROCESSOR_METRICS_PORT=str(ports["camtopo-processor"]),
        CAMTOPO_PRODUCER_METRICS_PORT=str(ports["camtopo-producers"]),
        CAMTOPO_HTTP_HOST="127.0.0.1",
        CAMTOPO_PRODUCER_COMPRESSION="gzip",  # aiokafka reads gzip without extra packages
    )
    sim = tmp_path / "sim"
    subprocess.run(
        [sys.executable, "-m", "camtopo.cli", "simulate", "--scenario", "campus",
         "--cameras", str(CAMERAS), "--duration", "1", "--seed", "3", "--out", str(sim)],
        env=services.env, check=True, capture_output=True,
    )  # fmt: skip
    network = str(sim / "network.json")
    services.start("processor", "process", "--network", network)
    services.start("query", "serve", "--network", network, "--port", str(ports["camtopo-query"]))
    services.start("lag", "lag-exporter", "--port", str(ports["camtopo-lag"]))
    # Started only when the processor answers, so its consumer sees the records as they come.
    _wait(
        "the processor's /metrics",
        lambda: _get(f"http://127.0.0.1:{ports['camtopo-processor']}/metrics"),
        90,
        services.procs,
    )
    services.start(
        "producers", "produce", "--simulate", "--scenario", "campus", "--cameras", str(CAMERAS),
        "--seed", "3", "--duration", str(PRODUCE_SECONDS), "--no-progress",
    )  # fmt: skip

    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(PROM_DIR / "alerts.yml")],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            for job, port in ports.items()
        ],
    }
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    services.start(
        "prometheus", prometheus, f"--config.file={config_path}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}", camtopo=False,
    )  # fmt: skip
    prom = Prom(prom_port)
    _wait("prometheus ready", lambda: _get(f"{prom.base}/-/ready"), 60, services.procs)

    # One undecodable record: the processor dead-letters it and the alert must fire.
    bad = Producer({"bootstrap.servers": kafka.bootstrap})
    bad.produce(occupancy, key=b"cam000", value=b"\x00not avro")
    assert bad.flush(10) == 0

    def all_up() -> bool:
        targets = prom.api("targets")["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        return health == dict.fromkeys(ports, "up") or False

    _wait("every target up", all_up, 60, services.procs)

    # The lag of the group with known committed offsets, per partition and summed, exactly.
    def lag_seen() -> dict[str, float]:
        got = prom.values(
            f'kafka_consumergroup_lag{{consumergroup="{lag_group}",topic="{lag_topic}"}}',
            "partition",
        )
        return got if len(got) == len(expected_lag) else {}

    assert _wait("lag series", lag_seen, 30, services.procs) == {
        p: float(n) for p, n in expected_lag.items()
    }
    total = prom.values(
        f'kafka_consumergroup_lag_sum{{consumergroup="{lag_group}",topic="{lag_topic}"}}', "topic"
    )
    assert total == {lag_topic: float(sum(expected_lag.values()))}

    # Wait for the pipeline to count: closed ranges are checkpointed (Tr + Td after their end).
    _wait(
        "detection delay observations",
        lambda: prom.query("camtopo_detection_delay_seconds_count > 0"),
        90,
        services.procs,
    )
    # The processor's own group appears once it commits.
    _wait(
        "the processor group's lag series",
        lambda: prom.query(f'kafka_consumergroup_lag{{consumergroup="{group}"}}'),
        60,
        services.procs,
    )
    # Query latency: a few real requests to the query service.
    for route in ("api/cameras", "api/graph", "healthz"):
        _get(f"http://127.0.0.1:{ports['camtopo-query']}/{route}")

    alert = _wait(
        "the CamtopoDeadLetters alert",
        lambda: [
            a
            for a in prom.api("alerts")["alerts"]
            if a["labels"]["alertname"] == "CamtopoDeadLetters" and a["state"] == "firing"
        ],
        60,
        services.procs,
    )
    # The alert names the reason the processor wrote on the one dead-letter record.
    assert [a["labels"]["reason"] for a in alert] == [_dead_letter_reason(kafka, dead)]

    # Every component's series, as the dashboard and the alerts read them.
    rss = prom.values("process_resident_memory_bytes", "job")
    assert set(rss) == set(ports) and all(v > 10e6 for v in rss.values()), rss
    processor = 'job="camtopo-processor"'
    for expr in (
        f"camtopo_records_in_total{{{processor}}}",
        f"camtopo_frames_counted_total{{{processor}}}",
        f"camtopo_range_processing_seconds_count{{{processor}}}",
        f"sum(camtopo_store_redis_write_seconds_count{{{processor}}})",
        f"camtopo_engine_bytes{{{processor}}}",
        'camtopo_producer_records_total{job="camtopo-producers"}',
        'camtopo_producer_deliveries_total{job="camtopo-producers",result="ok"}',
        'camtopo_http_request_seconds_count{job="camtopo-query"}',
    ):
        # Waited for, not read once: counters such as frames counted move after the range's
        # checkpoint, which the delay histogram (waited for above) does not wait for.
        _wait(
            expr,
            lambda expr=expr: (r := prom.query(expr)) and all(float(x["value"][1]) > 0 for x in r),
            60,
            services.procs,
        )
    assert prom.query(f"camtopo_late_fraction_last_minute{{{processor}}}"), "late fraction gauge"
    last_seen = prom.values("time() - camtopo_camera_last_frame_timestamp_seconds", "camera")
    assert len(last_seen) == CAMERAS and all(0 <= v < 60 for v in last_seen.values()), last_seen

    # The rules are loaded and evaluate cleanly; nothing but the dead letters fires.
    groups = prom.api("rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == _n_rules() and all(r["health"] == "ok" for r in rules), rules
    firing = {
        a["labels"]["alertname"] for a in prom.api("alerts")["alerts"] if a["state"] == "firing"
    }
    assert firing == {"CamtopoDeadLetters"}, firing

    # Every dashboard query is valid PromQL here; the core panels have data. Rates need two
    # scrapes with traffic between them, so poll a while, querying the service meanwhile.
    panels = json.loads(DASHBOARD.read_text())["panels"]
    must_have = ("Throughput", "Detection delay", "Consumer lag", "Memory", "Query latency")
    core = [p["targets"][0]["expr"] for p in panels if p["title"].startswith(must_have)]

    def core_panels_have_data() -> bool:
        _get(f"http://127.0.0.1:{ports['camtopo-query']}/api/cameras")
        return all(prom.query(expr) for expr in core)

    _wait("data in the core dashboard panels", core_panels_have_data, 60, services.procs)
    empty = []
    for panel in panels:
        for target in panel["targets"]:
            if not prom.query(target["expr"]):
                empty.append(target["expr"])
    for panel in panels:
        if panel["title"].startswith(must_have):
            assert not set(t["expr"] for t in panel["targets"][:1]) & set(empty), panel["title"]
    print(f"dashboard queries without data yet: {empty}")
    scrape = prom.values("camtopo_lag_exporter_scrape_seconds", "job")
    print("RSS MiB:", {j: round(v / 2**20) for j, v in rss.items()}, "lag scrape s:", scrape)
