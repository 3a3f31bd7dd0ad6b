"""Group commit: concurrent submitters share commits, and a failed commit stores nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from coral.ledger import Account, AccountKind, Transfer, find_violations
from coral.protocol.errors import StorageUnavailable
from coral.store.ledger_sqlite import SqliteLedgerStore


async def open_funded(path: Path) -> SqliteLedgerStore:
    store = await SqliteLedgerStore.open(path)
    await store.create_accounts(
        [Account("op", "usd", kind=AccountKind.OPERATOR), Account("a", "usd"), Account("b", "usd")],
        0,
    )
    return store


async def test_concurrent_submissions_share_commits(tmp_path: Path) -> None:
    store = await open_funded(tmp_path / "l.db")
    try:
        before = store.group_commit_stats.groups
        results = await asyncio.gather(
            *(store.create_transfers([Transfer(f"t{i}", "op", "a", 1)], 5) for i in range(200))
        )
        assert all(r[0].ok for r in results)
        groups = store.group_commit_stats.groups - before
        assert groups < 20, f"200 concurrent submissions took {groups} commits"
        assert (await store.get_account("a")).credits_posted == 200  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_failed_commit_fails_the_whole_group_and_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    store = await open_funded(path)
    # Make the database itself refuse one row, as a full disk or I/O error would.
    with sqlite3.connect(path) as side:
        side.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON ledger_transfers WHEN NEW.memo = 'boom'"
            " BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
    side.close()
    try:
        before = store.group_commit_stats.groups
        outcomes = await asyncio.gather(
            *(
                store.create_transfers([Transfer(f"g{i}", "op", "a", 1, memo=memo)], 5)
                for i, memo in enumerate(["", "", "boom", ""])
            ),
            return_exceptions=True,
        )
        assert store.group_commit_stats.groups - before == 1
        assert all(isinstance(o, StorageUnavailable) for o in outcomes)
        state = await store.load_snapshot()
        assert not any(t.startswith("g") for t in state.transfers)
        assert state.accounts["a"].credits_posted == 0 and find_violations(state) == []
        # Nothing was half-written, so the same ids go through once the fault is gone.
        with sqlite3.connect(path) as side:
            side.execute("DROP TRIGGER boom")
        side.close()
        [retry] = await store.create_transfers([Transfer("g0", "op", "a", 1)], 6)
        assert retry.ok and not retry.duplicate
    finally:
        await store.close()


async def test_close_commits_queued_writes_then_refuses_new_ones(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    store = await open_funded(path)
    pending = [
        asyncio.ensure_future(store.create_transfers([Transfer(f"q{i}", "op", "b", 2)], 7))
        for i in range(10)
    ]
    await asyncio.sleep(0)
    await store.close()
    assert all(f.result()[0].ok for f in pending)
    with pytest.raises(StorageUnavailable):
        await store.create_transfers([Transfer("late", "op", "b", 1)], 8)
    reopened = await SqliteLedgerStore.open(path)
    try:
        assert (await reopened.get_account("b")).credits_posted == 20  # type: ignore[union-attr]
    finally:
        await reopened.close()


async def test_transfer_rows_are_immutable_in_the_database(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    store = await open_funded(path)
    await store.create_transfers([Transfer("fixed", "op", "a", 5)], 1)
    await store.close()
    with sqlite3.connect(path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="immutable"):
            conn.execute("UPDATE ledger_transfers SET amount = 500 WHERE id = 'fixed'")
        with pytest.raises(sqlite3.IntegrityError, match="immutable"):
            conn.execute("DELETE FROM ledger_transfers WHERE id = 'fixed'")
    conn.close()


async def test_ledger_database_runs_fully_synchronous(tmp_path: Path) -> None:
    store = await SqliteLedgerStore.open(tmp_path / "l.db")
    try:
        row = await store._db.fetchone("PRAGMA synchronous")
        assert row is not None and row[0] == 2  # FULL
    finally:
        await store.close()
