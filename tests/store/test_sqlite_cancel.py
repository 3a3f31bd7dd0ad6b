"""A write transaction cancelled at any point leaves the connection ready for the next one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from coral.store.sqlite import SqliteDatabase


@pytest.mark.parametrize("yields", [0, 1, 2, 3])
async def test_a_transaction_cancelled_while_it_begins_leaves_no_transaction_open(
    tmp_path: Path, yields: int
) -> None:
    db = SqliteDatabase(tmp_path / "x.db")
    await db.open()
    try:

        async def hold() -> None:
            async with db.transaction() as conn:
                await conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
                await asyncio.sleep(30)

        task = asyncio.create_task(hold())
        for _ in range(yields):  # cancel at different points: queued BEGIN, body, ...
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with db.transaction() as conn:  # would fail: "transaction within a transaction"
            await conn.execute("CREATE TABLE IF NOT EXISTS u (x INTEGER)")
        row = await db.fetchone("SELECT COUNT(*) FROM sqlite_master WHERE name = 't'")
        assert row is not None and row[0] == 0  # the cancelled transaction was rolled back
    finally:
        await db.close()
