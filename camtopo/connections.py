"""Every Kafka and Redis client is configured here, and nowhere else.

One place for how camtopo reaches its services, so connection options (timeouts, retries,
security: SASL_SSL / SSL for Kafka, ACL users and TLS for Redis) are set once for every client:
the librdkafka clients (producers, the counting workers, admin, the lag exporter), Faust's
aiokafka clients (the single worker and the assemblers), the Redis clients (the store, the
query service; one Redis, or the primary that Redis Sentinel names, followed through a
failover) and the schema registry's (``camtopo.formats.avro`` in registry mode).
"""

from __future__ import annotations

import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel
from prometheus_client import Counter
from redis.asyncio.connection import SSLConnection as AsyncSSLConnection
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ConnectionError,
    RedisError,
    TimeoutError,
)
from redis.retry import Retry

from camtopo.errors import CamtopoError
from camtopo.settings import Settings

log = logging.getLogger(__name__)

# Who is connecting: the client.id Kafka logs and quotas see, and (with ACLs) the role
# whose rights a deployment gives it.
KafkaRole = Literal[
    "producer", "processor", "assembler", "counter", "admin", "lag-exporter", "reader"
]


class KafkaSecuritySettingsError(CamtopoError, ValueError):
    """The Kafka security settings are incomplete (a ValueError: the command line says it in
    one line); the message names the missing setting, never a value."""


def _check_kafka_security(settings: Settings) -> None:
    protocol = settings.kafka.security_protocol
    if protocol == "SASL_SSL" and (not settings.kafka.username or settings.kafka.password is None):
        raise KafkaSecuritySettingsError(
            "CAMTOPO_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs CAMTOPO_KAFKA_USERNAME and "
            "CAMTOPO_KAFKA_PASSWORD (docs/security.md)"
        )
    if protocol != "PLAINTEXT" and bool(settings.kafka.cert_file) != bool(settings.kafka.key_file):
        raise KafkaSecuritySettingsError(
            "CAMTOPO_KAFKA_CERT_FILE and CAMTOPO_KAFKA_KEY_FILE go together"
        )
    if protocol == "SSL" and not settings.kafka.cert_file:
        raise KafkaSecuritySettingsError(
            "CAMTOPO_KAFKA_SECURITY_PROTOCOL=SSL authenticates by client certificate: set "
            "CAMTOPO_KAFKA_CERT_FILE and CAMTOPO_KAFKA_KEY_FILE (docs/security.md)"
        )


def _kafka_security(settings: Settings) -> dict[str, Any]:
    """librdkafka's security options of the settings (none for PLAINTEXT). The broker's
    certificate is always verified, host name included (librdkafka's default, set anyway)."""
    _check_kafka_security(settings)
    protocol = settings.kafka.security_protocol
    if protocol == "PLAINTEXT":
        return {}
    conf: dict[str, Any] = {
        "security.protocol": protocol,
        "ssl.endpoint.identification.algorithm": "https",
    }
    if protocol == "SASL_SSL":
        assert settings.kafka.password is not None  # _check_kafka_security
        conf |= {
            "sasl.mechanisms": settings.kafka.sasl_mechanism,
            "sasl.username": settings.kafka.username,
            "sasl.password": settings.kafka.password.get_secret_value(),
        }
    if settings.kafka.ca_file:
        conf["ssl.ca.location"] = settings.kafka.ca_file
    if settings.kafka.cert_file:
        conf["ssl.certificate.location"] = settings.kafka.cert_file
        conf["ssl.key.location"] = settings.kafka.key_file
    return conf


def kafka_config(settings: Settings, role: KafkaRole, **options: Any) -> dict[str, Any]:
    """librdkafka (confluent-kafka) configuration of a ``role`` client; ``options`` add to it
    (group ids, offsets, idempotence: what the client is for, not how it connects).

    The dict holds the SASL password in clear (librdkafka takes it so): never log it."""
    return {
        "bootstrap.servers": settings.kafka.bootstrap,
        "client.id": f"camtopo-{role}",
        **_kafka_security(settings),
        **options,
    }


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context of Faust's aiokafka clients: the broker's certificate verified against
    ``kafka_ca_file`` (else the system's CAs), host name included; the client certificate if
    one is set."""
    context = ssl.create_default_context(cafile=settings.kafka.ca_file or None)
    if settings.kafka.cert_file:
        context.load_cert_chain(settings.kafka.cert_file, settings.kafka.key_file)
    return context


def faust_broker(settings: Settings) -> dict[str, Any]:
    """The connection keyword arguments of a ``faust.App`` (its aiokafka clients)."""
    hosts = [h.strip() for h in settings.kafka.bootstrap.split(",") if h.strip()]
    broker: dict[str, Any] = {"broker": ";".join(f"kafka://{h}" for h in hosts)}
    _check_kafka_security(settings)
    protocol = settings.kafka.security_protocol
    if protocol == "SASL_SSL":
        import faust

        assert settings.kafka.password is not None  # _check_kafka_security
        broker["broker_credentials"] = faust.SASLCredentials(
            username=settings.kafka.username,
            password=settings.kafka.password.get_secret_value(),
            ssl_context=kafka_ssl_context(settings),
            mechanism=settings.kafka.sasl_mechanism,
        )
    elif protocol == "SSL":
        import faust

        broker["broker_credentials"] = faust.SSLCredentials(kafka_ssl_context(settings))
    return broker


class RedisLoginRefused(CamtopoError, RedisError):
    """Redis refused the credentials: retrying cannot help, so it is said at once. A RedisError
    (what callers handle as Redis trouble), but not a ConnectionError (what is retried)."""


def _login(error: AuthenticationError) -> RedisLoginRefused:
    return RedisLoginRefused(
        f"Redis refused the login ({error}); check CAMTOPO_REDIS_USERNAME and "
        "CAMTOPO_REDIS_PASSWORD (docs/security.md)"
    )


class _Retry(Retry):
    """Retries a lost or loading connection, never a refused login (an AuthenticationError is
    a ConnectionError to redis-py, so a wrong password was retried for ~33 s). Each retry is
    counted (a restart or a failover under way)."""

    def __init__(self, *args: Any, client: str = "store", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client = client

    def call_with_retry(self, do: Any, fail: Any, *args: Any, **kwargs: Any) -> Any:
        def attempt() -> Any:
            try:
                return do()
            except AuthenticationError as exc:
                raise _login(exc) from exc

        return super().call_with_retry(attempt, _counted(fail, self.client), *args, **kwargs)


class _AsyncRetry(AsyncRetry):
    def __init__(self, *args: Any, client: str = "query", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client = client

    async def call_with_retry(self, do: Any, fail: Any, *args: Any, **kwargs: Any) -> Any:
        async def attempt() -> Any:
            try:
                return await do()
            except AuthenticationError as exc:
                raise _login(exc) from exc

        return await super().call_with_retry(attempt, _counted(fail, self.client), *args, **kwargs)


REDIS_RETRIES = Counter(
    "camtopo_redis_retries_total",
    "Redis commands retried after a lost connection (a restart, or a failover under way)",
    ["client"],
)
PRIMARY_SWITCHES = Counter(
    "camtopo_redis_primary_switches_total",
    "Connections made to another primary than the last one Sentinel named (a failover)",
    ["client"],
)


def _counted(fail: Any, client: str) -> Any:
    """redis-py's failure callback, counting the retry it precedes. It calls the callback
    with (error) or (error, failure_count), and an async client awaits what it returns."""

    def on_failure(*args: Any) -> Any:
        REDIS_RETRIES.labels(client).inc()
        return fail(*args)

    return on_failure


class RedisSettingsError(CamtopoError, ValueError):
    """CAMTOPO_REDIS_SENTINELS is not a list of host:port (a ValueError: one line)."""


def _sentinel_addresses(text: str) -> list[tuple[str, int]]:
    out = []
    for item in (part.strip() for part in text.split(",")):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise RedisSettingsError(
                f"CAMTOPO_REDIS_SENTINELS must be host:port,host:port; {item!r} is not"
            )
        out.append((host, int(port)))
    return out


def _database(url: str) -> int:
    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0


class _Primary:
    """Where a Sentinel-managed connection goes: the primary the sentinels name now.

    redis-py 8.2 asks the sentinels only in ``connect()``; a reconnect inside a command's
    retries goes through ``connect_check_health()`` to the old primary's address until the
    retries run out (redis/redis-py#3874: measured 29 s instead of the 2.6 s the failover
    took). So the address is asked for there too, and a change is logged and counted."""

    client = "store"
    connection_pool: Any  # the connection class's own (sync or asyncio Sentinel pool)

    def _followed(self, address: tuple[str, int]) -> None:
        # The last primary is kept on the (shared) pool: a new connection is no switch.
        pool = self.connection_pool
        address = (str(address[0]), int(address[1]))
        last = getattr(pool, "camtopo_primary", None)
        if last is not None and last != address:
            PRIMARY_SWITCHES.labels(self.client).inc()
            log.warning("Redis primary is now %s:%s (was %s:%s)", *address, *last)
        pool.camtopo_primary = address
        self.host, self.port = address


class _SentinelConnection(_Primary, redis.sentinel.SentinelManagedConnection):
    def connect_to(self, address: tuple[str, int]) -> None:
        self._followed(address)
        super().connect_to(address)  # type: ignore[no-untyped-call]  # redis-py: unannotated

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if self._sock is None and self.connection_pool.is_master:
            self._followed(self.connection_pool.get_master_address())
        super().connect_check_health(check_health, retry_socket_connect=False)


class _SentinelSSLConnection(_SentinelConnection, redis.SSLConnection):
    pass


class _AsyncSentinelConnection(_Primary, aiosentinel.SentinelManagedConnection):
    client = "query"

    async def connect_to(self, address: tuple[str, int]) -> None:
        self._followed(address)
        await super().connect_to(address)  # type: ignore[no-untyped-call]  # redis-py: unannotated

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if self._reader is None and self.connection_pool.is_master:
            self._followed(await self.connection_pool.get_master_address())
        await super().connect_check_health(check_health, retry_socket_connect=False)


class _AsyncSentinelSSLConnection(_AsyncSentinelConnection, AsyncSSLConnection):
    pass


def _sentinel_kwargs(settings: Settings, url: str) -> dict[str, Any]:
    """How the sentinels themselves are asked: briefly (an unreachable one is skipped for the
    next), over TLS when the data path is. No credentials: sentinels hold no data."""
    kwargs: dict[str, Any] = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
    if url.startswith("rediss://"):
        tls = _redis_options(settings, url)
        kwargs |= {"ssl": True, **{k: v for k, v in tls.items() if k.startswith("ssl_")}}
    return kwargs


def _redis_options(settings: Settings, url: str) -> dict[str, Any]:
    """Credentials and TLS of a Redis client: from the settings, never from the URL's text
    (a URL is logged and shown; a SecretStr is not)."""
    options: dict[str, Any] = {}
    if settings.redis.username:
        options["username"] = settings.redis.username
    if settings.redis.password is not None:
        options["password"] = settings.redis.password.get_secret_value()
    if url.startswith("rediss://"):
        options["ssl_cert_reqs"] = "required"
        if settings.redis.ca_file:
            options["ssl_ca_certs"] = settings.redis.ca_file
        if settings.redis.cert_file:
            options["ssl_certfile"] = settings.redis.cert_file
            options["ssl_keyfile"] = settings.redis.key_file
    return options


def redis_client(settings: Settings, url: str | None = None, **options: Any) -> redis.Redis:
    """A client of ``url`` (default ``settings.redis.url``) that rides out a Redis restart:
    it reconnects with backoff for up to ~30 s, but says at once when its login is refused.

    With ``CAMTOPO_REDIS_SENTINELS`` it is a client of the primary the sentinels name, and
    follows a failover within those retries (a write to a demoted primary, READONLY, is a lost
    connection to redis-py's Sentinel client); the URL then gives the scheme and database."""
    url = url or settings.redis.url
    common = {
        "retry": _Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=20),
        "retry_on_error": [ConnectionError, TimeoutError, BusyLoadingError],
        "socket_timeout": 30,
        "socket_connect_timeout": 5,
        "health_check_interval": 30,
        **_redis_options(settings, url),
        **options,
    }
    if not settings.redis.sentinels:
        return redis.Redis.from_url(url, **common)
    tls = url.startswith("rediss://")
    sentinel = redis.sentinel.Sentinel(
        _sentinel_addresses(settings.redis.sentinels),
        sentinel_kwargs=_sentinel_kwargs(settings, url),
    )
    client: redis.Redis = sentinel.master_for(  # unannotated in redis-py: a Redis
        settings.redis.sentinel_master,
        connection_class=_SentinelSSLConnection if tls else _SentinelConnection,
        db=_database(url),
        **common,
    )
    return client


def async_redis_client(settings: Settings, url: str | None = None) -> aioredis.Redis:
    """The query service's client: short timeouts, a request fails rather than waits. With
    sentinels, a few more retries (~4 s) ride out a failover's switch (measured 2.6 s with
    down-after 1 s: benchmarks/redis_failover.py) instead of answering 503 meanwhile."""
    url = url or settings.redis.url
    common: dict[str, Any] = {
        "socket_connect_timeout": 5,
        "socket_timeout": 10,
        **_redis_options(settings, url),
    }
    if not settings.redis.sentinels:
        return aioredis.Redis.from_url(
            url, retry=_AsyncRetry(ExponentialBackoff(cap=1.0, base=0.05), retries=2), **common
        )
    tls = url.startswith("rediss://")
    sentinel = aiosentinel.Sentinel(
        _sentinel_addresses(settings.redis.sentinels),
        sentinel_kwargs=_sentinel_kwargs(settings, url),
    )
    client: aioredis.Redis = sentinel.master_for(  # unannotated in redis-py: a Redis
        settings.redis.sentinel_master,
        connection_class=_AsyncSentinelSSLConnection if tls else _AsyncSentinelConnection,
        db=_database(url),
        retry=_AsyncRetry(ExponentialBackoff(cap=1.0, base=0.05), retries=6),
        retry_on_error=[ConnectionError, TimeoutError, BusyLoadingError],
        **common,
    )
    return client


# --- schema registry --------------------------------------------------------------------------


class SchemaRegistryError(CamtopoError):
    """The schema registry refused a request; the message has its reason."""


class SchemaRegistryUnavailable(SchemaRegistryError):
    """The registry did not answer within ``schema_registry_wait_seconds`` of retries."""


class SchemaIncompatible(SchemaRegistryError):
    """HTTP 409: the schema breaks the subject's compatibility rule (BACKWARD)."""


class UnknownSchemaId(SchemaRegistryError):
    """HTTP 404 on ``/schemas/ids/N``: no schema has that id in this registry."""


# Confluent's content type; Apicurio's ccompat API takes it too.
_REGISTRY_JSON = "application/vnd.schemaregistry.v1+json"


class SchemaRegistryClient:
    """A small client of the Confluent Schema Registry REST API (Apicurio's ``/apis/ccompat/v7``
    and Confluent's own serve it): what camtopo needs, on the standard library alone.

    ``url`` is the API root (where ``/subjects`` hangs). An unreachable registry, or a 5xx, is
    retried with doubling pauses (0.25 s … 4 s) for ``wait_seconds``, then
    :class:`SchemaRegistryUnavailable` says so in one line; a 4xx is an answer and not retried.
    """

    def __init__(self, url: str, wait_seconds: float = 15.0, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.wait_seconds = wait_seconds
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SchemaRegistryClient({self.url!r})"

    def register(self, subject: str, schema: str, compatibility: str = "BACKWARD") -> int:
        """Register ``schema`` (Avro JSON text) under ``subject``; its global id. The rule is set
        first, so even the subject's second version is checked (a registry's default may be
        NONE); registering a schema already there returns its id again."""
        path = f"/subjects/{quote(subject, safe='')}"
        self._request("PUT", f"/config/{quote(subject, safe='')}", {"compatibility": compatibility})
        answer = self._request("POST", f"{path}/versions", {"schema": schema})
        return int(answer["id"])

    def schema(self, schema_id: int) -> str:
        """The Avro JSON text of global id ``schema_id``; :class:`UnknownSchemaId` if none."""
        return str(self._request("GET", f"/schemas/ids/{int(schema_id)}")["schema"])

    def compatibility(self, subject: str) -> str:
        answer = self._request("GET", f"/config/{quote(subject, safe='')}")
        return str(answer.get("compatibilityLevel") or answer.get("compatibility"))

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": _REGISTRY_JSON, "Accept": _REGISTRY_JSON},
        )
        deadline = time.monotonic() + self.wait_seconds
        pause = 0.25
        while True:
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    return json.loads(answer.read() or b"{}")
            except urllib.error.HTTPError as exc:
                text = exc.read().decode("utf-8", "replace")
                try:
                    message = str(json.loads(text).get("message", text))
                except ValueError:
                    message = text
                if exc.code < 500:
                    raise _registry_error(exc.code, method, path, message) from None
                problem = f"HTTP {exc.code}: {message[:200]}"
            except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out
                problem = str(getattr(exc, "reason", exc))
            if time.monotonic() + pause > deadline:
                raise SchemaRegistryUnavailable(
                    f"schema registry {self.url} unreachable for {self.wait_seconds:.0f}s "
                    f"({method} {path}: {problem}); start it (camtopo stack up) or check "
                    "CAMTOPO_SCHEMA_REGISTRY_URL"
                ) from None
            log.warning("schema registry %s: %s; retrying in %.2fs", self.url, problem, pause)
            time.sleep(pause)
            pause = min(pause * 2, 4.0)


def _registry_error(code: int, method: str, path: str, message: str) -> SchemaRegistryError:
    if code == 409:
        return SchemaIncompatible(
            f"schema registry refused {path} (HTTP 409, incompatible with the subject's "
            f"compatibility rule): {message}"
        )
    if code == 404 and path.startswith("/schemas/ids/"):
        return UnknownSchemaId(f"schema id {path.rsplit('/', 1)[1]} is not in the registry")
    return SchemaRegistryError(f"schema registry: {method} {path}: HTTP {code}: {message}")


def schema_registry(settings: Settings) -> SchemaRegistryClient | None:
    """The registry client of ``settings``, or None in file mode (no URL set)."""
    if not settings.schema_registry.url:
        return None
    return SchemaRegistryClient(
        settings.schema_registry.url, wait_seconds=settings.schema_registry.wait_seconds
    )
