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
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError
from redis.retry import Retry

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


def redis_client(settings: Settings, url: str | None = None, **options: Any) -> redis.Redis:
    """A client of ``url`` (default ``settings.redis_url``) that rides out a Redis restart:
    it reconnects with backoff for up to ~30 s."""
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=20)
    return redis.Redis.from_url(
        url or settings.redis_url,
        retry=retry,
        retry_on_error=[ConnectionError, TimeoutError, BusyLoadingError],
        socket_timeout=30,
        socket_connect_timeout=5,
        health_check_interval=30,
        **options,
    )


def async_redis_client(settings: Settings, url: str | None = None) -> aioredis.Redis:
    """The query service's client: short timeouts, a request fails rather than waits."""
    return aioredis.Redis.from_url(
        url or settings.redis_url, socket_connect_timeout=5, socket_timeout=10
    )
