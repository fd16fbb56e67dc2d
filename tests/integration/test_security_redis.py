"""A Redis that requires TLS and an ACL user (infra/redis.sh's secured mode), with certificates
made at test time: the store works through it with least rights, and a wrong password is said at
once instead of retried."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from camtopo.connections import RedisLoginRefused, redis_client
from camtopo.core.topology import TopologyEstimator
from camtopo.operations.localstack import RedisSecurity, RedisServer
from camtopo.settings import Settings
from topology_store import synthetic
from topology_store.store import TopologyStore

pytestmark = pytest.mark.redis

PASSWORD = "correct horse battery staple"  # a test secret


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 it signed: (ca, cert, key)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.crt", "-days", "1", "-subj", "/CN=camtopo test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
            "server.csr", "-subj", "/CN=127.0.0.1")  # fmt: skip
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "1",
            "-extfile", "san.cnf")  # fmt: skip
    return folder / "ca.crt", folder / "server.crt", folder / "server.key"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, Settings]]:
    folder = tmp_path_factory.mktemp("redis-tls")
    ca, cert, key = _certificates(folder)
    password_file = folder / "password"
    password_file.write_text(PASSWORD)
    password_file.chmod(0o600)
    security = RedisSecurity("camtopo", password_file, "camtopo:*", cert, key, ca)
    server = RedisServer(data_dir=folder / "data", security=security).start()
    settings = Settings(
        redis={
            "url": server.url,
            "username": "camtopo",
            "password": SecretStr(PASSWORD),
            "ca_file": str(ca),
            "shards": 8,
        }
    )
    yield server, settings
    server.stop()


def test_the_store_checkpoints_and_restores_through_tls_as_its_acl_user(secured) -> None:
    server, settings = secured
    assert server.url.startswith("rediss://")
    net = synthetic.make_network(6, seed=3)
    est = synthetic.run(net, settings, 600)
    store = TopologyStore(settings.redis.url, net.network, settings)
    store.checkpoint(est, 3, {0: 7})
    store.update_topology(est, 60_000)
    twin = TopologyEstimator(net.network, settings.estimator_parameters())
    cp = TopologyStore(settings.redis.url, net.network, settings).load_into(twin)
    assert cp is not None and cp.range_id == 3 and cp.rows > 0
    assert store.health()["status"] == "ok"
    # The password is not in the URL, and nowhere in what the store shows.
    assert PASSWORD not in repr(settings) and PASSWORD not in str(store.health())


def test_the_user_has_no_rights_outside_camtopo_keys(secured) -> None:
    _, settings = secured
    client = redis_client(settings)
    for command in (
        ("SET", "elsewhere:x", "1"),
        ("FLUSHALL",),
        ("CONFIG", "SET", "maxmemory", "1"),
        ("KEYS", "*"),
        ("SHUTDOWN",),
        ("ACL", "LIST"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)


def test_a_wrong_password_or_no_login_is_refused_at_once(secured) -> None:
    _, settings = secured
    for who in (
        settings.replace(redis={"password": SecretStr("wrong")}),
        settings.replace(redis={"username": "default", "password": None}),
    ):
        started = time.monotonic()
        with pytest.raises((RedisLoginRefused, redis.exceptions.AuthenticationError)) as err:
            redis_client(who).ping()
        assert time.monotonic() - started < 2.0  # before: retried for ~33 s
        assert "wrong" not in str(err.value)


def test_without_tls_or_without_the_ca_nothing_gets_through(secured) -> None:
    server, settings = secured
    plain = settings.replace(redis={"url": server.url.replace("rediss", "redis")})
    unverified = settings.replace(redis={"ca_file": None})
    for who in (plain, unverified):
        client = redis.Redis.from_url(
            who.redis.url, socket_connect_timeout=2, socket_timeout=2, retry=None,
            **({"ssl_cert_reqs": "required"} if who.redis.url.startswith("rediss") else {}),
        )  # fmt: skip
        with pytest.raises(redis.exceptions.ConnectionError):
            client.ping()
