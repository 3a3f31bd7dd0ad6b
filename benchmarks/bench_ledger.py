"""Durable ledger throughput: single vs group-committed transfers, against raw inserts.

Run: python benchmarks/bench_ledger.py [--n 100] [--rounds 5] [--concurrency 64] [--no-postgres]

For SQLite (WAL, synchronous=FULL) and, when its binaries exist, a throwaway
PostgreSQL server with fsync on, each round runs four small blocks back to back:
  * ledger transfers submitted one at a time (one durable commit each),
  * raw INSERTs of the same kind of rows, one row per transaction,
  * ledger transfers from many concurrent submitters (group commit),
  * raw INSERTs committed in groups of the mean size the ledger block just
    achieved, so both sides of the grouped ratio pay the same number of
    commits (each a WAL sync; the counts are printed),
  * the same raw grouped INSERTs into a copy that also has the ledger table's
    two history indexes (by debit and by credit account): not the goal's
    baseline, it shows how much of the gap is index upkeep rather than the
    ledger's own work (validation, balances).
Rounds interleave, so a disk whose sync speed drifts hits both sides alike;
ratios are the median over rounds with their spread.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._stats import ratio
from coral.ledger import Account, AccountFlags, AccountKind, LedgerStore, Transfer
from coral.store.ledger_postgres import MIGRATIONS as PG_MIGRATIONS
from coral.store.ledger_postgres import PostgresLedgerStore
from coral.store.ledger_sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from coral.store.ledger_sqlite import TRANSFER_COLUMNS, SqliteLedgerStore, transfer_values

AGENTS = [f"agent{i}" for i in range(16)]


def load_throwaway_postgres() -> ModuleType:
    """Import the test suite's throwaway-server helper by path (benchmarks are not a package)."""
    path = Path(__file__).resolve().parents[1] / "tests" / "support" / "throwaway_postgres.py"
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
    return time.perf_counter() - start


async def ledger_concurrent(store: LedgerStore, transfers: list[Transfer], workers: int) -> float:
    async def worker(k: int) -> None:
        for t in transfers[k::workers]:
            [result] = await store.create_transfers([t], 1)
            assert result.ok, result.error

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(workers)))
    return time.perf_counter() - start


def _chunks(rows: list[Any], count: int) -> list[list[Any]]:
    """``rows`` split into ``count`` consecutive chunks whose sizes differ by at most one."""
    count = max(1, min(count, len(rows)))
    size, extra = divmod(len(rows), count)
    out, at = [], 0
    for i in range(count):
        step = size + (1 if i < extra else 0)
        out.append(rows[at : at + step])
        at += step
    return out


class RawSqlite:
    """Plain INSERTs of the same transfer rows into the same table, same WAL + FULL sync.

    No foreign keys and, unless ``indexed``, none of the table's secondary indexes.
    """

    def __init__(self, path: Path, *, indexed: bool = False) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        for statement in SQLITE_MIGRATIONS[0].sql.split(";"):
            if not statement.strip() or "ledger_transfers" not in statement:
                continue
            if "INDEX" not in statement or indexed:
                self.conn.execute(statement.replace("REFERENCES ledger_accounts(id)", ""))
        self.sql = (
            f"INSERT INTO ledger_transfers ({TRANSFER_COLUMNS}) VALUES ({', '.join('?' * 14)})"
        )

    async def insert(self, transfers: list[Transfer], commits: int) -> tuple[float, int]:
        """Seconds to insert the rows in ``commits`` transactions of near-equal size."""
        rows = [transfer_values(t) for t in transfers]
        start = time.perf_counter()
        for chunk in _chunks(rows, commits):
            self.conn.execute("BEGIN")
            self.conn.executemany(self.sql, chunk)
            self.conn.execute("COMMIT")
        return time.perf_counter() - start, min(commits, len(rows))

    async def close(self) -> None:
        self.conn.close()


class RawPostgres:
    """Plain INSERTs into a copy of the transfers table, same server, fsync on."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        marks = ", ".join(f"${i}" for i in range(1, 15))
        self.sql = f"INSERT INTO raw_transfers ({TRANSFER_COLUMNS}) VALUES ({marks})"

    @classmethod
    async def open(cls, dsn: str, *, indexed: bool = False) -> RawPostgres:
        """A fresh copy of the transfers table (no foreign keys; indexes only if ``indexed``)."""
        conn = await asyncpg.connect(dsn)
        create = (
            PG_MIGRATIONS[0].sql.split("CREATE INDEX")[0].split("CREATE TABLE ledger_transfers")[1]
        )
        table = "raw_transfers_indexed" if indexed else "raw_transfers"
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.execute(
            f"CREATE TABLE {table}" + create.replace("REFERENCES ledger_accounts(id)", "")
        )
        if indexed:
            await conn.execute(f"CREATE INDEX ON {table} (debit_account, seq)")
            await conn.execute(f"CREATE INDEX ON {table} (credit_account, seq)")
        raw = cls(conn)
        raw.sql = raw.sql.replace("raw_transfers", table)
        return raw

    async def insert(self, transfers: list[Transfer], commits: int) -> tuple[float, int]:
        """Seconds to insert the rows in ``commits`` transactions of near-equal size."""
        rows = [transfer_values(t) for t in transfers]
        start = time.perf_counter()
        for chunk in _chunks(rows, commits):
            async with self.conn.transaction():
                await self.conn.executemany(self.sql, chunk)
        return time.perf_counter() - start, min(commits, len(rows))

    async def close(self) -> None:
        await self.conn.close()


async def measure(
    name: str,
    store: SqliteLedgerStore | PostgresLedgerStore,
    raw: RawSqlite | RawPostgres,
    raw_indexed: RawSqlite | RawPostgres,
    n: int,
    workers: int,
    rounds: int,
) -> None:
    """Alternate small blocks: ledger single, raw single, ledger grouped, raw grouped (same commits)."""
    await prepare(store)
    stats = store.group_commit_stats
    single_l, single_r, group_l, group_r, group_ri = [], [], [], [], []
    commits_l = commits_r = sizes = 0
    for r in range(rounds):
        mine = make_transfers(f"s{r}-", n)
        single_l.append(len(mine) / await ledger_single(store, mine))
        singles = make_transfers(f"rs{r}-", n)
        seconds, _ = await raw.insert(singles, len(singles))
        single_r.append(len(singles) / seconds)
        batch = make_transfers(f"c{r}-", n * 4)
        groups0, subs0 = stats.groups, stats.submissions
        group_l.append(len(batch) / await ledger_concurrent(store, batch, workers))
        groups = stats.groups - groups0
        group_size = max(1, round((stats.submissions - subs0) / max(1, groups)))
        raw_batch = make_transfers(f"rg{r}-", n * 4)
        seconds, commits = await raw.insert(raw_batch, groups)
        group_r.append(len(raw_batch) / seconds)
        indexed_batch = make_transfers(f"ri{r}-", n * 4)
        seconds, _ = await raw_indexed.insert(indexed_batch, groups)
        group_ri.append(len(indexed_batch) / seconds)
        commits_l += groups
        commits_r += commits
        sizes += group_size
    print(f"| {name}: ledger, one transfer per commit | {statistics.median(single_l):,.0f} /s |")
    print(f"| {name}: raw INSERT, one row per commit | {statistics.median(single_r):,.0f} /s |")
    print(f"| {name}: **ledger single / raw single** | {ratio(single_l, single_r)} |")
    print(
        f"| {name}: ledger, {workers} concurrent submitters (group commit) |"
        f" {statistics.median(group_l):,.0f} /s |"
    )
    print(
        f"| {name}: raw INSERT, as many commits as the ledger's groups (mean size)"
        f" ({sizes / rounds:.0f}) | {statistics.median(group_r):,.0f} /s |"
    )
    grouped = ratio(group_l, group_r)
    verdict = "met" if grouped.median >= 0.5 else "MISSED"
    print(f"| {name}: **ledger grouped / raw grouped** (goal >= 0.5x: {verdict}) | {grouped} |")
    print(
        f"| {name}: commits (= WAL syncs) ledger vs raw, grouped blocks | {commits_l} vs {commits_r} |"
    )
    print(f"| {name}: group commit speed-up (grouped / single) | {ratio(group_l, single_l)} |")
    print(
        f"| {name}: raw INSERT, same commits, into a copy with the ledger's history indexes |"
        f" {statistics.median(group_ri):,.0f} /s |"
    )
    print(
        f"| {name}: ledger grouped / raw grouped with those indexes (attribution, not the goal)"
        f" | {ratio(group_l, group_ri)} |"
    )


async def run(n: int, workers: int, rounds: int, with_postgres: bool) -> None:
    print(f"{rounds} rounds; blocks of {n} single and {n * 4} grouped transfers, interleaved")
    print("| measure | value |")
    print("|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        store = await SqliteLedgerStore.open(Path(tmp) / "ledger.db")
        raw = RawSqlite(Path(tmp) / "raw.db")
        raw_indexed = RawSqlite(Path(tmp) / "raw_indexed.db", indexed=True)
        try:
            await measure("SQLite", store, raw, raw_indexed, n, workers, rounds)
        finally:
            await store.close()
            await raw.close()
            await raw_indexed.close()
    helper = load_throwaway_postgres()
    if with_postgres and helper.find_postgres_bin() is not None:
        server = helper.ThrowawayPostgres(durable=True)
        server.start()
        try:
            pg_store = await PostgresLedgerStore.open(server.dsn, pool_size=4)
            pg_raw = await RawPostgres.open(server.dsn)
            pg_raw_indexed = await RawPostgres.open(server.dsn, indexed=True)
            try:
                await measure("PostgreSQL", pg_store, pg_raw, pg_raw_indexed, n, workers, rounds)
            finally:
                await pg_store.close()
                await pg_raw.close()
                await pg_raw_indexed.close()
        finally:
            server.stop()
    elif with_postgres:
        print("PostgreSQL binaries not found: PostgreSQL figures skipped", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="transfers per single-commit block")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(args.n, args.concurrency, args.rounds, not args.no_postgres))


if __name__ == "__main__":
    main()
