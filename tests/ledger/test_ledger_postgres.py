"""PostgreSQL-specific guarantees: immutable rows, idempotent migrations, shared commits."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from coral.ledger import Account, AccountFlags, AccountKind, Transfer, find_violations
from coral.store.ledger_postgres import PostgresLedgerStore
from tests.ledger.ledger_support import create_database
from tests.support.throwaway_postgres import ThrowawayPostgres

pytestmark = pytest.mark.postgres


async def test_schema_is_immutable_and_migrations_are_idempotent(
    postgres_server: ThrowawayPostgres,
) -> None:
    dsn = await create_database(postgres_server)
    store = await PostgresLedgerStore.open(dsn, pool_size=2)
    await store.create_accounts(
        [Account("op", "usd", kind=AccountKind.OPERATOR), Account("a", "usd")], 0
    )
    await store.create_transfers([Transfer("fixed", "op", "a", 5)], 1)
    await store.close()
    again = await PostgresLedgerStore.open(dsn, pool_size=2)  # migrations already applied
    await again.close()
    conn = await asyncpg.connect(dsn)
    try:
        with pytest.raises(asyncpg.RaiseError, match="immutable"):
            await conn.execute("UPDATE ledger_transfers SET amount = 500 WHERE id = 'fixed'")
        with pytest.raises(asyncpg.RaiseError, match="immutable"):
            await conn.execute("DELETE FROM ledger_transfers WHERE id = 'fixed'")
        versions = await conn.fetchval(
            "SELECT COUNT(*) FROM schema_migrations WHERE component = 'ledger'"
        )
        assert versions == 1
    finally:
        await conn.close()


async def test_concurrent_submitters_share_commits_on_postgres(
    postgres_store: PostgresLedgerStore,
) -> None:
    await postgres_store.create_accounts(
        [Account("op", "usd", kind=AccountKind.OPERATOR), Account("a", "usd")], 0
    )
    before = postgres_store.group_commit_stats.groups
    results = await asyncio.gather(
        *(postgres_store.create_transfers([Transfer(f"t{i}", "op", "a", 1)], 2) for i in range(100))
    )
    assert all(r[0].ok for r in results)
    assert postgres_store.group_commit_stats.groups - before < 20
    state = await postgres_store.load_snapshot()
    assert state.accounts["a"].credits_posted == 100 and find_violations(state) == []


async def test_two_stores_on_one_database_keep_balances_exact(
    postgres_server: ThrowawayPostgres,
) -> None:
    # Two writers (as two node processes would be) lock the accounts a group touches,
    # so their groups serialize on those rows and no update is lost.
    dsn = await create_database(postgres_server)
    first = await PostgresLedgerStore.open(dsn, pool_size=2)
    second = await PostgresLedgerStore.open(dsn, pool_size=2)
    try:
        names = ["a", "b", "c"]
        await first.create_accounts(
            [Account("op", "usd", kind=AccountKind.OPERATOR)]
            + [Account(n, "usd", flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS) for n in names],
            0,
        )
        await first.create_transfers([Transfer(f"fund-{n}", "op", n, 1000) for n in names], 1)
        moves = [
            (store, Transfer(f"m{i}", names[i % 3], names[(i + 1) % 3], 1 + i % 4))
            for i in range(120)
            for store in [(first, second)[i % 2]]
        ]
        results = await asyncio.gather(*(s.create_transfers([t], 2) for s, t in moves))
        assert all(r.ok for [r] in results)
        state = await second.load_snapshot()
        assert find_violations(state) == []
        for n in names:
            sent = sum(t.amount for _, t in moves if t.debit_account == n)
            received = sum(t.amount for _, t in moves if t.credit_account == n)
            assert state.accounts[n].balance == 1000 - sent + received
    finally:
        await first.close()
        await second.close()
