"""Real Kafka, Redis and a schema registry on loopback, for the tests, the demo and
``camtopo stack up|down|status``.

Thin Python handles on ``infra/kafka.sh``, ``infra/redis.sh`` and ``infra/registry.sh`` (which
hold the one way to start, wait for and stop each service) plus what tests need on top: free
ports, SIGKILL for fault tests, a metadata-level readiness wait for Kafka, and errors that carry
the tail of the service's log. ``infra/setup.sh`` (``make setup``) must have run once: it
installs redis-server and resolves the Kafka broker jars and Apicurio Registry. See
docs/infra.md.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

# infra/'s scripts and broker config are package data (pyproject.toml): camtopo/operations/infra
# is a symlink to the checkout's infra/ and a plain folder in an installed wheel, so one lookup
# serves both. Resolved, so paths in messages and logs name the real files.
INFRA_DIR = Path(str(files("camtopo.operations") / "infra")).resolve()
REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKOUT = INFRA_DIR == REPO_ROOT / "infra"  # False for an installed wheel
# A checkout keeps stack data in its .stack/ (git-ignored); an installed package has no
# repository, so `camtopo stack` uses .stack/ in the working directory, as its --help says.
STACK_DIR = REPO_ROOT / ".stack" if CHECKOUT else Path(".stack")
LOOPBACK = "127.0.0.1"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
SETUP_HINT = (
    "run `make setup` (or `infra/setup.sh` as root) once first"
    if CHECKOUT
    else f"run `bash {INFRA_DIR / 'setup.sh'}` as root once first"
)
# kafka.sh puts each node's controller listener this far above its broker port by default.
CONTROLLER_PORT_OFFSET = 100


class StackError(RuntimeError):
    """A local service could not be started, reached or stopped; the message says why."""


class SetupMissing(StackError):
    """The one-time setup (redis-server, Kafka jars) has not been done on this machine."""


# --- setup checks -----------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where infra/setup.sh keeps the Kafka jars (``$CAMTOPO_CACHE``, else ~/.cache/camtopo)."""
    return Path(os.environ.get("CAMTOPO_CACHE") or Path.home() / ".cache" / "camtopo")


def kafka_version() -> str:
    """The Kafka release: ``$CAMTOPO_KAFKA_VERSION`` (e.g. 3.9.1), else infra/kafka/pom.xml's."""
    if os.environ.get("CAMTOPO_KAFKA_VERSION"):
        return os.environ["CAMTOPO_KAFKA_VERSION"].strip()
    pom = INFRA_DIR / "kafka" / "pom.xml"
    try:
        match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
    except OSError as exc:
        raise SetupMissing(f"cannot read {pom} ({exc}); the infra/ directory is needed") from exc
    if match is None:
        raise SetupMissing(f"no <kafka.version> in {pom}")
    return match.group(1).strip()


def kafka_libs_dir() -> Path:
    return cache_dir() / f"kafka-{kafka_version()}" / "libs"


def check_kafka_setup() -> None:
    """Raise SetupMissing, naming what is missing, unless a Kafka broker can be started."""
    script = INFRA_DIR / "kafka.sh"
    if not script.is_file():
        raise SetupMissing(f"{script} not found; camtopo's infra/ files are missing")
    libs = kafka_libs_dir()
    if not (libs / ".complete").is_file():
        raise SetupMissing(f"no Kafka {kafka_version()} broker jars in {libs}; {SETUP_HINT}")
    if not _which("java"):
        raise SetupMissing(f"java not found on PATH; {SETUP_HINT}")


def check_redis_setup() -> None:
    """Raise SetupMissing, naming what is missing, unless redis-server can be started."""
    script = INFRA_DIR / "redis.sh"
    if not script.is_file():
        raise SetupMissing(f"{script} not found; camtopo's infra/ files are missing")
    for program in ("redis-server", "redis-cli"):
        if not _which(program):
            raise SetupMissing(f"{program} not found on PATH; {SETUP_HINT}")


def registry_version() -> str:
    """The Apicurio Registry release pinned in infra/registry.sh."""
    script = INFRA_DIR / "registry.sh"
    try:
        match = re.search(r"^APICURIO_VERSION=(\S+)$", script.read_text(), re.MULTILINE)
    except OSError as exc:
        raise SetupMissing(f"cannot read {script} ({exc}); the infra/ directory is needed") from exc
    if match is None:
        raise SetupMissing(f"no APICURIO_VERSION= line in {script}")
    return match.group(1)


def check_registry_setup() -> None:
    """Raise SetupMissing, naming what is missing, unless the schema registry can be started."""
    home = cache_dir() / f"apicurio-registry-{registry_version()}"
    if not (home / ".complete").is_file():
        raise SetupMissing(f"no Apicurio Registry {registry_version()} in {home}; {SETUP_HINT}")
    if not _which("java"):
        raise SetupMissing(f"java not found on PATH; {SETUP_HINT}")


def _which(program: str) -> bool:
    from shutil import which

    return which(program) is not None


# --- ports ------------------------------------------------------------------------------------


def _port_free(port: int, host: str = LOOPBACK) -> bool:
    """True if a server could listen on ``port`` now (as Kafka and Redis do, SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Without it, TIME_WAIT connections of a just-killed server would count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_ports(count: int, host: str = LOOPBACK, avoid: set[int] | None = None) -> int:
    """First of ``count`` consecutive free ports (kafka.sh numbers its nodes' ports that way)."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    avoid = avoid or set()
    for _ in range(200):
        base = free_port(host)
        block = range(base, base + count)
        if (
            base + count <= 65535
            and not avoid.intersection(block)
            and all(_port_free(p, host) for p in block[1:])
        ):
            return base
    raise StackError(f"found no {count} consecutive free ports on {host} in 200 tries")


def _wait_port_closed(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _port_free(port) and time.monotonic() < deadline:
        time.sleep(0.05)


# --- processes --------------------------------------------------------------------------------


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, or a note that it does not exist."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _run_script(
    script: str, args: list[str], timeout: float, env: dict[str, str] | None = None
) -> str:
    path = INFRA_DIR / script
    try:
        done = subprocess.run(
            ["bash", str(path), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{script} {' '.join(args)} did not finish within {timeout:.0f}s") from exc
    if done.returncode != 0:
        raise StackError(
            f"{script} {args[0]} failed (exit {done.returncode}):\n{done.stderr.strip()}"
        )
    return done.stderr


def _pid_alive(pid_file: Path, must_contain: str) -> int | None:
    """The pid in ``pid_file`` if that process lives and its command line has ``must_contain``."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError):
        return None
    return pid if must_contain in cmdline else None


def _sigkill(pid: int, timeout: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    # A killed child of ours would stay a zombie; the services are reparented to init, so
    # /proc/<pid> going away (or turning into a zombie) is the sign.
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            return
        if state == "Z":
            return
        time.sleep(0.02)
    raise StackError(f"pid {pid} still alive {timeout:.0f}s after SIGKILL")


_to_stop_at_exit: list[KafkaCluster | _ScriptService] = []


@atexit.register
def _stop_leftovers() -> None:
    # A crashed test session must not leave brokers behind that hold memory and ports.
    for service in reversed(_to_stop_at_exit):
        with contextlib.suppress(StackError):
            service.stop()


# --- Kafka ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KafkaSecurity:
    """A secured broker (infra/kafka.sh, docs/security.md): SASL_SSL (SCRAM-SHA-512) on the
    client port with ACLs enforced; ``admin`` is the super user, whose password is in
    ``admin_password_file``; the broker's PEM certificate and key, and the CA that signed it."""

    tls_cert_file: Path
    tls_key_file: Path
    tls_ca_file: Path
    admin_password_file: Path
    admin: str = "admin"

    def env(self) -> dict[str, str]:
        return {
            "CAMTOPO_KAFKA_TLS_CERT_FILE": str(self.tls_cert_file),
            "CAMTOPO_KAFKA_TLS_KEY_FILE": str(self.tls_key_file),
            "CAMTOPO_KAFKA_TLS_CA_FILE": str(self.tls_ca_file),
            "CAMTOPO_KAFKA_ADMIN_USER": self.admin,
            "CAMTOPO_KAFKA_ADMIN_PASSWORD_FILE": str(self.admin_password_file),
        }

    def client_settings(self, username: str, password: str) -> dict[str, Any]:
        """The ``CAMTOPO_KAFKA_*`` security settings of a client, as ``settings.kafka`` fields."""
        from pydantic import SecretStr

        return {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "username": username,
            "password": SecretStr(password),
            "ca_file": str(self.tls_ca_file),
        }

    def admin_settings(self) -> dict[str, Any]:
        return self.client_settings(self.admin, self.admin_password_file.read_text().strip())


class KafkaCluster:
    """A real KRaft Kafka on loopback: ``brokers`` combined broker+controller nodes.

    Node i (1-based) listens on ``port + i - 1``. With ``port=None`` free ports are picked and
    with ``data_dir=None`` a temporary directory is used. Unless ``stop_at_exit`` is False the
    nodes this object started are stopped when the Python process exits.
    """

    def __init__(
        self,
        port: int | None = None,
        brokers: int = 1,
        data_dir: Path | str | None = None,
        *,
        controller_port: int | None = None,
        start_timeout: float = 90.0,
        stop_at_exit: bool = True,
        security: KafkaSecurity | None = None,
    ) -> None:
        if not 1 <= brokers <= 9:
            raise ValueError(f"brokers must be 1..9, got {brokers}")
        self.brokers = brokers
        self.port = port if port is not None else free_ports(brokers)
        if controller_port is None:
            if port is None:
                avoid = set(range(self.port, self.port + brokers))
                controller_port = free_ports(brokers, avoid=avoid)
            else:
                controller_port = self.port + CONTROLLER_PORT_OFFSET
        self.controller_port = controller_port
        self.data_dir = Path(
            data_dir if data_dir is not None else tempfile.mkdtemp(prefix="camtopo-kafka-")
        ).resolve()
        self.start_timeout = start_timeout
        self._stop_at_exit = stop_at_exit
        self.security = security

    def admin_config(self, **options: Any) -> dict[str, Any]:
        """librdkafka configuration of an admin client (the super user when secured)."""
        from camtopo.connections import kafka_config
        from camtopo.settings import KafkaSettings, Settings

        update = self.security.admin_settings() if self.security is not None else {}
        settings = Settings(kafka=KafkaSettings(bootstrap=self.bootstrap, **update))
        return kafka_config(settings, "admin", **options)

    def __repr__(self) -> str:
        return f"KafkaCluster(bootstrap={self.bootstrap!r}, data_dir={str(self.data_dir)!r})"

    @property
    def ports(self) -> list[int]:
        return [self.port + i for i in range(self.brokers)]

    @property
    def bootstrap(self) -> str:
        """``bootstrap.servers`` for clients: every node, so any one may be down."""
        return ",".join(f"{LOOPBACK}:{p}" for p in self.ports)

    def node_dir(self, node: int) -> Path:
        return self.data_dir / f"node-{node}"

    def log_path(self, node: int = 1) -> Path:
        return self.node_dir(node) / "server.log"

    def pid(self, node: int = 1) -> int | None:
        props = str(self.node_dir(node) / "server.properties")
        return _pid_alive(self.node_dir(node) / "kafka.pid", props)

    def is_running(self, node: int | None = None) -> bool:
        return all(self.pid(n) is not None for n in self._nodes(node))

    def _nodes(self, node: int | None) -> list[int]:
        if node is None:
            return list(range(1, self.brokers + 1))
        if not 1 <= node <= self.brokers:
            raise ValueError(f"node must be in 1..{self.brokers}, got {node}")
        return [node]

    def _args(self, command: str, node: int | None) -> list[str]:
        args = [command, "--port", str(self.port), "--brokers", str(self.brokers)]
        args += ["--data-dir", str(self.data_dir), "--controller-port", str(self.controller_port)]
        if node is not None:
            args += ["--node", str(node)]
        return args

    def start(self, node: int | None = None) -> Self:
        """Start the nodes (or one node) not running; return once clients can use them."""
        check_kafka_setup()
        self._nodes(node)  # validates before any process starts
        args = [*self._args("start", node), "--timeout", str(int(self.start_timeout))]
        env = self.security.env() if self.security is not None else None
        _run_script("kafka.sh", args, timeout=self.start_timeout + 60, env=env)
        if self._stop_at_exit and self not in _to_stop_at_exit:
            _to_stop_at_exit.append(self)
        self.wait_ready(node)
        return self

    def wait_ready(self, node: int | None = None, timeout: float | None = None) -> None:
        """Wait until the cluster's metadata lists the node(s) as live brokers."""
        from confluent_kafka.admin import AdminClient

        wanted = set(self._nodes(node))
        timeout = self.start_timeout if timeout is None else timeout
        admin = AdminClient(self.admin_config(log_level=0))
        deadline = time.monotonic() + timeout
        seen: set[int] = set()
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                seen = set(admin.list_topics(timeout=5).brokers)
                if wanted <= seen:
                    return
            except Exception as exc:  # KafkaException while metadata is not served yet
                last_error = exc
            time.sleep(0.2)
        logs = "\n".join(
            f"--- last lines of {self.log_path(n)} ---\n{tail(self.log_path(n))}" for n in wanted
        )
        raise StackError(
            f"Kafka at {self.bootstrap}: node(s) {sorted(wanted - seen)} not in cluster metadata "
            f"after {timeout:.0f}s (brokers seen: {sorted(seen)}, last error: {last_error})\n{logs}"
        )

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication: int = 1,
        timeout: float = 60.0,
        config: dict[str, str] | None = None,
    ) -> str:
        """Create ``name`` (topic ``config`` such as ``min.insync.replicas``) and return once
        every partition has a leader in the metadata."""
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(self.admin_config())
        deadline = time.monotonic() + timeout
        # librdkafka swaps its bootstrap connection for the learned broker after the first
        # metadata reply, failing a request in flight with _DESTROY_BROKER: fetch it first.
        admin.list_topics(timeout=min(10.0, timeout))
        new = NewTopic(
            name, num_partitions=partitions, replication_factor=replication, config=config or {}
        )
        while True:
            try:
                admin.create_topics([new], operation_timeout=timeout)[name].result(timeout)
                break
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    break  # a retry after a lost reply
                if not err.retriable() and err.code() not in (
                    KafkaError._DESTROY_BROKER,
                    KafkaError._TRANSPORT,
                ):
                    raise StackError(f"creating topic {name} on {self.bootstrap}: {err}") from exc
                if time.monotonic() > deadline:
                    raise StackError(f"creating topic {name}: still failing: {err}") from exc
                time.sleep(0.2)
        while time.monotonic() < deadline:
            meta = admin.list_topics(topic=name, timeout=10).topics[name]
            if (
                meta.error is None
                and len(meta.partitions) == partitions
                and all(p.leader >= 0 for p in meta.partitions.values())
            ):
                return name
            time.sleep(0.1)
        raise StackError(f"topic {name}: not all {partitions} partitions have a leader")

    def partition_leader(self, topic: str, partition: int = 0, timeout: float = 10.0) -> int:
        """The node leading ``topic``'s ``partition`` now, from the cluster metadata."""
        from confluent_kafka.admin import AdminClient

        meta = AdminClient(self.admin_config()).list_topics(topic=topic, timeout=timeout)
        leader = int(meta.topics[topic].partitions[partition].leader)
        if leader < 0:
            raise StackError(f"{topic}[{partition}] has no leader now")
        return leader

    def active_controller(self) -> int:
        """The node that is the KRaft quorum's leader (the active controller) now.

        Not the admin API's ``describe_cluster().controller``: a KRaft broker answers it with
        a random live broker (seen: 3, 1, 1 in three calls on one cluster). Each node writes
        the leader it knows, with the leader's epoch, to its ``quorum-state`` file on every
        election; the highest epoch among the running nodes is the current one.
        """
        import json

        best: tuple[int, int] | None = None
        for n in self._nodes(None):
            if self.pid(n) is None:
                continue
            state = self.node_dir(n) / "data" / "__cluster_metadata-0" / "quorum-state"
            try:
                known = json.loads(state.read_text())
            except (OSError, ValueError):
                continue  # not written yet, or caught mid-rewrite
            epoch, leader = int(known.get("leaderEpoch", -1)), int(known.get("leaderId", -1))
            if leader >= 1 and (best is None or epoch > best[0]):
                best = (epoch, leader)
        if best is None:
            raise StackError(f"no running node of {self.bootstrap} knows a quorum leader")
        return best[1]

    def stop(self, node: int | None = None) -> None:
        """Stop cleanly (SIGTERM, controlled shutdown; SIGKILL after 30 s). Data is kept."""
        if not (INFRA_DIR / "kafka.sh").is_file():
            raise SetupMissing(f"{INFRA_DIR / 'kafka.sh'} not found")
        _run_script("kafka.sh", self._args("stop", node), timeout=120)

    def kill(self, node: int | None = None) -> None:
        """SIGKILL the node(s), as a crash would: no controlled shutdown, no flush."""
        for n in self._nodes(node):
            pid = self.pid(n)
            if pid is not None:
                _sigkill(pid)
        for n in self._nodes(node):
            _wait_port_closed(self.port + n - 1, timeout=10)

    def restart(self, node: int | None = None) -> Self:
        self.stop(node)
        return self.start(node)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- Redis ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisSecurity:
    """A secured server (infra/redis.sh, docs/security.md): the only user, whose password is
    in ``password_file``, with rights on keys matching ``keys``; TLS when the files are given."""

    user: str
    password_file: Path
    keys: str = "camtopo:*"
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None

    def env(self) -> dict[str, str]:
        env = {
            "CAMTOPO_REDIS_ACL_USER": self.user,
            "CAMTOPO_REDIS_ACL_PASSWORD_FILE": str(self.password_file),
            "CAMTOPO_REDIS_ACL_KEYS": self.keys,
        }
        if self.tls_cert_file is not None:
            env |= {
                "CAMTOPO_REDIS_TLS_CERT_FILE": str(self.tls_cert_file),
                "CAMTOPO_REDIS_TLS_KEY_FILE": str(self.tls_key_file),
                "CAMTOPO_REDIS_TLS_CA_FILE": str(self.tls_ca_file),
            }
        return env


class _ScriptService:
    """One server that an ``infra/`` script starts and stops on a loopback port, with its data,
    log and pid file in ``data_dir``: what the Redis server and the schema registry share."""

    script = ""  # in infra/
    name = ""  # its log and pid files: NAME.log, NAME.pid
    setup_check: staticmethod[[], None]
    pid_marker = ""  # in its command line, formatted with the port (guards pid reuse)

    def __init__(
        self,
        port: int | None,
        data_dir: Path | str | None,
        start_timeout: float,
        stop_at_exit: bool,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.data_dir = Path(
            data_dir if data_dir is not None else tempfile.mkdtemp(prefix=f"camtopo-{self.name}-")
        ).resolve()
        self.start_timeout = start_timeout
        self._stop_at_exit = stop_at_exit

    @property
    def url(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, data_dir={str(self.data_dir)!r})"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        return _pid_alive(self.data_dir / f"{self.name}.pid", self.pid_marker.format(self.port))

    def is_running(self) -> bool:
        return self.pid() is not None

    def _args(self, command: str) -> list[str]:
        return [command, "--port", str(self.port), "--dir", str(self.data_dir)]

    def _env(self) -> dict[str, str]:
        return {}

    def start(self) -> Self:
        """Start if not running; return once it answers."""
        type(self).setup_check()
        args = [*self._args("start"), "--timeout", str(int(self.start_timeout))]
        _run_script(self.script, args, timeout=self.start_timeout + 30, env=self._env())
        if self._stop_at_exit and self not in _to_stop_at_exit:
            _to_stop_at_exit.append(self)
        return self

    def stop(self) -> None:
        """Stop cleanly (SIGTERM, then SIGKILL if it lingers). Data on disk is kept."""
        _run_script(self.script, self._args("stop"), timeout=60)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        pid = self.pid()
        if pid is not None:
            _sigkill(pid)
        _wait_port_closed(self.port, timeout=10)

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisServer(_ScriptService):
    """A real redis-server on loopback with the append-only file on (survives SIGKILL: only what
    is already in the AOF is kept, which is every acknowledged write)."""

    script, name, pid_marker = "redis.sh", "redis", ":{}"
    setup_check = staticmethod(check_redis_setup)

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | str | None = None,
        *,
        appendfsync: str = "everysec",
        start_timeout: float = 30.0,
        stop_at_exit: bool = True,
        security: RedisSecurity | None = None,
        replicaof: int | None = None,
    ) -> None:
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always|everysec|no, got {appendfsync!r}")
        super().__init__(port, data_dir, start_timeout, stop_at_exit)
        self.appendfsync = appendfsync
        self.security = security
        self.replicaof = replicaof  # the loopback port of its primary (a replica's first start)

    @property
    def url(self) -> str:
        tls = self.security is not None and self.security.tls_cert_file is not None
        return f"{'rediss' if tls else 'redis'}://{LOOPBACK}:{self.port}/0"

    def _args(self, command: str) -> list[str]:
        args = super()._args(command)
        if command == "start" and self.replicaof is not None:
            args += ["--replicaof", f"{LOOPBACK}:{self.replicaof}"]
        return args

    def _env(self) -> dict[str, str]:
        env = {"CAMTOPO_REDIS_APPENDFSYNC": self.appendfsync}
        return env | (self.security.env() if self.security is not None else {})


class SentinelServer(_ScriptService):
    """One Redis Sentinel (infra/sentinel.sh) watching the primary on ``monitor`` (a port)."""

    script, name, pid_marker = "sentinel.sh", "redis", ":{}"
    setup_check = staticmethod(check_redis_setup)

    def __init__(self, monitor: int, master: str, port: int | None = None,
                 data_dir: Path | str | None = None) -> None:  # fmt: skip
        super().__init__(port, data_dir, 30.0, True)
        self.monitor, self.master = monitor, master

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}"

    def _args(self, command: str) -> list[str]:
        args = super()._args(command)
        if command == "start":
            args += ["--monitor", f"{LOOPBACK}:{self.monitor}", "--name", self.master]
        return args


class RedisSentinelGroup:
    """A primary, one replica (both AOF on) and three sentinels (quorum 2, failure detected
    after 1 s) on loopback: Redis failover for the tests (docs/operations.md, "Redis failover").
    ``.sentinels`` and ``.master`` are what CAMTOPO_REDIS_SENTINELS and
    CAMTOPO_REDIS_SENTINEL_MASTER take."""

    def __init__(self, data_dir: Path | str | None = None, master: str = "camtopo") -> None:
        root = Path(data_dir if data_dir is not None else tempfile.mkdtemp(prefix="camtopo-ha-"))
        self.master = master
        self.servers = [RedisServer(data_dir=root / "a")]
        self.servers.append(RedisServer(data_dir=root / "b", replicaof=self.servers[0].port))
        self.sentinel_servers = [
            SentinelServer(self.servers[0].port, master, data_dir=root / f"sentinel{n}")
            for n in range(3)
        ]

    @property
    def sentinels(self) -> str:
        return ",".join(f"{LOOPBACK}:{s.port}" for s in self.sentinel_servers)

    def start(self) -> Self:
        for service in (*self.servers, *self.sentinel_servers):
            service.start()
        self.wait_ready()
        return self

    def stop(self) -> None:
        for service in (*self.sentinel_servers, *self.servers):
            service.stop()

    def _ask(self, *command: str) -> Any:
        import redis

        for sentinel in self.sentinel_servers:
            try:
                client = redis.Redis(port=sentinel.port, socket_timeout=2)
                return client.execute_command(*command)  # type: ignore[no-untyped-call]  # redis-py
            except redis.RedisError:
                continue
        raise RuntimeError("no sentinel answers")

    def primary(self) -> RedisServer:
        """The server the sentinels name as the primary now."""
        _, port = self._ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master)
        return next(s for s in self.servers if s.port == int(port))

    def replica(self) -> RedisServer:
        primary = self.primary()
        return next(s for s in self.servers if s is not primary)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the replica is in sync and every sentinel knows it and the other two (a
        failover needs a majority of them to elect a leader)."""
        import redis

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                link = redis.Redis(port=self.replica().port).info("replication")
                views = [
                    redis.Redis(port=s.port).sentinel_master(self.master)
                    for s in self.sentinel_servers
                ]
                if link.get("master_link_status") == "up" and all(
                    isinstance(v, dict)  # typed dict | bool in redis-py: the reply parsed
                    and v["num-slaves"] >= 1
                    and v["num-other-sentinels"] >= 2
                    for v in views
                ):
                    return
            except (redis.RedisError, RuntimeError, StopIteration):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the sentinel group did not become ready in {timeout:.0f} s")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- schema registry --------------------------------------------------------------------------

REGISTRY_API = "/apis/ccompat/v7"  # Apicurio's Confluent-compatible API
REGISTRY_DEFAULT_PORT = 8081  # Confluent's; 8080 (Apicurio's own) is the query service's


class SchemaRegistry(_ScriptService):
    """Apicurio Registry on loopback, in-memory storage (its schemas go with a stop); ``.url``
    is the Confluent-compatible API root, what ``CAMTOPO_SCHEMA_REGISTRY_URL`` and Confluent's
    clients take."""

    script, name, pid_marker = "registry.sh", "registry", "-Dquarkus.http.port={} "
    setup_check = staticmethod(check_registry_setup)

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | str | None = None,
        *,
        start_timeout: float = 60.0,
        stop_at_exit: bool = True,
    ) -> None:
        super().__init__(port, data_dir, start_timeout, stop_at_exit)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{REGISTRY_API}"


# --- camtopo stack up|down|status -------------------------------------------------------------


def _loopback_port(address: str, what: str, default_port: int) -> int:
    parts = urlsplit(address if "//" in address else f"//{address}")
    host = parts.hostname or ""
    if host not in LOOPBACK_NAMES:
        raise ValueError(
            f"{what} is {address!r}; `camtopo stack` only runs services on loopback (127.0.0.1)"
        )
    return parts.port or default_port


def _stack_services(data_dir: Path, brokers: int | None) -> tuple[KafkaCluster, RedisServer]:
    from camtopo.settings import get_settings

    settings = get_settings()
    first_bootstrap = settings.kafka.bootstrap.split(",")[0].strip()
    kafka_port = _loopback_port(first_bootstrap, "CAMTOPO_KAFKA_BOOTSTRAP", 9092)
    redis_port = _loopback_port(settings.redis.url, "CAMTOPO_REDIS_URL", 6379)
    kafka_dir = data_dir / "kafka"
    if brokers is None:
        # down/status act on whatever layout `up` created.
        layout = kafka_dir / "layout"
        found = re.search(r"brokers=(\d)", layout.read_text()) if layout.is_file() else None
        brokers = int(found.group(1)) if found else 1
    kafka = KafkaCluster(kafka_port, brokers, kafka_dir, stop_at_exit=False)
    redis = RedisServer(redis_port, data_dir / "redis", stop_at_exit=False)
    return kafka, redis


def _stack_registry(data_dir: Path, up: bool) -> SchemaRegistry:
    """The stack's registry: on CAMTOPO_SCHEMA_REGISTRY_URL's port when that is set; else, at
    ``up``, on 8081 or (taken) a free port. The port is written to ``registry/port``, so
    ``down`` and ``status`` find the registry ``up`` started whatever the settings say then."""
    from camtopo.settings import get_settings

    reg_dir = data_dir / "registry"
    port_file = reg_dir / "port"
    url = get_settings().schema_registry.url
    if url:
        port = _loopback_port(url, "CAMTOPO_SCHEMA_REGISTRY_URL", REGISTRY_DEFAULT_PORT)
    elif not up and port_file.is_file():
        port = int(port_file.read_text())
    elif _port_free(REGISTRY_DEFAULT_PORT) or not up:
        port = REGISTRY_DEFAULT_PORT
    else:
        port = free_port()
    if up:
        reg_dir.mkdir(parents=True, exist_ok=True)
        port_file.write_text(f"{port}\n")
    return SchemaRegistry(port, reg_dir, stop_at_exit=False)


def run(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    try:
        if args.action == "up":
            kafka, redis = _stack_services(data_dir, args.brokers)
            registry = _stack_registry(data_dir, up=True)
            started = time.monotonic()
            redis.start()
            print(f"redis  up: {redis.url}  (data and log in {redis.data_dir})")
            kafka.start()
            print(f"kafka  up: {kafka.bootstrap}  (data and logs in {kafka.data_dir})")
            registry.start()
            print(f"schema registry up: {registry.url}  (in memory; log {registry.log_path})")
            from camtopo.settings import get_settings

            if not get_settings().schema_registry.url:
                print(
                    "  camtopo frames records in file mode until CAMTOPO_SCHEMA_REGISTRY_URL="
                    f"{registry.url} is set (docs/events.md)"
                )
            # Every topic, with the configured partition counts, before any client can use
            # one: the broker does not auto-create them (infra/kafka.sh), and a topic created
            # with the wrong count is refused here rather than by a worker counting nothing.
            from processors.topics import ensure_topics

            settings = get_settings().replace(kafka={"bootstrap": kafka.bootstrap})
            topics = ensure_topics(settings)
            print("topics ok: " + ", ".join(f"{name} ({n})" for name, n in topics.items()))
            elapsed = time.monotonic() - started
            print(f"stack ready in {elapsed:.1f}s; stop with `camtopo stack down`")
            return 0
        kafka, redis = _stack_services(data_dir, None)
        registry = _stack_registry(data_dir, up=False)
        if args.action == "down":
            registry.stop()
            kafka.stop()
            redis.stop()
            print("stack down (data kept in", data_dir, ")")
            return 0
        up_kafka, up_redis = kafka.is_running(), redis.is_running()
        up_registry = registry.is_running()
        print(f"kafka  {'running' if up_kafka else 'stopped'}: {kafka.bootstrap}")
        print(f"redis  {'running' if up_redis else 'stopped'}: {redis.url}")
        print(f"schema registry {'running' if up_registry else 'stopped'}: {registry.url}")
        return 0 if up_kafka and up_redis and up_registry else 3
    except StackError as exc:
        # The CLI turns OSError/ValueError into one line; a stack failure keeps its log tail.
        print(f"camtopo stack {args.action}: error: {exc}", file=sys.stderr)
        return 1


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "stack",
        help="start/stop the local Kafka broker, Redis server and schema registry (loopback)",
        description=(
            "Runs Kafka (KRaft), Redis and a schema registry (Apicurio, Confluent API) on the "
            "ports of CAMTOPO_KAFKA_BOOTSTRAP, CAMTOPO_REDIS_URL and CAMTOPO_SCHEMA_REGISTRY_URL "
            "(unset: 8081, or a free port if taken), keeping data and logs under .stack/. "
            "Needs `make setup` once."
        ),
    )
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument(
        "--brokers", type=int, default=1, help="Kafka nodes for `up` (3 for fault drills)"
    )
    parser.add_argument(
        "--data-dir", default=str(STACK_DIR), help="where data and logs go (default: .stack/)"
    )
    parser.set_defaults(func=run)
