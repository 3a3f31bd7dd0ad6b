"""A real node on PostgreSQL: directory, threads and inboxes live in the database.

The node runs with only ``CORAL_DATABASE_URL`` pointing at a fresh database on
the session's throwaway server (every store there is the default); the test talks
HTTP to it as agents do, then restarts it and reads everything back.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import asyncpg
import pytest

from coral.coordination.model import InboxEntry, ThreadEntry
from coral.protocol.identity import Identity
from coral.protocol.message import TextPart
from coral_sdk import AgentManifest, CoralApiError, CoralClient
from tests.support.postgres import fresh_database
from tests.support.throwaway_postgres import ThrowawayPostgres

pytestmark = pytest.mark.postgres


async def registered(node: Any, identity: Identity, name: str) -> CoralClient:
    client = CoralClient(node.http, identity)
    await client.register(AgentManifest(name=name))
    return client


async def mentions_for(client: CoralClient, count: int, after: int = 0) -> list[InboxEntry]:
    """Wait (long-poll) until ``count`` mentions past ``after`` arrived; return them in order."""
    found: list[InboxEntry] = []
    while len(found) < count:
        got = await client.wait("mention", after=after, timeout_ms=20_000)
        assert got.entries, "the wait timed out before the message arrived"
        found += got.entries
        after = got.cursor
    return found


def texts(entries: list[InboxEntry]) -> list[str]:
    return [text_of(e.entry) for e in entries]


def text_of(entry: ThreadEntry) -> str:
    part = entry.message.parts[0]
    assert isinstance(part, TextPart)
    return part.text


async def test_a_node_on_postgresql_routes_wakes_waiters_and_keeps_history_across_restart(
    node_factory: Any, postgres_server: ThrowawayPostgres
) -> None:
    dsn = await fresh_database(postgres_server, "node")
    node = node_factory("pg", CORAL_DATABASE_URL=dsn)
    alice_key, bob_key = Identity.generate(), Identity.generate()
    alice = await registered(node, alice_key, "alice")
    bob = await registered(node, bob_key, "bob")
    try:
        thread = await alice.create_thread("work", ["bob"])
        tid = thread.id
        waiting = asyncio.create_task(mentions_for(bob, 1))  # parked before anything is sent
        await alice.send(tid, "one", mentions=[bob.did])
        first = await waiting
        assert texts(first) == ["one"]
        for text in ("two", "three"):
            await alice.send(tid, text, mentions=[bob.did])
        rest = await mentions_for(bob, 2, after=first[-1].cursor)
        assert texts(rest) == ["two", "three"]
        impostor = CoralClient(node.http, Identity.generate())
        with pytest.raises(CoralApiError) as refused:
            await impostor.register(AgentManifest(name="bob"))
        await impostor.close()
        assert refused.value.reason == "name_taken"
    finally:
        await alice.close()
        await bob.close()

    # Nothing of this went to the SQLite file; it is all in PostgreSQL.
    with sqlite3.connect(node.data_dir / "coral.db") as local:
        tables = {row[0] for row in local.execute("SELECT name FROM sqlite_master")}
    assert not tables & {"agents", "coordination_entries", "coordination_inbox", "seen_messages"}
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT COUNT(*) FROM agents") == 2
        assert await conn.fetchval("SELECT COUNT(*) FROM seen_messages") == 1  # the create
        assert await conn.fetchval("SELECT COUNT(*) FROM coordination_entries") >= 3
    finally:
        await conn.close()

    node.kill()
    node.start()
    alice, bob = CoralClient(node.http, alice_key), CoralClient(node.http, bob_key)
    try:
        assert (await bob.get_agent("alice")).agent == alice_key.did
        history = await bob.history(tid)
        sent = [e for e in history.entries if not e.system]
        assert [text_of(e) for e in sent] == ["one", "two", "three"]
        assert texts(await mentions_for(bob, 3)) == ["one", "two", "three"]
        await alice.send(tid, "four", mentions=[bob.did])
        assert texts(await mentions_for(bob, 1, after=rest[-1].cursor)) == ["four"]
    finally:
        await alice.close()
        await bob.close()
