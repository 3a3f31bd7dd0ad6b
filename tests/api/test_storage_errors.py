"""Adapters map a database that cannot serve to StorageUnavailable without importing a driver."""

from __future__ import annotations

import sqlite3

import pytest

from coral.api.errors import as_coral_error, http_status
from coral.protocol.errors import Conflict, StorageUnavailable


def test_a_driver_operational_error_is_storage_unavailable() -> None:
    error = as_coral_error(sqlite3.OperationalError("database is locked"))
    assert isinstance(error, StorageUnavailable)
    assert http_status(error) == 503 and "database is locked" in error.detail


def test_a_subclass_of_a_driver_operational_error_counts_too() -> None:
    class Disk(sqlite3.OperationalError):
        pass

    assert isinstance(as_coral_error(Disk("disk I/O error")), StorageUnavailable)


@pytest.mark.parametrize("exc", [ValueError("x"), sqlite3.IntegrityError("unique"), KeyError("k")])
def test_other_exceptions_are_server_bugs(exc: BaseException) -> None:
    assert as_coral_error(exc) is None


def test_typed_errors_pass_through() -> None:
    conflict = Conflict("taken")
    assert as_coral_error(conflict) is conflict
