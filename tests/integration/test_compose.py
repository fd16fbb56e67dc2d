"""docker-compose.yml, checked without a Docker daemon.

``docker-compose config`` (Debian's docker-compose 1.29 package, installed by infra/setup.sh)
parses the file, resolves anchors, merges and interpolation, and validates it against the
compose specification's JSON Schema that it ships; the resolved file it prints is what the
other checks read: the one-shot topic-init (run here against the real broker), the registry,
Alertmanager and its webhook receiver, a healthcheck on every long-running service, pinned
images, and Prometheus scraping every processor role. Docker itself is not run here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from camtopo.localstack import KafkaCluster, free_port

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
PROM_DIR = REPO / "infra" / "prometheus"
ALERTMANAGER = REPO / "infra" / "alertmanager" / "alertmanager.yml"
WEBHOOK = REPO / "infra" / "alertmanager" / "webhook_log.py"
# Where runbook_url points (docs/operations.md, "Alerts", says so).
RUNBOOK_BASE = "https://github.com/camtopo/camtopo/blob/main/docs/operations.md"
TOKEN = "compose-test-token-0123456789"
# The compose roles of `camtopo process`, and their Prometheus jobs.
PROCESSOR_JOBS = {
    "processor": "camtopo-processor",
    "assembler": "camtopo-assembler",
    "counter": "camtopo-counter",
}


def _compose(*args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.fail("docker-compose is missing: run `make setup` (infra/setup.sh installs it)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMTOPO_", "COMPOSE_"))}
    if token is not None:
        env["CAMTOPO_API_TOKEN"] = token
    return subprocess.run(
        [tool, "-f", str(COMPOSE), "--project-directory", str(REPO), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The file as compose resolves it, with the partitioned profile's services too."""
    done = _compose("--profile", "partitioned", "config")
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def _services(config: dict[str, Any]) -> dict[str, Any]:
    return config["services"]


def _one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def test_compose_file_is_valid_by_the_compose_schema() -> None:
    for args in (["config", "-q"], ["--profile", "partitioned", "config", "-q"]):
        done = _compose(*args)
        assert done.returncode == 0, done.stderr
    # Without the token the query service refuses to be defined, naming what to do.
    done = _compose("config", "-q", token=None)
    assert done.returncode != 0
    assert "set CAMTOPO_API_TOKEN first" in done.stderr


def test_the_validator_rejects_what_the_schema_forbids(tmp_path: Path) -> None:
    # A misspelt healthcheck key and an unknown depends_on condition: the schema is applied.
    bad = COMPOSE.read_text().replace("      retries: 24\n", "      retrys: 24\n", 1)
    bad = bad.replace("service_completed_successfully", "service_done", 1)
    path = tmp_path / "docker-compose.yml"
    path.write_text(bad)
    tool = shutil.which("docker-compose")
    assert tool is not None
    done = subprocess.run(
        [tool, "-f", str(path), "--project-directory", str(REPO), "config", "-q"],
        capture_output=True,
        text=True,
        env={**os.environ, "CAMTOPO_API_TOKEN": TOKEN},
        timeout=120,
    )
    assert done.returncode != 0
    assert "'retrys' does not match" in done.stderr
    assert "service_done" in done.stderr


def test_images_are_pinned_and_kafka_is_the_pom_release(config: dict[str, Any]) -> None:
    for name, service in _services(config).items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: image {image!r} is not pinned"
        if image.startswith("camtopo:"):
            assert "build" in service, name  # built here from the Dockerfile
        else:
            assert re.search(r"\d", tag), f"{name}: image {image!r} has no version in its tag"
    pom = (REPO / "infra" / "kafka" / "pom.xml").read_text()
    version = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    assert version is not None
    assert _services(config)["kafka"]["image"] == f"apache/kafka:{version.group(1)}"


def test_kafka_creates_no_topic_and_topic_init_runs_first(config: dict[str, Any]) -> None:
    services = _services(config)
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    init = services["topic-init"]
    assert _one_shot(init)
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "ensure_topics" in init["command"][0]
    # Everything that reads or writes the pipeline's topics starts after it.
    for name in ("producers", "processor", "assembler", "counter", "query"):
        dep = services[name]["depends_on"].get("topic-init")
        assert dep == {"condition": "service_completed_successfully"}, name


@pytest.mark.kafka
def test_topic_init_creates_every_topic_with_its_partition_count(
    config: dict[str, Any], kafka: KafkaCluster
) -> None:
    """The compose step's own script, run against the real (auto-create off) broker."""
    from confluent_kafka.admin import AdminClient

    init = _services(config)["topic-init"]
    assert init["entrypoint"] == ["python", "-c"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMTOPO_")}
    prefix = f"compose{time.monotonic_ns()}"
    env |= {
        "CAMTOPO_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "CAMTOPO_OCCUPANCY_TOPIC": f"{prefix}-occupancy",
        "CAMTOPO_DEAD_LETTER_TOPIC": f"{prefix}-dead",
        "CAMTOPO_TOPOLOGY_CHANGES_TOPIC": f"{prefix}-changes",
        "CAMTOPO_RANGES_TOPIC": f"{prefix}-ranges",
        "CAMTOPO_COUNTER_SHARDS_TOPIC": f"{prefix}-shards",
    }
    for _ in range(2):  # a second run finds them all and succeeds: safe to re-run
        done = subprocess.run(
            [sys.executable, "-c", init["command"][0]],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    topics = AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(timeout=10).topics
    counts = {name: len(t.partitions) for name, t in topics.items() if name.startswith(prefix)}
    assert counts == {
        f"{prefix}-occupancy": 8,
        f"{prefix}-ranges": 8,
        f"{prefix}-shards": 64,
        f"{prefix}-dead": 1,
        f"{prefix}-changes": 1,
    }
    assert len(topics["topology-changes-partitioned"].partitions) == 1


def test_registry_service_serves_the_confluent_api(config: dict[str, Any]) -> None:
    services = _services(config)
    registry = services["registry"]
    assert registry["image"].startswith("apicurio/apicurio-registry-mem:")
    url = services["processor"]["environment"]["CAMTOPO_SCHEMA_REGISTRY_URL"]
    assert url == "http://registry:8080/apis/ccompat/v7"
    assert "/apis/ccompat/v7/" in " ".join(registry["healthcheck"]["test"])
    for name in ("producers", "processor", "assembler", "counter", "query"):
        assert services[name]["environment"]["CAMTOPO_SCHEMA_REGISTRY_URL"] == url, name
        assert services[name]["depends_on"]["registry"]["condition"] == "service_healthy", name


def test_every_long_running_service_has_a_healthcheck_on_its_own_port(
    config: dict[str, Any],
) -> None:
    services = _services(config)
    long_running = [n for n, s in services.items() if not _one_shot(s)]
    assert {"kafka", "redis", "registry", "processor", "query", "alertmanager"} <= set(long_running)
    for name in long_running:
        check = services[name].get("healthcheck")
        assert check and not check.get("disable") and check.get("test"), name
    # The camtopo services ask their own metrics port, or the query service's /healthz.
    env_port = {
        "producers": "CAMTOPO_PRODUCER_METRICS_PORT",
        "processor": "CAMTOPO_PROCESSOR_METRICS_PORT",
        "assembler": "CAMTOPO_PROCESSOR_METRICS_PORT",
        "counter": "CAMTOPO_PROCESSOR_METRICS_PORT",
        "lag-exporter": "CAMTOPO_LAG_EXPORTER_PORT",
        "query": "CAMTOPO_HTTP_PORT",
    }
    for name, setting in env_port.items():
        test = " ".join(services[name]["healthcheck"]["test"])
        port = services[name]["environment"][setting]
        path = "/healthz" if name == "query" else "/metrics"
        assert f"http://127.0.0.1:{port}{path}" in test, name


def test_prometheus_scrapes_every_role_and_sends_alerts_to_alertmanager(
    config: dict[str, Any], tmp_path: Path
) -> None:
    services = _services(config)
    prom = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    for service, job in PROCESSOR_JOBS.items():
        assert job in jobs, job
        port = services[service]["environment"]["CAMTOPO_PROCESSOR_METRICS_PORT"]
        if service == "processor":
            assert jobs[job]["static_configs"][0]["targets"] == [f"{service}:{port}"]
        else:  # every replica of --scale, by the service's DNS name
            (sd,) = jobs[job]["dns_sd_configs"]
            assert sd["names"] == [service] and sd["type"] == "A" and sd["port"] == int(port)
    for job in ("camtopo-query", "camtopo-producers", "camtopo-lag"):
        for target in jobs[job]["static_configs"][0]["targets"]:
            assert target.split(":")[0] in services, target
    (am,) = prom["alerting"]["alertmanagers"]
    assert am["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert "alertmanager" in services["prometheus"]["depends_on"]
    # --scale assembler=N needs partitions to split: topic-init makes 8 (the setting's default).
    assert "CAMTOPO_OCCUPANCY_PARTITIONS" not in services["assembler"]["environment"]
    local = tmp_path / "prometheus.yml"
    local.write_text(
        (PROM_DIR / "prometheus.yml")
        .read_text()
        .replace("/etc/prometheus/alerts.yml", str(PROM_DIR / "alerts.yml"))
    )
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: run `make setup`"
    check = subprocess.run(
        [promtool, "check", "config", str(local)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_alertmanager_routes_to_the_webhook_service(config: dict[str, Any]) -> None:
    services = _services(config)
    am = services["alertmanager"]
    assert am["image"].startswith("prom/alertmanager:v")
    mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in am["volumes"]]
    assert any(":/etc/alertmanager/alertmanager.yml:ro" in m for m in mounts), mounts
    conf = yaml.safe_load(ALERTMANAGER.read_text())
    receivers = {r["name"]: r for r in conf["receivers"]}
    assert conf["route"]["receiver"] in receivers
    (hook,) = receivers[conf["route"]["receiver"]]["webhook_configs"]
    match = re.fullmatch(r"http://([\w-]+):(\d+)(/\S*)", hook["url"])
    assert match is not None, hook["url"]
    host, port, _path = match.groups()
    assert host in services
    assert port in services[host]["command"], services[host]["command"]


def test_every_alert_has_a_runbook_url_to_its_documented_anchor() -> None:
    rules = [
        rule
        for group in yaml.safe_load((PROM_DIR / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    ]
    operations = (REPO / "docs" / "operations.md").read_text()
    headings = set(re.findall(r"^### (\w+)$", operations, flags=re.M))
    assert RUNBOOK_BASE in operations  # the base is stated where operators read
    for rule in rules:
        name = rule["alert"]
        assert name in headings, f"docs/operations.md has no '### {name}'"
        annotations = rule["annotations"]
        assert annotations["runbook_url"] == f"{RUNBOOK_BASE}#{name.lower()}", name
        assert annotations["runbook"] == f"docs/operations.md#{name.lower()}", name


def test_webhook_receiver_prints_each_alert(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "webhook.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(WEBHOOK), "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        payload = {
            "version": "4",
            "status": "firing",
            "receiver": "camtopo-webhook",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "CamtopoProcessorDown", "severity": "critical"},
                    "annotations": {
                        "summary": "The streaming processor is not answering scrapes",
                        "runbook_url": f"{RUNBOOK_BASE}#camtopoprocessordown",
                    },
                    "startsAt": "2026-01-01T00:00:00Z",
                }
            ],
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/alerts",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as r:
            assert r.status == 200
        bad = urllib.request.Request(f"http://127.0.0.1:{port}/alerts", data=b"{}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=5)
        assert refused.value.code == 400
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines == [
        {
            "alertname": "CamtopoProcessorDown",
            "labels": {"alertname": "CamtopoProcessorDown", "severity": "critical"},
            "receiver": "camtopo-webhook",
            "runbook_url": f"{RUNBOOK_BASE}#camtopoprocessordown",
            "startsAt": "2026-01-01T00:00:00Z",
            "status": "firing",
            "summary": "The streaming processor is not answering scrapes",
        }
    ]


def test_the_image_is_built_from_the_wheel_of_the_packages_the_smoke_checks() -> None:
    """The Dockerfile's first stage builds the wheel from the same sources as
    tests/packaging/wheel_smoke.py (pyproject.toml, the four packages, infra/ behind the
    camtopo/infra link); the image installs that wheel and nothing of the sources."""
    dockerfile = (REPO / "Dockerfile").read_text()
    smoke = (REPO / "tests" / "packaging" / "wheel_smoke.py").read_text()
    packages = re.search(r"^PACKAGES = \(([^)]*)\)", smoke, flags=re.M)
    assert packages is not None
    for package in re.findall(r'"(\w+)"', packages.group(1)):
        assert f"COPY {package} ./{package}" in dockerfile, package
    assert "COPY infra ./infra" in dockerfile
    assert "RUN pip wheel --no-deps -w /wheels ." in dockerfile
    assert "pip install /tmp/wheels/camtopo-*.whl" in dockerfile
    assert (REPO / "camtopo" / "infra").is_symlink()
