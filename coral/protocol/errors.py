"""Typed protocol errors.

Every error carries a stable machine-readable ``reason`` (snake_case) that the
adapters expose unchanged: gRPC puts it in the status details, HTTP in the
problem+json ``reason`` member, and metrics count rejections by it.
"""

from __future__ import annotations


class CoralError(Exception):
    """Base class for every error the node reports to a caller."""

    reason: str = "error"
    #: Which adapter status family this maps to: invalid, unauthenticated,
    #: forbidden, not_found, conflict, exhausted, unavailable, internal.
    category: str = "invalid"
    #: Seconds after which a retry may succeed (HTTP ``Retry-After``), when known.
    retry_after_s: int | None = None

    def __init__(self, detail: str = "", *, reason: str | None = None) -> None:
        super().__init__(detail or self.reason)
        self.detail = detail or self.reason
        if reason is not None:
            self.reason = reason


class InvalidMessage(CoralError):
    """The input is not a well-formed message (syntax, schema or limits)."""

    reason = "invalid_message"


class MalformedJson(InvalidMessage):
    reason = "malformed_json"


class MalformedProtobuf(InvalidMessage):
    reason = "malformed_protobuf"


class UnknownField(InvalidMessage):
    reason = "unknown_field"


class InvalidUtf8(InvalidMessage):
    reason = "invalid_utf8"


class LimitExceeded(InvalidMessage):
    """A named size limit was exceeded (see ``coral.protocol.limits``)."""

    reason = "limit_exceeded"


class TooDeep(LimitExceeded):
    reason = "too_deep"


class TooLarge(LimitExceeded):
    reason = "too_large"


class NonCanonicalNumber(InvalidMessage):
    reason = "non_canonical_number"


class InvalidIdentity(InvalidMessage):
    """A did:key (or key material) could not be decoded."""

    reason = "invalid_did"


class SignatureError(CoralError):
    """The signature is missing, malformed, or does not verify."""

    reason = "bad_signature"
    category = "unauthenticated"


class MissingSignature(SignatureError):
    reason = "missing_signature"


class FreshnessError(CoralError):
    """The message is outside its valid time window or was seen before."""

    reason = "stale"


class Replayed(FreshnessError):
    reason = "replayed"
    category = "conflict"


class Expired(FreshnessError):
    reason = "expired"


class FromFuture(FreshnessError):
    reason = "from_future"


class NotFound(CoralError):
    reason = "not_found"
    category = "not_found"


class Forbidden(CoralError):
    reason = "forbidden"
    category = "forbidden"


class Unauthenticated(CoralError):
    reason = "unauthenticated"
    category = "unauthenticated"


class Conflict(CoralError):
    reason = "conflict"
    category = "conflict"


class ResourceExhausted(CoralError):
    reason = "resource_exhausted"
    category = "exhausted"


class StorageUnavailable(CoralError):
    reason = "storage_unavailable"
    category = "unavailable"
