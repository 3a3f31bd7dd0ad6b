"""Durable ledger throughput: single vs group-committed transfers, against raw inserts.

Run: python benchmarks/bench_ledger.py [--n 400] [--concurrency 64] [--no-postgres]

For SQLite (WAL, synchronous=FULL) and, when its binaries exist, a throwaway
PostgreSQL server with fsync on, it measures in one run:
  * ledger transfers/s submitted one at a time (one durable commit each),
  * ledger transfers/s from many concurrent submitters (group commit),
  * raw inserts of the same transfer rows with the same durability, committed
    one row per transaction and in groups of the size the ledger achieved.
Only the in-run ratios are meaningful on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType

import asyncpg

from coral.ledger import Account, AccountFlags, AccountKind, LedgerStore, Transfer
from coral.store.ledger_postgres import MIGRATIONS as PG_MIGRATIONS
from coral.store.ledger_postgres import PostgresLedgerStore
from coral.store.ledger_sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from coral.store.ledger_sqlite import TRANSFER_COLUMNS, SqliteLedgerStore, transfer_values

AGENTS = [f"agent{i}" for i in range(16)]


def load_throwaway_postgres() -> ModuleType:
    """Import the test suite's throwaway-server helper by path (benchmarks are not a package)."""
    path = Path(__file__).resolve().parents[1] / "tests" / "ledger" / "throwaway_postgres.py"
    spec = importlib.util.spec_from_file_location("throwaway_postgres", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_transfers(prefix: str, n: int) -> list[Transfer]:
    return [
        Transfer(f"{prefix}{i}", AGENTS[i % 16], AGENTS[(i * 7 + 3) % 16 or 1], 1 + i % 5)
        for i in range(n)
        if AGENTS[i % 16] != AGENTS[(i * 7 + 3) % 16 or 1]
    ]


async def prepare(store: LedgerStore) -> None:
    accounts = [Account("op", "usd", kind=AccountKind.OPERATOR)]
    accounts += [
        Account(a, "usd", flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS) for a in AGENTS
    ]
    await store.create_accounts(accounts, 0)
    await store.create_transfers([Transfer(f"fund-{a}", "op", a, 10**9) for a in AGENTS], 0)


async def ledger_single(store: LedgerStore, transfers: list[Transfer]) -> float:
    start = time.perf_counter()
    for t in transfers:
        [result] = await store.create_transfers([t], 1)
        assert result.ok, result.error
    return len(transfers) / (time.perf_counter() - start)


async def ledger_concurrent(store: LedgerStore, transfers: list[Transfer], workers: int) -> float:
    async def worker(k: int) -> None:
        for t in transfers[k::workers]:
            [result] = await store.create_transfers([t], 1)
            assert result.ok, result.error

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(workers)))
    return len(transfers) / (time.perf_counter() - start)


def raw_sqlite(path: Path, transfers: list[Transfer], group: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    for statement in SQLITE_MIGRATIONS[0].sql.split(";"):
        if statement.strip() and "ledger_transfers" in statement and "INDEX" not in statement:
            conn.execute(statement.replace("REFERENCES ledger_accounts(id)", ""))
    rows = [transfer_values(t) for t in transfers]
    sql = f"INSERT INTO ledger_transfers ({TRANSFER_COLUMNS}) VALUES ({', '.join('?' * 14)})"
    start = time.perf_counter()
    for i in range(0, len(rows), group):
        conn.execute("BEGIN")
        conn.executemany(sql, rows[i : i + group])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(rows) / elapsed


async def raw_postgres(dsn: str, transfers: list[Transfer], group: int) -> float:
    conn = await asyncpg.connect(dsn)
    create = PG_MIGRATIONS[0][1].split("CREATE INDEX")[0].split("CREATE TABLE ledger_transfers")[1]
    await conn.execute("DROP TABLE IF EXISTS raw_transfers")
    await conn.execute(
        "CREATE TABLE raw_transfers" + create.replace("REFERENCES ledger_accounts(id)", "")
    )
    rows = [transfer_values(t) for t in transfers]
    marks = ", ".join(f"${i}" for i in range(1, 15))
    sql = f"INSERT INTO raw_transfers ({TRANSFER_COLUMNS}) VALUES ({marks})"
    start = time.perf_counter()
    for i in range(0, len(rows), group):
        async with conn.transaction():
            await conn.executemany(sql, rows[i : i + group])
    elapsed = time.perf_counter() - start
    await conn.close()
    return len(rows) / elapsed


async def measure(
    name: str,
    open_store: Callable[[], Awaitable[SqliteLedgerStore | PostgresLedgerStore]],
    raw: Callable[[list[Transfer], int], Awaitable[float]],
    n: int,
    workers: int,
) -> list[tuple[str, float]]:
    store = await open_store()
    await prepare(store)
    single = await ledger_single(store, make_transfers("s", n))
    stats = store.group_commit_stats
    groups_before, subs_before = stats.groups, stats.submissions
    concurrent = await ledger_concurrent(store, make_transfers("c", n * 10), workers)
    mean_group = max(1, round((stats.submissions - subs_before) / (stats.groups - groups_before)))
    await store.close()
    raw_single = await raw(make_transfers("rs", n), 1)
    raw_grouped = await raw(make_transfers("rg", n * 10), mean_group)
    return [
        (f"{name}: ledger, one transfer per commit", single),
        (f"{name}: raw INSERT, one row per commit", raw_single),
        (f"{name}: ledger single / raw single", single / raw_single),
        (f"{name}: ledger, {workers} concurrent submitters (group commit)", concurrent),
        (f"{name}: mean group size achieved", float(mean_group)),
        (f"{name}: raw INSERT, {mean_group} rows per commit", raw_grouped),
        (f"{name}: ledger grouped / raw grouped", concurrent / raw_grouped),
        (f"{name}: group commit speed-up (grouped / single)", concurrent / single),
    ]


async def run(n: int, workers: int, with_postgres: bool) -> None:
    results: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(100))

        async def raw_sqlite_async(transfers: list[Transfer], group: int) -> float:
            return raw_sqlite(Path(tmp) / f"raw{next(counter)}.db", transfers, group)

        results += await measure(
            "SQLite",
            lambda: SqliteLedgerStore.open(Path(tmp) / "ledger.db"),
            raw_sqlite_async,
            n,
            workers,
        )
    helper = load_throwaway_postgres()
    if with_postgres and helper.find_postgres_bin() is not None:
        server = helper.ThrowawayPostgres(durable=True)
        server.start()
        try:

            async def raw_pg(transfers: list[Transfer], group: int) -> float:
                return await raw_postgres(server.dsn, transfers, group)

            results += await measure(
                "PostgreSQL",
                lambda: PostgresLedgerStore.open(server.dsn, pool_size=4),
                raw_pg,
                n,
                workers,
            )
        finally:
            server.stop()
    elif with_postgres:
        print("PostgreSQL binaries not found: PostgreSQL figures skipped", file=sys.stderr)
    for label, value in results:
        shown = f"{value:,.2f}x" if ("/" in label or "speed-up" in label) else f"{value:,.0f}"
        if "group size" in label:
            shown = f"{value:.0f}"
        print(f"| {label} | {shown} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="transfers in the single-commit runs")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(args.n, args.concurrency, not args.no_postgres))


if __name__ == "__main__":
    main()
