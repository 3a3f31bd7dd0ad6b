"""The dashboard's PostgreSQL reads: the same views as on SQLite, and one view for all replicas.

The same threads, messages and ledger transfers are written to a SQLite node
(its ``coral.db`` and ``ledger.db``) and to a PostgreSQL database; both
backends' reads, and the snapshot panels built from them, must come out
equal. That two replicas show the same snapshot is proven with real node
processes in ``tests/integration/test_postgres_replicas.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest

from coral.api.dashboard.ports import DashboardReads
from coral.api.dashboard.snapshot import SnapshotBuilder
from coral.coordination.ports import CoordinationStore, ThreadWrite
from coral.coordination.service import CoordinationService
from coral.ledger import LedgerService
from coral.ledger.model import AccountKind
from coral.protocol.identity import Identity
from coral.protocol.message import Message, TextPart, new_message_id
from coral.protocol.signing import sign_message
from coral.store.coordination_postgres import PostgresCoordinationStore
from coral.store.coordination_sqlite import SqliteCoordinationStore
from coral.store.dashboard_postgres import PostgresDashboardReads
from coral.store.dashboard_sqlite import SqliteDashboardReads
from coral.store.ledger_postgres import PostgresLedgerStore
from coral.store.ledger_sqlite import SqliteLedgerStore
from coral.store.sqlite import SqliteDatabase
from coral.store.teams_postgres import PostgresTeamIndex, PostgresTeamStore
from coral.store.teams_sqlite import SqliteTeamIndex, SqliteTeamStore
from tests.support.postgres import fresh_database
from tests.support.throwaway_postgres import ThrowawayPostgres

pytestmark = pytest.mark.postgres

NOW = 1_770_000_000_000
NODE = Identity.from_seed(b"\x70" * 32)
ALICE, BOB, CAROL = (Identity.from_seed(bytes([0x71 + i]) * 32) for i in range(3))


class Clock:
    """A millisecond clock that moves only when told (both backends see the same times)."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        self.now += 7
        return self.now


class MirroredStore:
    """A coordination store that applies every write to a second store too.

    The service reads (and decides ids and sequence numbers) through the
    first; the second receives the very same rows.
    """

    def __init__(self, primary: CoordinationStore, mirror: CoordinationStore) -> None:
        self.primary = primary
        self.mirror = mirror

    async def apply(self, write: ThreadWrite) -> Any:
        await self.mirror.apply(write)
        return await self.primary.apply(write)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.primary, name)


@dataclass
class Backends:
    sqlite: DashboardReads
    postgresql: DashboardReads


@pytest.fixture
async def same_data(tmp_path: Path, postgres_server: ThrowawayPostgres) -> AsyncIterator[Backends]:
    """Identical threads and ledger rows on a SQLite node and in a PostgreSQL database."""
    dsn = await fresh_database(postgres_server, "dash")
    db = SqliteDatabase(tmp_path / "coral.db")
    await db.open()
    pool: asyncpg.Pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    sqlite_store, pg_store = SqliteCoordinationStore(db), PostgresCoordinationStore(pool)
    await sqlite_store.migrate()
    await pg_store.migrate()
    ledgers = [
        await SqliteLedgerStore.open(tmp_path / "ledger.db"),
        await PostgresLedgerStore.open(dsn),
    ]
    sqlite_reads = SqliteDashboardReads(db, tmp_path / "ledger.db")
    pg_reads = PostgresDashboardReads(dsn)
    try:
        await write_threads(cast(CoordinationStore, MirroredStore(sqlite_store, pg_store)))
        await write_teams(db, pool)
        for store in ledgers:
            await write_ledger(LedgerService(store, NODE, Clock()))
        yield Backends(sqlite_reads, pg_reads)
    finally:
        await sqlite_reads.close()
        await pg_reads.close()
        for store in ledgers:
            await store.close()
        await pool.close()
        await db.close()


def signed(sender: Identity, thread_id: str, text: str, at: int, *mentions: Identity) -> Message:
    message = Message(
        id=new_message_id(at),
        sender=sender.did,
        thread=thread_id,
        mentions=tuple(m.did for m in mentions),
        created_at=at,
        parts=(TextPart(text=text),),
    )
    return sign_message(message, sender)


async def write_threads(store: CoordinationStore) -> None:
    clock = Clock()
    engine = CoordinationService(
        store, node_id=NODE.did, clock=clock, sign_event=lambda m: sign_message(m, NODE)
    )
    planning = await engine.create_thread(ALICE.did, "planning", [BOB.did])
    quiet = await engine.create_thread(CAROL.did, "quiet", [ALICE.did])
    await engine.create_thread(BOB.did, "Upper and lower case", [])
    for n in range(15):  # more than one snapshot shows per thread
        sender, to = (ALICE, BOB) if n % 2 == 0 else (BOB, ALICE)
        await engine.send_message(signed(sender, planning.id, f"step {n}", clock(), to))
    await engine.close_thread(CAROL.did, quiet.id, "nothing to say")


TEAMS = ["team-01J0000000000000000000000B", "team-01J0000000000000000000000A", "custom-team"]


async def write_teams(db: SqliteDatabase, pool: asyncpg.Pool) -> None:
    """The same team rows on both backends; the planning thread belongs to the first team."""
    for migrating in (SqliteTeamStore(db), SqliteTeamIndex(db)):
        await migrating.migrate()
    for migrating_pg in (PostgresTeamStore(pool), PostgresTeamIndex(pool)):
        await migrating_pg.migrate()
    planning = await pool.fetchval("SELECT id FROM coordination_threads WHERE name = 'planning'")
    charters = [(team, ALICE.did, f"hash-{team}", NOW, "{}") for team in TEAMS]
    insert = (
        "INSERT INTO team_charters (team_id, initiator, charter_hash, deadline_ms, charter_json)"
        " VALUES (?, ?, ?, ?, ?)"
    )
    bind = "INSERT INTO team_threads (thread_id, team_id) VALUES (?, ?)"

    def on_sqlite(conn: sqlite3.Connection) -> None:
        conn.executemany(insert, charters)
        conn.execute(bind, (planning, TEAMS[0]))

    await db.write(on_sqlite)
    await pool.executemany(insert.replace("?, ?, ?, ?, ?", "$1, $2, $3, $4, $5"), charters)
    await pool.execute(bind.replace("?, ?", "$1, $2"), planning, TEAMS[0])


async def write_ledger(ledger: LedgerService) -> None:
    for did in (ALICE.did, BOB.did, CAROL.did):
        await ledger.open_account(did, owner=did, kind=AccountKind.AGENT)
    await ledger.issue(ALICE.did, 500, transfer_id="issue-alice")
    await ledger.issue(BOB.did, 80, transfer_id="issue-bob")
    await ledger.transfer(ALICE.did, BOB.did, 120, transfer_id="pay-1", memo="for the plan")
    await ledger.reserve(ALICE.did, CAROL.did, 50, timeout_ms=60_000, transfer_id="hold-1")
    await ledger.reserve(BOB.did, CAROL.did, 30, timeout_ms=30_000, transfer_id="hold-2")
    await ledger.reserve(ALICE.did, BOB.did, 10, timeout_ms=90_000, transfer_id="hold-3")
    await ledger.post("hold-3", transfer_id="post-3")


async def every_view(reads: DashboardReads) -> dict[str, Any]:
    threads = await reads.recent_threads(20)
    return {
        "threads": threads,
        "entries": {t.id: await reads.recent_entries(t.id, 12) for t in threads},
        "few_entries": {t.id: await reads.recent_entries(t.id, 1) for t in threads},
        "totals": await reads.coordination_totals(),
        "teams": await reads.recent_team_ids(20),
        "accounts": await reads.ledger_accounts(50),
        "pending": await reads.ledger_pending(50),
        "transfers": await reads.ledger_recent_transfers(20),
    }


async def test_both_backends_read_the_same_views_of_the_same_data(same_data: Backends) -> None:
    on_sqlite = await every_view(same_data.sqlite)
    on_postgresql = await every_view(same_data.postgresql)
    assert on_postgresql == on_sqlite
    # ...and the data is there to compare: nothing passes by being empty on both.
    assert [t.name for t in on_sqlite["threads"]] == [
        "quiet",  # closed last: the newest entry anywhere
        "planning",
        "Upper and lower case",
    ]
    assert on_sqlite["totals"] == {"threads_open": 2, "threads_closed": 1, "entries": 19}
    assert [a["balance"] for a in on_sqlite["accounts"]] == [-580, 370, 210, 0]
    assert [p["id"] for p in on_sqlite["pending"]] == ["hold-2", "hold-1"]
    assert on_sqlite["teams"] == TEAMS  # made ids are ULIDs: newest first
    assert [t.team_id for t in on_sqlite["threads"]] == [None, TEAMS[0], None]
    assert [t["id"] for t in on_sqlite["transfers"]][:2] == ["post-3", "hold-3"]


async def test_snapshot_panels_are_equal_on_both_backends(same_data: Backends) -> None:
    def builder(reads: DashboardReads) -> SnapshotBuilder:
        # The threads and ledger panels read only through ``reads``.
        return SnapshotBuilder(cast(Any, None), reads, cast(Any, None))

    on_sqlite, on_postgresql = builder(same_data.sqlite), builder(same_data.postgresql)
    threads = await on_sqlite.threads()
    assert await on_postgresql.threads() == threads
    assert await on_postgresql.ledger() == await on_sqlite.ledger()
    [planning] = [t for t in threads["recent"] if t["name"] == "planning"]
    assert [m["parts"][0]["text"] for m in planning["messages"]][-1] == "step 14"


async def test_absent_tables_read_empty_and_a_given_pool_stays_open(
    postgres_pool: asyncpg.Pool,
) -> None:
    reads = PostgresDashboardReads(pool=postgres_pool)
    try:
        assert await reads.recent_threads(20) == []
        assert await reads.recent_entries("t", 5) == []
        assert await reads.coordination_totals() == {
            "threads_open": 0,
            "threads_closed": 0,
            "entries": 0,
        }
        assert await reads.recent_team_ids(5) == []
        assert await reads.ledger_accounts(5) == []
        assert await reads.ledger_pending(5) == []
        assert await reads.ledger_recent_transfers(5) == []
    finally:
        await reads.close()
    assert not postgres_pool.is_closing()  # the caller's pool is the caller's to close
