"""Every Kafka and Redis client is configured here, and nowhere else.

One place for how camtopo reaches its services, so connection options (timeouts, retries, and
next the security settings) are set once for every client: the librdkafka
clients (producers, the counting workers, admin, the lag exporter), Faust's aiokafka clients
(the single worker and the assemblers) and the Redis clients (the store, the query service).
"""

from __future__ import annotations

from typing import Any, Literal

import redis
import redis.asyncio as aioredis
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

# Who is connecting: the client.id Kafka logs and quotas see, and (with ACLs) the role
# whose rights a deployment gives it.
KafkaRole = Literal[
    "producer", "processor", "assembler", "counter", "admin", "lag-exporter", "reader"
]


def kafka_config(settings: Settings, role: KafkaRole, **options: Any) -> dict[str, Any]:
    """librdkafka (confluent-kafka) configuration of a ``role`` client; ``options`` add to it
    (group ids, offsets, idempotence: what the client is for, not how it connects)."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "client.id": f"camtopo-{role}",
        **options,
    }


def faust_broker(settings: Settings) -> dict[str, Any]:
    """The connection keyword arguments of a ``faust.App`` (its aiokafka clients)."""
    hosts = [h.strip() for h in settings.kafka_bootstrap.split(",") if h.strip()]
    return {"broker": ";".join(f"kafka://{h}" for h in hosts)}


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
    a ConnectionError to redis-py, so a wrong password was retried for ~33 s)."""

    def call_with_retry(self, do: Any, fail: Any, *args: Any, **kwargs: Any) -> Any:
        def attempt() -> Any:
            try:
                return do()
            except AuthenticationError as exc:
                raise _login(exc) from exc

        return super().call_with_retry(attempt, fail, *args, **kwargs)


class _AsyncRetry(AsyncRetry):
    async def call_with_retry(self, do: Any, fail: Any, *args: Any, **kwargs: Any) -> Any:
        async def attempt() -> Any:
            try:
                return await do()
            except AuthenticationError as exc:
                raise _login(exc) from exc

        return await super().call_with_retry(attempt, fail, *args, **kwargs)


def _redis_options(settings: Settings, url: str) -> dict[str, Any]:
    """Credentials and TLS of a Redis client: from the settings, never from the URL's text
    (a URL is logged and shown; a SecretStr is not)."""
    options: dict[str, Any] = {}
    if settings.redis_username:
        options["username"] = settings.redis_username
    if settings.redis_password is not None:
        options["password"] = settings.redis_password.get_secret_value()
    if url.startswith("rediss://"):
        options["ssl_cert_reqs"] = "required"
        if settings.redis_ca_file:
            options["ssl_ca_certs"] = settings.redis_ca_file
        if settings.redis_cert_file:
            options["ssl_certfile"] = settings.redis_cert_file
            options["ssl_keyfile"] = settings.redis_key_file
    return options


def redis_client(settings: Settings, url: str | None = None, **options: Any) -> redis.Redis:
    """A client of ``url`` (default ``settings.redis_url``) that rides out a Redis restart:
    it reconnects with backoff for up to ~30 s, but says at once when its login is refused."""
    url = url or settings.redis_url
    return redis.Redis.from_url(
        url,
        retry=_Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=20),
        retry_on_error=[ConnectionError, TimeoutError, BusyLoadingError],
        socket_timeout=30,
        socket_connect_timeout=5,
        health_check_interval=30,
        **_redis_options(settings, url),
        **options,
    )


def async_redis_client(settings: Settings, url: str | None = None) -> aioredis.Redis:
    """The query service's client: short timeouts, a request fails rather than waits."""
    url = url or settings.redis_url
    return aioredis.Redis.from_url(
        url,
        retry=_AsyncRetry(ExponentialBackoff(cap=1.0, base=0.05), retries=2),
        socket_connect_timeout=5,
        socket_timeout=10,
        **_redis_options(settings, url),
    )
