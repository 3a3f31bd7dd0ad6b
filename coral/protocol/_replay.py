"""Freshness and replay protection, without a clock of its own.

A message is fresh when ``created_at`` is not too far in the future, not older
than the age bound, not past ``expires_at``, and its id has not been seen.
Seen ids are kept only as long as the age bound could still admit them, so
memory stays bounded by traffic within one window.
"""

from __future__ import annotations

import heapq

from coral.protocol.errors import Expired, FromFuture, Replayed
from coral.protocol.limits import DEFAULT_LIMITS, Limits
from coral.protocol.message import Message


class ReplayGuard:
    """Seen-id window plus time bounds; the caller passes the current time."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._seen: dict[str, int] = {}
        self._expiry_heap: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def check_time(self, message: Message, now_ms: int) -> None:
        """Raise FromFuture or Expired when the message is outside its window."""
        if message.created_at > now_ms + self._limits.max_future_skew_ms:
            raise FromFuture(
                f"created_at is {message.created_at - now_ms} ms in the future "
                f"(allowed skew {self._limits.max_future_skew_ms} ms)"
            )
        if message.expires_at is not None and message.expires_at <= now_ms:
            raise Expired("message expired")
        if now_ms - message.created_at > self._limits.max_age_ms:
            raise Expired(f"message is older than {self._limits.max_age_ms} ms")

    def check(self, message: Message, now_ms: int) -> None:
        """Check freshness and that the id is new, without recording it."""
        self.check_time(message, now_ms)
        self._prune(now_ms)
        if message.id in self._seen:
            raise Replayed(f"message id {message.id} was already accepted")

    def accept(self, message: Message, now_ms: int) -> None:
        """Check, then record the id as seen. Raises like ``check``."""
        self.check(message, now_ms)
        forget_at = message.created_at + self._limits.max_age_ms + 1
        self._seen[message.id] = forget_at
        heapq.heappush(self._expiry_heap, (forget_at, message.id))

    def _prune(self, now_ms: int) -> None:
        heap = self._expiry_heap
        while heap and heap[0][0] <= now_ms:
            _, mid = heapq.heappop(heap)
            self._seen.pop(mid, None)
