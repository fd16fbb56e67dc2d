"""Dead letters: a refused record's key and bytes, with why, on the dead-letter topic.

A record is acked only once its dead letter is on Kafka, so none is committed without one. A
dead letter must therefore always be sendable: one that Kafka cannot take as it is (larger than
the producer's request limit, or refused by the broker as too large) is sent with the
original's first bytes only, its size and digest, and where it was (topic, partition, offset),
so a record of any size is never a poison pill that stops the partition for good. A send that
fails for any other reason (the broker down) is retried with backoff, the record unacked.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from processors import metrics
from processors.validate import DeadLetter

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
TRUNCATED_BYTES = 4096  # of the original, in a dead letter that could not carry it whole
HEADROOM_BYTES = 4096  # a record's framing and headers beside the key and value
_RETRYING: set[asyncio.Future[None]] = set()


@dataclass(frozen=True)
class Letter:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def letter(
    dead: DeadLetter,
    key: bytes | None,
    value: bytes | None,
    source: str,
    max_bytes: int,
    truncate: bool = False,
) -> Letter:
    """The dead letter of a record found at ``source`` (``topic/partition/offset``): the
    original key and value, or (``truncate``, or too large for ``max_bytes``) their first
    bytes, with the original's size and SHA-256."""
    size = len(value or b"") + len(key or b"")
    headers = [
        ("reason", dead.reason.encode()),
        ("detail", dead.detail.encode()[:1000]),
        ("source", source.encode()),
    ]
    if truncate or size + HEADROOM_BYTES > max_bytes:
        headers += [
            ("truncated", b"true"),
            ("original_size", str(len(value or b"")).encode()),
            ("original_sha256", hashlib.sha256(value or b"").hexdigest().encode()),
        ]
        key = key[:256] if key is not None else None
        value = value[:TRUNCATED_BYTES] if value is not None else None
    return Letter(key, value, headers)


def _too_large(error: BaseException | None) -> bool:
    """Kafka refused the record for its size (aiokafka's MessageSizeTooLargeError, the broker's
    RecordTooLarge / MessageSizeTooLarge): sending it again as it is cannot succeed."""
    name = type(error).__name__ if error is not None else ""
    return "TooLarge" in name or "too large" in str(error).lower()


async def send_dead_letter(
    topic: Any,
    event: Any,
    dead: DeadLetter,
    copies: Callable[[], list[Any]],
    attempt: int = 0,
    truncate: bool = False,
) -> None:
    """Send the dead letter of ``event``'s record; ack the record, and its copies read again
    meanwhile (``copies()``), once it is on Kafka. Never raises: a failure is retried later."""
    msg = event.message
    app = getattr(topic, "app", None)
    max_bytes = int(app.conf.producer_max_request_size) if app is not None else 1_000_000
    out = letter(
        dead, msg.key, msg.value, f"{msg.topic}/{msg.partition}/{msg.offset}", max_bytes, truncate
    )
    if out.value is not msg.value:
        metrics.DEAD_LETTERS_TRUNCATED.inc()
    try:
        fut = await topic.send(key=out.key, value=out.value, headers=out.headers)
    except Exception as exc:  # refused before sending (too large, producer stopping)
        _send_later(topic, event, dead, copies, attempt, exc)
        return
    fut.add_done_callback(functools.partial(_when_sent, topic, event, dead, copies, attempt))


def _when_sent(
    topic: Any, event: Any, dead: DeadLetter, copies: Callable[[], list[Any]], attempt: int,
    fut: Any,
) -> None:  # fmt: skip
    if not fut.cancelled() and fut.exception() is None:
        event.ack()
        for handle in copies():
            handle.ack()
    elif not fut.cancelled():  # cancelled: the app is stopping; unacked, a restart redoes it
        _send_later(topic, event, dead, copies, attempt, fut.exception())


def _send_later(
    topic: Any, event: Any, dead: DeadLetter, copies: Callable[[], list[Any]], attempt: int,
    error: BaseException | None,
) -> None:  # fmt: skip
    truncate = _too_large(error)
    delay = 0.0 if truncate and attempt == 0 else min(MAX_BACKOFF_S, 2.0**attempt)
    log.error(
        "dead letter for %s/%s/%s not delivered (%s: %s); retrying%s in %.0f s",
        event.message.topic, event.message.partition, event.message.offset,
        type(error).__name__, error, " truncated" if truncate else "", delay,
    )  # fmt: skip
    metrics.DEAD_LETTER_RETRIES.inc()

    def again() -> None:
        task = asyncio.ensure_future(
            send_dead_letter(topic, event, dead, copies, attempt + 1, truncate)
        )
        _RETRYING.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(_RETRYING.discard)

    asyncio.get_running_loop().call_later(delay, again)
