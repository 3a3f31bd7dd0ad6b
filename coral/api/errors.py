"""The one mapping from typed errors to gRPC status codes and HTTP statuses."""

from __future__ import annotations

from typing import Any

import grpc

from coral.protocol.errors import CoralError, StorageUnavailable

HTTP_STATUS = {
    "invalid": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "exhausted": 429,
    "unavailable": 503,
    "internal": 500,
}

GRPC_STATUS = {
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "forbidden": grpc.StatusCode.PERMISSION_DENIED,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "conflict": grpc.StatusCode.ALREADY_EXISTS,
    "exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "internal": grpc.StatusCode.INTERNAL,
}

#: Trailing-metadata key carrying the machine-readable reason on gRPC errors.
GRPC_REASON_KEY = "coral-reason"


def as_coral_error(exc: BaseException) -> CoralError | None:
    """The typed error an adapter reports for ``exc``, or None for a server bug.

    A database that cannot serve (locked, read-only, missing, full) is the
    operator's to fix and the caller's to retry: StorageUnavailable. The stores
    map what they can themselves; what escapes them is recognised by the
    DB-API (PEP 249) category every driver names ``OperationalError``
    (sqlite3, aiosqlite, psycopg), so adapters import no driver.
    """
    if isinstance(exc, CoralError):
        return exc
    if _is_operational_error(exc):
        return StorageUnavailable(f"storage unavailable: {exc}")
    return None


def _is_operational_error(exc: BaseException) -> bool:
    return any(cls.__name__ == "OperationalError" for cls in type(exc).__mro__)


def http_status(error: CoralError) -> int:
    return HTTP_STATUS.get(error.category, 400)


def grpc_status(error: CoralError) -> grpc.StatusCode:
    return GRPC_STATUS.get(error.category, grpc.StatusCode.INVALID_ARGUMENT)


def problem(error: CoralError) -> dict[str, Any]:
    """RFC 9457 problem+json body for an error."""
    status = http_status(error)
    return {
        "type": f"urn:coral:problem:{error.reason}",
        "title": error.reason.replace("_", " "),
        "status": status,
        "reason": error.reason,
        "detail": error.detail,
    }
