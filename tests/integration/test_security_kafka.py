"""A Kafka broker that requires SASL_SSL (SCRAM-SHA-512 over TLS) and enforces ACLs
(infra/kafka.sh's secured mode), with certificates made at test time: one principal per role
with least rights (processors/acls.py), each refused outside them; the single-worker pipeline
(`camtopo produce` -> `camtopo process` -> Redis) counts through it; no password in any log."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from camtopo.connections import kafka_config
from camtopo.core.topology import TopologyEstimator
from camtopo.operations.localstack import KafkaCluster, KafkaSecurity, RedisServer, free_port
from camtopo.settings import Settings
from processors.acls import create_users, grant_roles
from processors.topics import ensure_topics
from tests.integration.test_security_redis import _certificates
from topology_store.store import TopologyStore

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
ROLES = ("producer", "single", "assembler", "counter", "reader", "lag-exporter")
READER_GROUP = "topology-reader"
# A principal with no write right at all is refused its idempotent producer id: cluster level.
REFUSED = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
}


@dataclass
class Secured:
    kafka: KafkaCluster
    base: Settings  # topic and group names, no credentials
    admin: Settings
    passwords: dict[str, str]  # user -> password (users are named after their roles)
    folder: Path

    def role(self, role: str, password: str | None = None) -> Settings:
        sec = self.kafka.security
        assert sec is not None
        update = sec.client_settings(role, password or self.passwords[role])
        return self.base.replace(kafka=update)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    folder = tmp_path_factory.mktemp("kafka-tls")
    ca, cert, key = _certificates(folder)
    admin_password = folder / "admin.pw"
    admin_password.write_text(secrets.token_hex(16))
    admin_password.chmod(0o600)
    security = KafkaSecurity(cert, key, ca, admin_password)
    cluster = KafkaCluster(data_dir=folder / "data", security=security).start()
    try:
        base = Settings(
            kafka={"bootstrap": cluster.bootstrap, "occupancy_partitions": 4},
            redis={"shards": 8},
            processor={"group": f"proc-{uuid.uuid4().hex[:6]}"},
        )
        admin = base.replace(kafka=security.admin_settings())
        ensure_topics(admin, "all")
        passwords = {role: secrets.token_urlsafe(18) for role in ROLES}
        create_users(admin, passwords)
        grant_roles(admin, {role: role for role in ROLES}, READER_GROUP)
        yield Secured(cluster, base, admin, passwords, folder)
    finally:
        cluster.stop()


# --- probes ---------------------------------------------------------------------------------


def _write(settings: Settings, topic: str) -> int | None:
    """Produce one record as ``settings``' principal: None if delivered, else the error code."""
    got: list[KafkaError | None] = []
    producer = Producer(
        kafka_config(settings, "producer", **{"enable.idempotence": True, "log_level": 0,
                                              "message.timeout.ms": 15000})
    )  # fmt: skip
    producer.produce(topic, b"probe", b"k", on_delivery=lambda err, _m: got.append(err))
    try:
        producer.flush(20)
    except KafkaException as exc:  # fatal: no producer id (no write right anywhere)
        return int(exc.args[0].code())
    assert got, f"no delivery report for {topic}"
    return None if got[0] is None else got[0].code()


def _read(settings: Settings, topic: str, group: str, timeout: float = 20) -> int | None:
    """Join ``group`` on ``topic`` as ``settings``' principal: None once partitions are
    assigned without error, else the first error's code."""
    assigned: list[object] = []
    consumer = Consumer(
        kafka_config(settings, "reader", **{"group.id": group, "log_level": 0,
                                            "auto.offset.reset": "earliest"})
    )  # fmt: skip
    try:
        consumer.subscribe([topic], on_assign=lambda _c, parts: assigned.extend(parts))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is not None:
                return msg.error().code()
            if assigned and msg is None:
                return None
        raise AssertionError(f"neither an assignment nor an error on {topic} in {timeout} s")
    finally:
        consumer.close()


def test_each_role_is_refused_outside_its_rights(secured: Secured) -> None:
    s = secured.base
    occ, dead, changes = (
        s.kafka.occupancy_topic,
        s.kafka.dead_letter_topic,
        s.kafka.topology_changes_topic,
    )
    reader_group = f"{READER_GROUP}-{uuid.uuid4().hex[:6]}"
    probes = [
        # (role, action, topic, group, allowed)
        ("producer", "write", occ, None, True),
        ("producer", "write", changes, None, False),
        ("producer", "write", dead, None, False),
        ("producer", "read", occ, s.processor.group, False),
        ("single", "read", occ, s.processor.group, True),
        ("single", "read", occ, "another-group", False),
        ("single", "write", dead, None, True),
        ("single", "write", changes, None, True),
        ("single", "write", occ, None, False),
        ("single", "write", s.partitioned.ranges_topic, None, False),
        ("assembler", "write", s.partitioned.ranges_topic, None, True),
        ("assembler", "write", changes, None, False),
        ("assembler", "read", occ, s.partitioned.assembler_group, True),
        ("assembler", "read", changes, s.partitioned.assembler_group, False),
        ("assembler", "read", occ, s.partitioned.counter_group, False),
        ("assembler", "write", occ, None, False),
        ("counter", "read", s.partitioned.ranges_topic, s.partitioned.counter_group, True),
        ("counter", "read", s.partitioned.ranges_topic, s.partitioned.assembler_group, False),
        ("counter", "write", s.partitioned.ranges_topic, None, False),
        ("counter", "write", dead, None, False),
        ("counter", "read", occ, s.partitioned.counter_group, False),
        ("counter", "write", changes, None, True),
        ("counter", "write", occ, None, False),
        ("reader", "read", changes, reader_group, True),
        ("reader", "read", changes, "not-a-reader-group", False),
        ("reader", "read", occ, reader_group, False),
        ("reader", "read", dead, reader_group, False),
        ("reader", "write", changes, None, False),
        ("lag-exporter", "read", occ, s.partitioned.assembler_group, False),
        ("lag-exporter", "read", changes, reader_group, False),
        ("lag-exporter", "write", changes, None, False),
    ]
    wrong = []
    for role, action, topic, group, allowed in probes:
        settings = secured.role(role)
        code = _write(settings, topic) if action == "write" else _read(settings, topic, group)
        observed = "ok" if code is None else KafkaError(code).name()
        print(f"{role:9} {action:5} {topic:22} {group or '':20} -> {observed}")
        if (code is None) != allowed or (code is not None and code not in REFUSED):
            wrong.append((role, action, topic, group, observed))
    assert not wrong, wrong
    # The partitioned roles can check every topic's partition count at start (describe only).
    for role in ("producer", "single", "assembler", "counter"):
        scope = {"producer": "occupancy", "single": "single"}.get(role, "all")
        assert ensure_topics(secured.role(role), scope)  # type: ignore[arg-type]


def _metadata_error(conf: dict[str, object], timeout: float = 6) -> str:
    errors: list[str] = []
    admin = AdminClient({**conf, "log_level": 0, "error_cb": lambda e: errors.append(e.str())})
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017  KafkaException: no metadata
        admin.list_topics(timeout=timeout)
    assert time.monotonic() - started < timeout + 2
    admin.poll(1)  # serves the error callbacks
    return " | ".join(errors)


def test_a_wrong_password_plaintext_or_an_unknown_ca_gets_nothing(secured: Secured) -> None:
    good = kafka_config(secured.role("reader"), "admin")
    wrong = _metadata_error({**good, "sasl.password": "not-the-password"})
    assert "Authentication failed" in wrong or "SASL" in wrong, wrong
    assert "not-the-password" not in wrong and secured.passwords["reader"] not in wrong
    plain = {"bootstrap.servers": secured.kafka.bootstrap}
    _metadata_error(plain)
    no_ca = {k: v for k, v in good.items() if k != "ssl.ca.location"}
    assert "certificate verify failed" in _metadata_error(no_ca)


def test_a_new_password_replaces_the_old_one(secured: Secured) -> None:
    """Rotation as docs/security.md describes it: re-key a user; the old password is refused
    from then on, the new one works (an open connection is not touched)."""
    assert secured.kafka.security is not None
    old, new = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    create_users(secured.admin, {"reader-2": old})
    grant_roles(secured.admin, {"reader": "reader-2"}, READER_GROUP)

    def as_(password: str) -> Settings:
        update = secured.kafka.security.client_settings("reader-2", password)  # type: ignore[union-attr]
        return secured.base.replace(kafka=update)

    changes, group = (
        secured.base.kafka.topology_changes_topic,
        f"{READER_GROUP}-{uuid.uuid4().hex[:6]}",
    )
    assert _read(as_(old), changes, group) is None
    create_users(secured.admin, {"reader-2": new})
    time.sleep(1)  # the new credential reaches the broker through the metadata log
    assert _read(as_(new), changes, group) is None
    refused = _metadata_error(kafka_config(as_(old), "admin"))
    assert "Authentication failed" in refused or "SASL" in refused, refused


# --- the pipeline ---------------------------------------------------------------------------


def _camtopo(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "camtopo.cli", *args], env=env, cwd=REPO,
        stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMTOPO_")}
    if "CAMTOPO_CACHE" in os.environ:
        env["CAMTOPO_CACHE"] = os.environ["CAMTOPO_CACHE"]
    for name in (
        "kafka_bootstrap", "kafka_security_protocol", "kafka_sasl_mechanism", "kafka_username",
        "kafka_ca_file", "occupancy_partitions", "redis_url", "redis_shards", "processor_group",
    ):  # fmt: skip
        env[f"CAMTOPO_{name.upper()}"] = str(settings.by_variable()[name])
    assert settings.kafka.password is not None
    env["CAMTOPO_KAFKA_PASSWORD"] = settings.kafka.password.get_secret_value()
    return env | extra


def _frames_counted(port: int) -> float:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(
        s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "camtopo_frames_counted_total"
    )


def _serve_probes(url: str, token: str) -> str:
    """Good and bad requests to a query service with ``token``; its stream token."""
    import json
    import urllib.error
    import urllib.request

    def get(path: str, headers: dict[str, str], method: str = "GET") -> tuple[int, bytes]:
        request = urllib.request.Request(url + path, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read(4096)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    auth = {"Authorization": f"Bearer {token}"}
    status, body = get("/healthz", {})
    assert status == 200 and json.loads(body)["status"] == "ok", body  # Redis: TLS + ACL user
    assert get("/api/graph", auth)[0] in (200, 503)
    assert get("/api/graph", {"Authorization": f"Bearer {token[::-1]}"})[0] == 401
    assert get(f"/api/graph?access_token={token}", {})[0] == 401
    assert get("/api/cameras", {"Referer": f"{url}/#token={token}"})[0] == 401
    status, body = get("/api/stream-token", auth, method="POST")
    assert status == 200, body
    stream_token = str(json.loads(body)["stream_token"])
    assert get(f"/api/stream?stream_token={stream_token[:-4]}0000", {})[0] == 401
    request = urllib.request.Request(f"{url}/api/stream?stream_token={stream_token}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200 and answer.readline()
    return stream_token


def test_the_pipeline_with_every_secret_set_logs_none_of_them(
    secured: Secured, tmp_path: Path
) -> None:
    """Kafka (SASL_SSL, ACLs), Redis (TLS, ACL user and password) and the API token all set,
    in every process's environment as one env file would: `camtopo produce` -> `camtopo
    process` -> Redis <- `camtopo serve` count and answer; a processor with a wrong Redis
    password stops at once. No secret (raw, URL-encoded or base64) in any line any of them,
    the broker or Redis logged."""
    from pydantic import SecretStr

    from camtopo.operations.localstack import RedisSecurity

    cameras, seed, seconds = 6, 4, 20
    redis_password = secrets.token_urlsafe(15) + "/+ %="  # URL-encoding changes it
    api_token = secrets.token_urlsafe(24) + "+/="
    pw_file = tmp_path / "redis.pw"
    pw_file.write_text(redis_password)
    pw_file.chmod(0o600)
    folder = secured.folder
    redis_security = RedisSecurity(
        "camtopo", pw_file, "camtopo:*", folder / "server.crt", folder / "server.key",
        folder / "ca.crt",
    )  # fmt: skip
    redis_server = RedisServer(data_dir=tmp_path / "redis", security=redis_security).start()
    redis_url = redis_server.url
    assert redis_url.startswith("rediss://")
    secret_env = {
        "CAMTOPO_REDIS_URL": redis_url,
        "CAMTOPO_REDIS_USERNAME": "camtopo",
        "CAMTOPO_REDIS_PASSWORD": redis_password,
        "CAMTOPO_REDIS_CA_FILE": str(folder / "ca.crt"),
        "CAMTOPO_API_TOKEN": api_token,
    }
    sim = tmp_path / "sim"
    done = subprocess.run(
        [sys.executable, "-m", "camtopo.cli", "simulate", "--scenario", "campus", "--cameras",
         str(cameras), "--duration", "1", "--seed", str(seed), "--out", str(sim)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    network = sim / "network.json"
    metrics_port, http_port = free_port(), free_port()
    proc_env = _env(
        secured.role("single"),
        CAMTOPO_PROCESSOR_METRICS_PORT=str(metrics_port),
        CAMTOPO_IDLE_PARTITION_SECONDS="2",
        **secret_env,
    )
    prod_env = _env(secured.role("producer"), **secret_env)
    logs = {name: tmp_path / f"{name}.log" for name in ("processor", "producer", "serve")}
    # A wrong Redis password: the processor stops at once, in one line.
    refused = subprocess.run(
        [sys.executable, "-m", "camtopo.cli", "process", "--network", str(network)],
        env=proc_env | {"CAMTOPO_REDIS_PASSWORD": redis_password[::-1]}, cwd=REPO,
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert "Redis refused the login" in said and said.count("\n") == 1, said[-2000:]
    (tmp_path / "wrong-redis-password.log").write_text(refused.stdout + refused.stderr)
    processor = _camtopo("process", "--network", str(network), env=proc_env,
                         log=logs["processor"])  # fmt: skip
    serve = _camtopo("serve", "--host", "127.0.0.1", "--port", str(http_port),
                     env=prod_env | {"CAMTOPO_REDIS_SHARDS": "8"}, log=logs["serve"])  # fmt: skip
    producer = None
    started = time.monotonic()
    try:
        deadline = time.monotonic() + 90
        while True:  # its /metrics answers once it runs
            assert processor.poll() is None, logs["processor"].read_text()[-3000:]
            try:
                _frames_counted(metrics_port)
                break
            except OSError:
                assert time.monotonic() < deadline, logs["processor"].read_text()[-3000:]
                time.sleep(0.5)
        producer = _camtopo(
            "produce", "--simulate", "--scenario", "campus", "--cameras", str(cameras),
            "--seed", str(seed), "--duration", str(seconds), "--no-progress",
            env=prod_env, log=logs["producer"],
        )  # fmt: skip
        assert producer.wait(seconds + 90) == 0, logs["producer"].read_text()[-3000:]
        assert "delivery failures 0" in logs["producer"].read_text()
        deadline = time.monotonic() + 60
        counted = 0.0
        while counted <= 0 and time.monotonic() < deadline:
            assert processor.poll() is None, logs["processor"].read_text()[-3000:]
            counted = _frames_counted(metrics_port)
            time.sleep(0.5)
        assert counted > 0, logs["processor"].read_text()[-3000:]
        # ... and the counts reach Redis (the pending checkpoint once the stream pauses).
        from camtopo.core.grid import Network

        net = Network.load(network)
        settings = secured.base.replace(
            redis={"url": redis_url, "username": "camtopo", "ca_file": str(folder / "ca.crt"),
                   "password": SecretStr(redis_password)}
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            est = TopologyEstimator(net, settings.estimator_parameters())
            cp = TopologyStore(redis_url, net, settings).load_into(est)
            # a whole checkpoint (every shard), with count rows
            if cp is not None and cp.range_id >= 0 and cp.rows > 0:
                break
            assert time.monotonic() < deadline, "no whole checkpoint with counts in Redis"
            assert processor.poll() is None, logs["processor"].read_text()[-3000:]
            time.sleep(1)
        assert serve.poll() is None, logs["serve"].read_text()[-3000:]
        stream_token = _serve_probes(f"http://127.0.0.1:{http_port}", api_token)
        print(f"pipeline: {counted:.0f} frames counted, checkpoint range {cp.range_id}, "
              f"{cp.rows} rows, {time.monotonic() - started:.1f} s")  # fmt: skip
    finally:
        for p in (producer, processor, serve):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
        redis_server.stop()
    texts = {p.name: p.read_text(errors="replace") for p in tmp_path.glob("*.log")}
    texts["broker"] = secured.kafka.log_path().read_text(errors="replace")
    texts["redis-server"] = redis_server.log_path.read_text(errors="replace")
    assert set(texts) >= {"processor.log", "producer.log", "serve.log", "wrong-redis-password.log"}
    assert all(texts.values()), [name for name, text in texts.items() if not text]
    every = [*_secrets(secured), redis_password, redis_password[::-1], api_token, stream_token]
    assert not _leaks(texts, every)
    # ... and the scan would see one: each form, in a line like the logs' own.
    from urllib.parse import quote

    for form in (redis_password, quote(redis_password, safe="")):
        assert _leaks({"x": f"INFO url=rediss://camtopo:{form}@127.0.0.1"}, [redis_password])
    assert "/api/graph" in texts["serve.log"]  # the access log was captured


# --- the partitioned pipeline and the lag exporter -------------------------------------------

# The settings that name a topic or a group: the ACLs are granted on these names.
_NAMES = {
    "kafka": ("occupancy_topic", "dead_letter_topic", "topology_changes_topic"),
    "partitioned": ("ranges_topic", "counter_shards_topic", "assembler_group", "counter_group"),
    "processor": ("group",),
}


def _secrets(secured: Secured) -> list[str]:
    assert secured.admin.kafka.password is not None
    return [*secured.passwords.values(), secured.admin.kafka.password.get_secret_value()]


def _leaks(texts: dict[str, str], secrets_: list[str]) -> list[tuple[str, int, str]]:
    """(log, secret index, form) of every secret found in a text, raw, URL-encoded or base64
    (alone, or as HTTP Basic's user:password)."""
    import base64
    from urllib.parse import quote

    found = []
    for i, secret in enumerate(secrets_):
        forms = {
            "raw": secret,
            "url": quote(secret, safe=""),
            "base64": base64.b64encode(secret.encode()).decode().rstrip("="),
        }
        for name, text in texts.items():
            found += [(name, i, form) for form, value in forms.items() if value in text]
            users = (*ROLES, "camtopo")  # Kafka's roles, the Redis user
            if any(base64.b64encode(f"{u}:{secret}".encode()).decode() in text for u in users):
                found.append((name, i, "basic"))
    return found


def _lag_series(port: int) -> tuple[float, dict[tuple[str, str], float]]:
    """(kafka_up, (group, topic) -> lag_sum) of a lag exporter's /metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    up, sums = -1.0, {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "camtopo_lag_exporter_kafka_up":
                up = s.value
            elif s.name == "kafka_consumergroup_lag_sum":
                sums[(s.labels["consumergroup"], s.labels["topic"])] = s.value
    return up, sums


def test_the_partitioned_pipeline_and_the_lag_exporter_work_with_acls(
    secured: Secured, tmp_path: Path
) -> None:
    """`--role assemble` and `--role count`, each as its own principal with only its ACLs
    (granted on fresh topics and groups), count what the offline estimator counts; `camtopo
    lag-exporter` as its principal reports the groups' lag; no password in any of their logs."""
    from tests.integration.conftest import Stack
    from tests.integration.test_partitioned_pipeline import (
        Workers,
        _assert_shards_equal_offline,
        _wait_all_shards,
    )
    from tests.integration.test_streaming import _last_range, _trace

    class SecuredWorkers(Workers):
        """Each worker logs in as its role's user (the password only in its environment)."""

        role = "assembler"

        def start(self, name: str, role: str) -> None:
            self.role = {"assemble": "assembler", "count": "counter"}[role]
            super().start(name, role)

        def env(self) -> dict[str, str]:
            env = {k: v for k, v in super().env().items() if k != "CAMTOPO_KAFKA_PASSWORD"}
            password = secured.passwords[self.role]
            return env | {"CAMTOPO_KAFKA_USERNAME": self.role, "CAMTOPO_KAFKA_PASSWORD": password}

    tag = uuid.uuid4().hex[:6]
    redis_server = RedisServer(data_dir=tmp_path / "redis").start()
    occ, dead = f"occ-{tag}", f"dead-{tag}"
    settings = secured.role("assembler").replace(
        kafka={
            "occupancy_topic": occ,
            "dead_letter_topic": dead,
            "topology_changes_topic": f"changes-{tag}",
        },
        processor={"group": f"proc-{tag}", "idle_partition_seconds": 2.0},
        redis={"url": redis_server.url},
    )
    stack = Stack(secured.kafka, redis_server, occ, dead, redis_server.url, settings,
                  tmp_path / "network.json")  # fmt: skip
    workers = SecuredWorkers(stack, tmp_path)
    # Every checkpoint writes every shard: the wait below ends as soon as the last range is
    # counted (spread checkpoints are test_partitioned_pipeline's business).
    workers.settings = workers.settings.replace(partitioned={"counter_checkpoint_spread_ranges": 1})
    names = {
        section: {k: getattr(getattr(workers.settings, section), k) for k in fields}
        for section, fields in _NAMES.items()
    }
    admin = secured.admin.replace(**names)
    ensure_topics(admin, "all")  # the admin creates the topics; no role may
    grant_roles(admin, {r: r for r in ("producer", "assembler", "counter", "lag-exporter")})
    lag_port = free_port()
    lag_env = _env(secured.role("lag-exporter"))
    lag_log = tmp_path / "lag-exporter.log"
    exporter = _camtopo("lag-exporter", "--host", "127.0.0.1", "--port", str(lag_port),
                        env=lag_env, log=lag_log)  # fmt: skip
    started = time.monotonic()
    try:
        sim, records = _trace(12, 60, seed=5)
        sim.network.save(stack.network_path)
        producer = Producer(
            kafka_config(secured.role("producer").replace(**names), "producer",
                         **{"enable.idempotence": True, "log_level": 0})
        )  # fmt: skip
        for rec in records:
            producer.produce(occ, rec.value, rec.camera.encode(), timestamp=rec.send_ms)
            producer.poll(0)
        assert producer.flush(60) == 0
        workers.start("assemble-1", "assemble")
        workers.start("count-1", "count")
        produced = time.monotonic()
        _wait_all_shards(workers, sim.network, _last_range(workers.settings, records), 120)
        counted = time.monotonic()
        # The exporter, logged in as a principal that may describe but not read, sees the
        # assemblers' committed offsets on the occupancy topic.
        deadline = time.monotonic() + 30
        asm = (workers.settings.partitioned.assembler_group, occ)
        while True:
            assert exporter.poll() is None, lag_log.read_text()[-3000:]
            try:
                up, sums = _lag_series(lag_port)
            except OSError:
                up, sums = -1.0, {}
            if up == 1.0 and sums.get(asm) == 0:
                break
            assert time.monotonic() < deadline, (up, sums, lag_log.read_text()[-3000:])
            time.sleep(1)
        _assert_shards_equal_offline(workers, sim.network, records)
        print(
            f"partitioned pipeline with ACLs: produced in {produced - started:.1f} s, counted "
            f"{counted - produced:.1f} s later, {time.monotonic() - started:.1f} s in all; "
            f"lag {sums}"
        )
    finally:
        workers.stop()
        exporter.terminate()
        exporter.wait(30)
        redis_server.stop()
    texts = {p.name: p.read_text(errors="replace") for p in tmp_path.glob("*.log")}
    texts["broker"] = secured.kafka.log_path().read_text(errors="replace")
    assert {"assemble-1.log", "count-1.log", "lag-exporter.log"} <= set(texts)
    assert not _leaks(texts, _secrets(secured))
