"""Teams across two replicas (one node key, one PostgreSQL database, every store there).

Alice forms a team through replica one while Bob, on replica two, answers
the invitation; Alice's formation long-poll on replica one can only move on
when replica two's acceptance wakes it. Bob then joins and posts to the team
thread through replica two (bound through replica one), Alice reads through
replica one, an outsider is refused on replica two, and Bob's long-poll on
replica two wakes for the dissolution Alice submits through replica one.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from coral.teams import Money, RoleSpec
from coral_sdk import CoralApiError
from coral_sdk.teams import TeamClient
from tests.integration.test_postgres_replicas import open_waits
from tests.integration.test_teams_node import answering, registered
from tests.support.postgres import fresh_database
from tests.support.throwaway_postgres import ThrowawayPostgres

pytestmark = pytest.mark.postgres

#: Bounds each wait; the long-poll itself waits longer, so only a wake-up ends it in time.
HANG_GUARD_S = 30
SECRET = "replica secret 5c1d-unique-plaintext"


async def test_a_team_formed_through_one_replica_works_through_the_other(
    node_factory: Any, postgres_server: ThrowawayPostgres, tmp_path: Path
) -> None:
    dsn = await fresh_database(postgres_server, "replica_teams")
    env = {"CORAL_DATABASE_URL": dsn, "CORAL_DATABASE_STORES": "all"}
    one = node_factory("one", **env)
    shutil.copytree(one.data_dir / "keys", tmp_path / "two" / "keys")  # the same node key
    two = node_factory("two", **env)

    alice = await registered(one, "alice")
    bob = await registered(two, "bob", "write", price=3)
    eve = await registered(two, "eve")
    handler, stop = answering(bob, 3)
    alice_team, bob_team = TeamClient(alice), TeamClient(bob)
    try:
        team = await alice_team.form_team(
            goal="span replicas",
            roles=(RoleSpec(name="writer", capabilities=("write",)),),
            budget=Money(amount=10),
            timeout_s=60,
        )
        assert team.members == {alice.did: "initiator", bob.did: "writer"}

        # Replica two serves the team replica one formed: record, thread, admission.
        joined = await bob_team.join(team.team_id, timeout_s=30)
        assert joined.thread_id == team.thread_id
        assert [t.team_id for t in await bob_team.teams()] == [team.team_id]
        await bob_team.send_team_message(team.team_id, SECRET)
        posts = await alice_team.read_team_messages(team.team_id)
        assert [(p.sender, p.text) for p in posts] == [(bob.did, SECRET)]
        with pytest.raises(CoralApiError) as info:
            await eve.send(team.thread_id, "let me in")
        assert info.value.reason == "not_a_member"

        # A long-poll on replica two wakes for a document submitted through replica one.
        before = await bob_team.view(team.team_id)
        waiter = asyncio.create_task(
            bob_team.view(team.team_id, after_revision=before.revision, wait_ms=60_000)
        )
        async with asyncio.timeout(HANG_GUARD_S):
            while await asyncio.to_thread(open_waits, two) != "coral_waits_open 1.0":
                await asyncio.sleep(0.05)
        await alice_team.dissolve(team.team_id, goal_met=True)
        after = await asyncio.wait_for(waiter, HANG_GUARD_S)
        assert after.revision == before.revision + 1
        assert after.record.documents[-1].type == "dissolution"
        with pytest.raises(CoralApiError) as info:
            await bob_team.send_team_message(team.team_id, "after the end")
        assert info.value.reason == "team_dissolved"
    finally:
        stop.set()
        await handler
        for client in (alice, bob, eve):
            await client.close()
