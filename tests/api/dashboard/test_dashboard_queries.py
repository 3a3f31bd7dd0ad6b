"""Operator queries across every agent's threads, and their behaviour on absent tables."""

from __future__ import annotations

from coral.coordination.service import CoordinationService
from coral.protocol.identity import Identity
from coral.protocol.message import Message, TextPart, new_message_id
from coral.protocol.signing import sign_message
from coral.store import dashboard_sqlite as queries
from coral.store.coordination_sqlite import SqliteCoordinationStore
from coral.store.sqlite import SqliteDatabase

NOW = 1_770_000_000_000


async def test_absent_tables_give_empty_results(tmp_path):
    db = SqliteDatabase(tmp_path / "empty.db")
    await db.open()
    try:
        assert await queries.recent_threads(db) == []
        assert await queries.recent_entries(db, "x") == []
        assert await queries.recent_team_ids(db) == []
        assert await queries.ledger_accounts(db) == []
        assert await queries.ledger_pending(db) == []
        assert await queries.coordination_totals(db) == {
            "threads_open": 0,
            "threads_closed": 0,
            "entries": 0,
        }
    finally:
        await db.close()


async def test_threads_of_all_agents_newest_activity_first(tmp_path):
    db = SqliteDatabase(tmp_path / "coral.db")
    await db.open()
    clock = iter(range(NOW, NOW + 10_000, 10))
    node = Identity.generate()
    engine = CoordinationService(
        SqliteCoordinationStore(db), node_id=node.did, clock=lambda: next(clock)
    )
    await engine.store.migrate()
    alice, bob, carol = (Identity.generate() for _ in range(3))
    try:
        old = await engine.create_thread(alice.did, "old", [bob.did])
        new = await engine.create_thread(carol.did, "new", [])
        message = Message(
            id=new_message_id(NOW + 5000),
            sender=bob.did,
            thread=old.id,
            created_at=NOW + 5000,
            parts=(TextPart(text="revived"),),
        )
        await engine.send_message(sign_message(message, bob))
        await engine.close_thread(carol.did, new.id, "done")
        threads = await queries.recent_threads(db)
        # The close is the newest entry anywhere, so "new" leads...
        assert [t.name for t in threads] == ["new", "old"]
        by_name = {t.name: t for t in threads}
        assert by_name["new"].state == "closed" and by_name["new"].summary == "done"
        assert by_name["old"].participants == [alice.did, bob.did]
        entries = await queries.recent_entries(db, old.id)
        assert [e.seq for e in entries] == sorted(e.seq for e in entries)
        assert entries[-1].message["parts"][0]["text"] == "revived"
        assert len(await queries.recent_entries(db, old.id, limit=1)) == 1
        again = Message(
            id=new_message_id(NOW + 9000),
            sender=alice.did,
            thread=old.id,
            created_at=NOW + 9000,
            parts=(TextPart(text="still here"),),
        )
        await engine.send_message(sign_message(again, alice))
        # ...until "old" sees newer activity.
        assert [t.name for t in await queries.recent_threads(db)] == ["old", "new"]
        totals = await queries.coordination_totals(db)
        assert totals["threads_open"] == 1 and totals["threads_closed"] == 1
    finally:
        await db.close()
