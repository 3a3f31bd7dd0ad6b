"""Named size limits, checked before any expensive work (parse, verify)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a node accepts. Defaults suit agent chat traffic."""

    max_message_bytes: int = 256 * 1024
    max_parts: int = 64
    max_mentions: int = 64
    max_depth: int = 32
    #: Longest JSON number literal (digits, sign, point, exponent) a parser
    #: accepts; ledger amounts need 19 digits, so this leaves ample room while
    #: keeping Python's quadratic int-from-string conversion out of reach.
    max_number_chars: int = 100
    max_text_chars: int = 128 * 1024
    max_id_chars: int = 128
    #: Accepted clock skew into the future, in milliseconds.
    max_future_skew_ms: int = 5 * 60 * 1000
    #: A message older than this is refused even without expires_at.
    max_age_ms: int = 15 * 60 * 1000


DEFAULT_LIMITS = Limits()
