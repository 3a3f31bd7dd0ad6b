"""Writes cancelled at random points never leave half their rows nor a stuck database.

Hypothesis draws a sequence of writes against a real ``SqliteDatabase`` file:
group-committed ``write()`` calls and ``transaction()`` bodies, some failing on
purpose, some awaited one by one and some started together, and cancels some
of them after a random number of event-loop turns (so a cancellation lands
while the write waits in the queue or for the lock, while its ``BEGIN`` runs,
inside the body, or during ``COMMIT``). After every sequence:

* a write that returned is stored in full, one that failed is absent, and a
  cancelled one is either stored in full or absent, never in part;
* neither connection is left inside a transaction, and the database accepts
  both kinds of write again;
* ``close()`` finishes (a hang fails the test, it is not a timing claim).
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coral.store.sqlite import Migration, SqliteDatabase

#: Bounds a hang in close() so it fails the test instead of stalling the suite.
HANG_GUARD_S = 60

MIGRATIONS = [Migration(1, "CREATE TABLE rows (op INTEGER NOT NULL, part INTEGER NOT NULL)")]


class Refused(Exception):
    """A write that fails on purpose after inserting some of its rows."""


@dataclass(frozen=True)
class Op:
    kind: Literal["write", "transaction"]
    rows: int
    fails: bool
    cancel_after: int | None  # event-loop turns before task.cancel(); None: never
    together_with_next: bool  # start the next op before this one is awaited


ops_strategy = st.lists(
    st.builds(
        Op,
        kind=st.sampled_from(["write", "transaction"]),
        rows=st.integers(1, 3),
        fails=st.booleans(),
        cancel_after=st.none() | st.integers(0, 12),
        together_with_next=st.booleans(),
    ),
    min_size=1,
    max_size=10,
)


def insert_rows(op_id: int, op: Op) -> object:
    def fn(conn: sqlite3.Connection) -> int:
        for part in range(op.rows):
            conn.execute("INSERT INTO rows (op, part) VALUES (?, ?)", (op_id, part))
            if op.fails and part == op.rows - 1:
                raise Refused(op_id)
        return op_id

    return fn


async def run_op(db: SqliteDatabase, op_id: int, op: Op) -> None:
    if op.kind == "write":
        await db.write(insert_rows(op_id, op))  # type: ignore[arg-type]
        return
    async with db.transaction() as conn:
        for part in range(op.rows):
            await conn.execute("INSERT INTO rows (op, part) VALUES (?, ?)", (op_id, part))
            await asyncio.sleep(0)
        if op.fails:
            raise Refused(op_id)


async def cancel_later(task: asyncio.Task[None], turns: int) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()


async def scenario(path: Path, ops: list[Op]) -> None:
    db = SqliteDatabase(path)
    await db.open()
    await db.migrate("test", MIGRATIONS)
    tasks: list[asyncio.Task[None]] = []
    cancellers: list[asyncio.Task[None]] = []
    for op_id, op in enumerate(ops):
        task = asyncio.create_task(run_op(db, op_id, op))
        tasks.append(task)
        if op.cancel_after is not None:
            cancellers.append(asyncio.create_task(cancel_later(task, op.cancel_after)))
        if not op.together_with_next:
            await asyncio.wait(tasks)
    await asyncio.wait(tasks + cancellers)

    counts = {
        int(row[0]): int(row[1])
        for row in await db.fetchall("SELECT op, COUNT(*) FROM rows GROUP BY op")
    }
    for op_id, (op, task) in enumerate(zip(ops, tasks, strict=True)):
        stored = counts.get(op_id, 0)
        if task.cancelled():
            assert stored in (0, op.rows), f"cancelled op {op_id} left {stored}/{op.rows} rows"
        elif isinstance(task.exception(), Refused):
            assert stored == 0, f"failed op {op_id} left {stored} rows"
        else:
            assert task.exception() is None, task.exception()
            assert stored == op.rows, f"committed op {op_id} has {stored}/{op.rows} rows"

    assert not db.conn.in_transaction
    assert not await db.run(lambda conn: conn.in_transaction)
    after = len(ops)
    await db.write(lambda conn: conn.execute("INSERT INTO rows VALUES (?, 0)", (after,)))
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO rows VALUES (?, 0)", (after + 1,))
    row = await db.fetchone("SELECT COUNT(*) FROM rows WHERE op >= ?", (after,))
    assert row is not None and row[0] == 2
    await asyncio.wait_for(db.close(), HANG_GUARD_S)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops_strategy)
def test_cancelled_writes_are_whole_or_absent_and_the_database_stays_usable(
    ops: list[Op],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp) / "db.sqlite", ops))
