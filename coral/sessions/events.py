"""Event fan-out for websockets, and the session-end webhook signature.

``EventBus`` hands every published event to each current subscriber's
bounded queue; a subscriber too slow to keep up loses its oldest events
rather than slowing the node. Webhooks are signed as coral-server signs them
(``X-Coral-Signature: hex(HMAC-SHA256(secret, body))``) and, so a receiver can
refuse a replay, also over ``timestamp + "." + body`` with the timestamp sent
in ``X-Coral-Timestamp``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import Iterator
from typing import Any

SIGNATURE_HEADER = "X-Coral-Signature"
TIMESTAMP_HEADER = "X-Coral-Timestamp"
TIMESTAMPED_SIGNATURE_HEADER = "X-Coral-Signature-Timestamped"
QUEUE_SIZE = 1000


class EventBus:
    """Publish/subscribe of JSON-ready events; never blocks the publisher."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[dict[str, Any] | None]] = set()

    def publish(self, event: dict[str, Any]) -> None:
        """Give ``event`` to every subscriber (dropping its oldest when it is full)."""
        for queue in self._queues:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

    def close(self) -> None:
        """End every subscription (each receives ``None``)."""
        for queue in self._queues:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(None)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[dict[str, Any] | None]]:
        """A queue of events from now on, until the ``with`` block ends."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)


def sign_body(secret: str, body: bytes) -> str:
    """coral-server's ``X-Coral-Signature``: lowercase hex HMAC-SHA256 of the body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_headers(secret: str, body: bytes, now_s: int) -> dict[str, str]:
    """Headers for a signed webhook: coral-server's signature plus a timestamped one."""
    stamp = str(now_s)
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign_body(secret, body),
        TIMESTAMP_HEADER: stamp,
        TIMESTAMPED_SIGNATURE_HEADER: sign_body(secret, stamp.encode() + b"." + body),
    }


def verify_webhook(
    secret: str, body: bytes, headers: dict[str, str], now_s: int, max_age_s: int = 300
) -> bool:
    """What a receiver does: check both signatures and refuse stale timestamps."""
    stamp = headers.get(TIMESTAMP_HEADER, "")
    if not stamp.isdigit() or abs(now_s - int(stamp)) > max_age_s:
        return False
    plain = hmac.compare_digest(headers.get(SIGNATURE_HEADER, ""), sign_body(secret, body))
    timed = sign_body(secret, stamp.encode() + b"." + body)
    return plain and hmac.compare_digest(headers.get(TIMESTAMPED_SIGNATURE_HEADER, ""), timed)
