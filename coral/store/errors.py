"""Which database driver errors mean "storage unavailable" (the adapters map them once).

A database that cannot serve (locked, read-only, missing, full) is the
operator's to fix and the caller's to retry; the adapters report it as
``coral.protocol.errors.StorageUnavailable`` without importing a driver.
"""

from __future__ import annotations

import sqlite3

#: Driver exceptions that mean the database cannot serve right now.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)


def is_storage_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` is a driver error meaning the database cannot serve."""
    return isinstance(exc, UNAVAILABLE_ERRORS)
