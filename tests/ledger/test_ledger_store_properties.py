"""The stateful ledger property test, run against the SQLite and PostgreSQL stores and
the in-memory twin.

Same model, same random operations and the same invariants after every step
as for the pure state machine, but every step goes through the store's group
commit into a real database (the twin: through its port into memory) and the
invariants are checked on what the store holds (reloaded in full each step).
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from coral.ledger import Account, LedgerState, LedgerStore, Transfer, TransferResult
from coral.ledger.memory import MemoryLedgerStore
from coral.store.ledger_postgres import PostgresLedgerStore
from coral.store.ledger_sqlite import SqliteLedgerStore
from tests.ledger.ledger_model import LedgerMachine, LedgerUnderTest
from tests.ledger.ledger_support import create_database
from tests.support.throwaway_postgres import ThrowawayPostgres

T = TypeVar("T")


class StoreLedger(LedgerUnderTest):
    """Drives an async LedgerStore from the (synchronous) state machine on a private loop."""

    def __init__(
        self,
        open_store: Callable[[], Awaitable[LedgerStore]],
        count_rows: Callable[[], Awaitable[tuple[int, int]]],
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.store = self.loop.run_until_complete(open_store())
        self.count_rows = count_rows

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    def create_accounts(self, accounts: Sequence[Account], now: int) -> None:
        assert all(r.ok for r in self.run(self.store.create_accounts(accounts, now)))

    def create_transfers(self, batch: Sequence[Transfer], now: int) -> list[TransferResult]:
        return self.run(self.store.create_transfers(batch, now))

    def expire(self, now: int) -> set[str]:
        return {r.pending_id for r in self.run(self.store.expire_due(now))}

    def snapshot(self) -> LedgerState:
        rows, distinct_ids = self.run(self.count_rows())
        assert rows == distinct_ids, "a transfer id maps to more than one row"
        return self.run(self.store.load_snapshot())

    def close(self) -> None:
        self.run(self.store.close())
        self.loop.close()


STORE_SETTINGS = settings(
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
COUNT_SQL = "SELECT COUNT(*), COUNT(DISTINCT id) FROM ledger_transfers"


def test_sqlite_store_keeps_ledger_invariants() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = (Path(tmp) / f"ledger{i}.db" for i in range(10**6))

        class SqliteMachine(LedgerMachine):
            def make_ledger(self) -> LedgerUnderTest:
                path = next(paths)

                async def count() -> tuple[int, int]:
                    with sqlite3.connect(path) as conn:
                        row = conn.execute(COUNT_SQL).fetchone()
                    conn.close()
                    return int(row[0]), int(row[1])

                return StoreLedger(lambda: SqliteLedgerStore.open(path), count)

        run_state_machine_as_test(  # type: ignore[no-untyped-call]
            SqliteMachine, settings=settings(STORE_SETTINGS, max_examples=20)
        )


def test_memory_twin_keeps_ledger_invariants() -> None:
    class MemoryMachine(LedgerMachine):
        def make_ledger(self) -> LedgerUnderTest:
            store = MemoryLedgerStore()

            async def open_store() -> LedgerStore:
                return store

            async def count() -> tuple[int, int]:
                # Rows as the port shows them: every transfer is in its accounts' histories.
                ids_by_seq: dict[int, str] = {}
                for account_id in (await store.load_snapshot()).accounts:
                    for entry in await store.history(account_id, 0, 10**6):
                        ids_by_seq[entry.seq] = entry.transfer.id
                return len(ids_by_seq), len(set(ids_by_seq.values()))

            return StoreLedger(open_store, count)

    run_state_machine_as_test(  # type: ignore[no-untyped-call]
        MemoryMachine, settings=settings(STORE_SETTINGS, max_examples=20)
    )


@pytest.mark.postgres
def test_postgres_store_keeps_ledger_invariants(postgres_server: ThrowawayPostgres) -> None:
    class PostgresMachine(LedgerMachine):
        def make_ledger(self) -> LedgerUnderTest:
            dsn = ""

            async def open_store() -> LedgerStore:
                nonlocal dsn
                dsn = await create_database(postgres_server)
                return await PostgresLedgerStore.open(dsn, pool_size=2)

            async def count() -> tuple[int, int]:
                conn = await asyncpg.connect(dsn)
                try:
                    row = await conn.fetchrow(COUNT_SQL)
                finally:
                    await conn.close()
                assert row is not None
                return int(row[0]), int(row[1])

            return StoreLedger(open_store, count)

    run_state_machine_as_test(  # type: ignore[no-untyped-call]
        PostgresMachine, settings=settings(STORE_SETTINGS, max_examples=6)
    )
