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

from camtopo.operations.localstack import KafkaCluster, free_port

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
    camtopo/operations/infra link); the image installs that wheel and nothing of the sources."""
    dockerfile = (REPO / "Dockerfile").read_text()
    smoke = (REPO / "tests" / "packaging" / "wheel_smoke.py").read_text()
    packages = re.search(r"^PACKAGES = \(([^)]*)\)", smoke, flags=re.M)
    assert packages is not None
    for package in re.findall(r'"(\w+)"', packages.group(1)):
        assert f"COPY {package} ./{package}" in dockerfile, package
    assert "COPY infra ./infra" in dockerfile
    assert "RUN pip wheel --no-deps -w /wheels ." in dockerfile
    assert "pip install /tmp/wheels/camtopo-*.whl" in dockerfile
    assert (REPO / "camtopo" / "operations" / "infra").is_symlink()


# --- the secured stack (docker-compose.secured.yml over docker-compose.yml) -------------------

SECURED = REPO / "docker-compose.secured.yml"
SECRETS_SCRIPT = REPO / "infra" / "compose-secrets.sh"
# camtopo service -> the Kafka role it logs in as (processors/acls.py); None: no Kafka.
KAFKA_ROLES = {
    "producers": "producer",
    "processor": "single",
    "assembler": "assembler",
    "counter": "counter",
    "lag-exporter": "lag-exporter",
    "query": None,
}
REDIS_CLIENTS = ("processor", "assembler", "counter", "query")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """(the secured stack as compose resolves it, partitioned profile included; its secrets)
    with secrets made by infra/compose-secrets.sh."""
    folder = tmp_path_factory.mktemp("compose-secrets") / "secrets"
    done = subprocess.run([str(SECRETS_SCRIPT), str(folder)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    tool = shutil.which("docker-compose")
    assert tool is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMTOPO_", "COMPOSE_"))}
    env["CAMTOPO_SECRETS_DIR"] = str(folder)
    resolved = subprocess.run(
        [tool, "--env-file", str(folder / "compose.env"), "-f", str(COMPOSE), "-f",
         str(SECURED), "--project-directory", str(REPO), "--profile", "partitioned", "config"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert resolved.returncode == 0, resolved.stderr
    return yaml.safe_load(resolved.stdout), folder


def _listeners(env: dict[str, str]) -> dict[str, tuple[str, int, str]]:
    """listener name -> (bind address, port, security protocol) of a Kafka service."""
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    out = {}
    for listener in env["KAFKA_LISTENERS"].split(","):
        name, _, address = listener.partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port), protocols[name])
    return out


def _published(service: dict[str, Any]) -> list[tuple[str, int]]:
    """(host address, container port) of each port the service publishes."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((port.get("host_ip", "0.0.0.0"), int(port["target"])))
        else:
            parts = str(port).split(":")
            target = parts[-1].split("/")[0]  # "9092/tcp"
            out.append((parts[0] if len(parts) == 3 else "0.0.0.0", int(target)))
    return out


def test_the_secrets_script_makes_certificates_passwords_and_env_files(secured) -> None:
    _, folder = secured
    for name in ("kafka", "redis"):
        verify = subprocess.run(
            ["openssl", "verify", "-CAfile", str(folder / "ca.crt"), str(folder / f"{name}.crt")],
            capture_output=True, text=True,
        )  # fmt: skip
        assert verify.returncode == 0, verify.stderr
        san = subprocess.run(
            ["openssl", "x509", "-in", str(folder / f"{name}.crt"), "-noout", "-ext",
             "subjectAltName"], capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert f"DNS:{name}" in san and "IP Address:127.0.0.1" in san
    assert (folder.stat().st_mode & 0o077) == 0  # the folder: its owner only
    assert (folder / "ca.key").stat().st_mode & 0o077 == 0
    passwords = {p.name: p.read_text().strip() for p in folder.glob("*.pw")}
    assert len(passwords) == 5 + 2 and len(set(passwords.values())) == len(passwords)
    assert all(re.fullmatch(r"[0-9a-f]{48}", v) for v in passwords.values())
    for service, role in KAFKA_ROLES.items():
        env = dict(
            line.split("=", 1) for line in (folder / f"{service}.env").read_text().splitlines()
        )
        if role is not None:
            assert env["CAMTOPO_KAFKA_USERNAME"] == role
            assert env["CAMTOPO_KAFKA_PASSWORD"] == passwords[f"kafka-{role}.pw"]
        assert (
            env.get("CAMTOPO_REDIS_PASSWORD") == passwords["redis.pw"]
        ) == (service in REDIS_CLIENTS), service  # fmt: skip
    # Redis: the rule of infra/redis.sh's secured mode, the password only as its SHA-256.
    import hashlib

    acl = (folder / "redis-users.acl").read_text()
    digest = hashlib.sha256(passwords["redis.pw"].encode()).hexdigest()
    assert f"user camtopo on #{digest} ~camtopo:* " in acl and "user default off" in acl
    rule = re.search(r"#%s ~%s (.*)\\n", (REPO / "infra" / "redis.sh").read_text())
    assert rule is not None and acl.rstrip().endswith(rule.group(1))
    assert passwords["redis.pw"] not in acl
    # A second run keeps every password (a rerun must not lock the stack out).
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    subprocess.run([str(SECRETS_SCRIPT), str(folder)], capture_output=True, check=True)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_the_secured_stack_exposes_no_plaintext_kafka_or_redis(secured) -> None:
    config, folder = secured
    services = config["services"]
    kafka = services["kafka"]["environment"]
    listeners = _listeners(kafka)
    for name, (host, _port, protocol) in listeners.items():
        # every PLAINTEXT listener is on the kafka container's own loopback
        assert protocol == "SASL_SSL" or host == "127.0.0.1", (name, host, protocol)
    advertised = [a.partition("://") for a in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")]
    for name, _, address in advertised:
        assert listeners[name][2] == "SASL_SSL" or address.startswith("127.0.0.1:"), name
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert kafka["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert "SSL" not in kafka["KAFKA_ADVERTISED_LISTENERS"].replace("SASL_SSL", "")
    by_port = {port: protocol for _h, port, protocol in listeners.values()}
    for host, port in _published(services["kafka"]):
        assert host == "127.0.0.1" and by_port[port] == "SASL_SSL", port
    # Redis: TLS only, on the port it publishes; its users from the ACL file.
    command = services["redis"]["command"]
    flag = lambda name: command[command.index(name) + 1]  # noqa: E731
    assert flag("--port") == "0" and flag("--aclfile") == "/run/secrets/redis-users.acl"
    assert [p for _h, p in _published(services["redis"])] == [int(flag("--tls-port"))]
    assert "--tls" in " ".join(services["redis"]["healthcheck"]["test"])
    # Whatever else the host reaches is bound to 127.0.0.1.
    for name, service in services.items():
        for host, _port in _published(service):
            assert host == "127.0.0.1", name
    # The one-shot inits reach LOCAL through the kafka container's loopback.
    for name in ("kafka-init", "topic-init"):
        assert services[name]["network_mode"] == "service:kafka", name
    assert services["topic-init"]["depends_on"]["kafka-init"] == {
        "condition": "service_completed_successfully"
    }
    local = [p for _n, (_h, p, proto) in listeners.items() if proto == "PLAINTEXT"]
    assert services["topic-init"]["environment"]["CAMTOPO_KAFKA_BOOTSTRAP"] in {
        f"127.0.0.1:{p}" for p in local
    }
    assert "grant_roles" in services["topic-init"]["command"][0]
    # Grafana: no anonymous access, the admin password from a file.
    grafana = services["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")
    assert folder.name  # the secrets came from the script's folder


def test_every_secured_client_logs_in_with_its_own_credentials(secured) -> None:
    config, folder = secured
    services = config["services"]
    token = (folder / "api-token").read_text().strip()
    query = services["query"]["environment"]
    assert query["CAMTOPO_API_TOKEN"] == token and query.get("CAMTOPO_API_AUTH") != "off"
    users = set()
    for name, role in KAFKA_ROLES.items():
        env = services[name]["environment"]
        secrets_ = [s["source"] for s in services[name]["secrets"]]
        assert "ca.crt" in secrets_, name
        if role is not None:
            assert env["CAMTOPO_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
            assert env["CAMTOPO_KAFKA_CA_FILE"] == "/run/secrets/ca.crt", name
            assert env["CAMTOPO_KAFKA_USERNAME"] == role, name
            assert env["CAMTOPO_KAFKA_PASSWORD"], name
            assert env["CAMTOPO_KAFKA_BOOTSTRAP"] == "kafka:19092", name
            users.add(role)
        if name in REDIS_CLIENTS:
            assert env["CAMTOPO_REDIS_URL"].startswith("rediss://redis:6379/"), name
            assert env["CAMTOPO_REDIS_USERNAME"] == "camtopo", name
            assert env["CAMTOPO_REDIS_PASSWORD"], name
            assert env["CAMTOPO_REDIS_CA_FILE"] == "/run/secrets/ca.crt", name
    assert len(users) == 5  # one principal per role
    # kafka-init creates exactly these users, from files (no password on a command line).
    init = services["kafka-init"]
    assert init["image"] == services["kafka"]["image"]
    roles = re.search(r"for role in ([\w -]+);", init["command"][0])
    assert roles is not None and set(roles.group(1).split()) == users
    assert "--add-config-file" in init["command"][0]
    # No secret is written into the compose files, the image or the repository's env.
    texts = [COMPOSE.read_text(), SECURED.read_text(), (REPO / "Dockerfile").read_text()]
    for secret in [p.read_text().strip() for p in folder.glob("*.pw")] + [token]:
        assert not any(secret in text for text in texts)
    assert ".secrets/" in (REPO / ".gitignore").read_text().splitlines()


def _server_properties(env: dict[str, str], ports: dict[int, int], secrets_: dict[str, str],
                       data: Path) -> str:  # fmt: skip
    """The broker configuration the apache/kafka image writes from KAFKA_* variables (drop
    KAFKA_, ``___`` -> ``-``, ``__`` -> ``_``, ``_`` -> ``.``, lower case), with the secrets'
    mount points, the ports and the compose host name replaced by local ones."""
    lines = []
    for key, value in env.items():
        if not key.startswith("KAFKA_") or key in ("KAFKA_HEAP_OPTS", "KAFKA_OPTS"):
            continue
        name = key[6:].replace("___", "-").replace("__", "\0").replace("_", ".")
        name = name.replace("\0", "_").lower()
        value = str(value)
        for mount, local in secrets_.items():
            value = value.replace(mount, local)
        for port, local_port in ports.items():
            value = re.sub(rf":{port}\b", f":{local_port}", value)
        value = value.replace("0.0.0.0:", "127.0.0.1:").replace("kafka:", "127.0.0.1:")
        if name == "log.dirs":
            value = str(data)
        lines.append(f"{name}={value}")
    return "\n".join(lines) + "\n"


@pytest.mark.kafka
def test_the_secured_kafka_settings_run_on_a_real_broker(secured, tmp_path: Path) -> None:
    """The secured kafka service's KAFKA_* settings, turned into server.properties as the image
    does, run on the local Kafka jars: the users of kafka-init's files and topic-init's script
    (topics, ACLs) through LOCAL; then each role logs in over TLS on the compose listener and
    is refused outside its rights, and a PLAINTEXT client on it gets nothing."""
    from unittest import mock

    from confluent_kafka import KafkaError, KafkaException, Producer
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    from camtopo.connections import kafka_config
    from camtopo.operations.localstack import free_ports, kafka_libs_dir
    from camtopo.settings import Settings

    config, folder = secured
    services = config["services"]
    kafka = services["kafka"]["environment"]
    listeners = _listeners(kafka)
    base = free_ports(len(listeners))
    ports = {port: base + k for k, (_h, port, _p) in enumerate(listeners.values())}
    mounts = {f"/run/secrets/{name}": s["file"] for name, s in config["secrets"].items()}
    node = tmp_path / "kafka"
    node.mkdir()
    properties = node / "server.properties"
    properties.write_text(_server_properties(kafka, ports, mounts, node / "data"))
    java = ["java", "-cp", f"{kafka_libs_dir()}/*"]
    log4j = REPO / "infra" / "kafka"
    subprocess.run(
        [*java, f"-Dlog4j2.configurationFile={log4j / 'tools-log4j2.properties'}",
         "kafka.tools.StorageTool", "format", "-t", "5L6g3nShT-eMCtK--X86sw", "-c",
         str(properties)], check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    broker = subprocess.Popen(
        [*java[:1], "-Xmx384m", f"-Dlog4j2.configurationFile={log4j / 'log4j2.properties'}",
         f"-Dkafka.logs.dir={node}", *java[1:], "kafka.Kafka", str(properties)],
        stdout=(node / "stdout.log").open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    local = f"127.0.0.1:{ports[listeners['LOCAL'][1]]}"
    internal = f"127.0.0.1:{ports[listeners['INTERNAL'][1]]}"
    try:
        admin = AdminClient({"bootstrap.servers": local, "log_level": 0})
        deadline = time.monotonic() + 90
        while True:
            assert broker.poll() is None, (node / "server.log").read_text()[-3000:]
            try:
                admin.list_topics(timeout=2)
                break
            except KafkaException:
                assert time.monotonic() < deadline, (node / "server.log").read_text()[-3000:]
        # kafka-init's users, from its files (kafka-configs is not among the local jars).
        roles = re.search(r"for role in ([\w -]+);", services["kafka-init"]["command"][0])
        assert roles is not None
        upserts = []
        for role in roles.group(1).split():
            text = Path(mounts[f"/run/secrets/kafka-scram-{role}.properties"]).read_text()
            found = re.fullmatch(r"SCRAM-SHA-512=\[iterations=(\d+),password=(\w+)\]\n", text)
            assert found is not None, role
            info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, int(found.group(1)))
            upserts.append(UserScramCredentialUpsertion(role, info, found.group(2).encode()))
        for future in admin.alter_user_scram_credentials(upserts).values():
            future.result(30)
        # topic-init's own script, with its environment (LOCAL, as the super user).
        init = services["topic-init"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAMTOPO_")}
        env |= {k: str(v) for k, v in init["environment"].items() if k.startswith("CAMTOPO_")}
        env["CAMTOPO_KAFKA_BOOTSTRAP"] = local
        env.pop("CAMTOPO_REDIS_URL", None)
        done = subprocess.run(
            [sys.executable, "-c", init["command"][0]], env=env, cwd=REPO,
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "ACLs granted to assembler, counter" in done.stdout

        def as_service(name: str) -> Settings:
            env = {k: str(v) for k, v in services[name]["environment"].items()}
            env |= {"CAMTOPO_KAFKA_BOOTSTRAP": internal, "CAMTOPO_KAFKA_CA_FILE": mounts[
                "/run/secrets/ca.crt"]}  # fmt: skip
            env = {k: v for k, v in env.items() if k.startswith("CAMTOPO_KAFKA_")}
            with mock.patch.dict(os.environ, env, clear=True):
                return Settings()

        def write(name: str, topic: str) -> int | None:
            got: list[Any] = []
            producer = Producer(kafka_config(as_service(name), "producer", log_level=0,
                                             **{"message.timeout.ms": 15000}))  # fmt: skip
            producer.produce(topic, b"probe", on_delivery=lambda err, _m: got.append(err))
            try:
                producer.flush(20)
            except KafkaException as exc:
                return int(exc.args[0].code())
            assert got, topic
            return None if got[0] is None else got[0].code()

        assert write("producers", "occupancy") is None
        assert write("producers", "topology-changes") == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert write("processor", "topology-changes") is None
        assert write("processor", "occupancy") == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert write("counter", "topology-changes-partitioned") is None
        assert write("counter", "topology-changes") == KafkaError.TOPIC_AUTHORIZATION_FAILED
        # A PLAINTEXT client on the compose listener gets no metadata.
        plain = AdminClient({"bootstrap.servers": internal, "log_level": 0})
        with pytest.raises(KafkaException):
            plain.list_topics(timeout=4)
    finally:
        broker.terminate()
        try:
            broker.wait(30)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait(10)
    log = (node / "server.log").read_text()
    assert not any(p.read_text().strip() in log for p in folder.glob("*.pw"))
