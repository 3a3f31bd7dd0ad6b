"""Teams on PostgreSQL: what only a database shared by several node processes has to prove.

The port's behaviour (round trips, conflicts, ordering) is proved against
every implementation in ``tests/teams/test_ports.py``. Here each "process" is
its own pool (its own connections) on one database: migrations apply once,
racing appends keep one order, a cached team state follows documents another
process appended, a team long-poll wakes for another process's commit (or
catches up after a missed notice), thread bindings written elsewhere are
seen, and posts are stored as ciphertext only. Hang guards bound every await.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from coral.agents.directory import AgentDirectory
from coral.agents.memory import MemoryAgentStore
from coral.coordination.memory import MemoryCoordinationStore
from coral.coordination.service import CoordinationService
from coral.protocol.agent import AgentManifest, AgentRecord
from coral.protocol.errors import Conflict, Replayed
from coral.protocol.identity import Identity
from coral.protocol.message import TextPart, now_ms
from coral.store.teams_postgres import (
    CHANNEL,
    INDEX_MIGRATIONS,
    TEAMS_MIGRATIONS,
    PostgresTeamIndex,
    PostgresTeamStore,
)
from coral.store.wakeups_postgres import PostgresWakeups
from coral.teams import (
    Money,
    RoleSpec,
    TeamState,
    accept,
    build_team_message,
    certify,
    draft_charter,
    invite,
    new_key_epoch,
    open_key_epoch,
)
from coral.teams.service import TeamsService
from tests.support.postgres import fresh_database
from tests.support.throwaway_postgres import ThrowawayPostgres

pytestmark = pytest.mark.postgres

NODE = Identity.from_seed(b"\x70" * 32)
ALICE, BOB, CAROL = (Identity.from_seed(bytes([0x71 + i]) * 32) for i in range(3))
SECRET = "the vault opens with quokka-unique-plaintext"
#: Bounds every await: a broken wake-up fails here instead of hanging the suite.
HANG_GUARD_S = 60


class LookSpy(PostgresTeamIndex):
    """The real index, announcing each read of a team's threads (a view was just read)."""

    def __init__(self, pool: asyncpg.Pool, **kwargs: Any) -> None:
        super().__init__(pool, **kwargs)
        self.looked = asyncio.Event()

    async def threads_of_team(self, team_id: str) -> list[str]:
        threads = await super().threads_of_team(team_id)
        self.looked.set()
        return threads


@dataclass
class Process:
    """One node process: its pool, team store, team index and teams service."""

    pool: asyncpg.Pool
    store: PostgresTeamStore
    index: LookSpy
    service: TeamsService


@pytest.fixture
async def dsn(postgres_server: ThrowawayPostgres) -> str:
    return await fresh_database(postgres_server, "teams")


@pytest.fixture
async def two(dsn: str) -> AsyncIterator[list[Process]]:
    """Two processes on one database, migrated at once, sharing one agent directory."""
    agents = MemoryAgentStore()
    directory = AgentDirectory(agents, NODE, now_ms)
    for name, who in (("alice", ALICE), ("bob", BOB), ("carol", CAROL)):
        await agents.put(
            AgentRecord(
                agent=who.did,
                home_node=NODE.did,
                manifest=AgentManifest(name=name),
                version=1,
                updated_at=now_ms(),
            )
        )
    coordination = CoordinationService(MemoryCoordinationStore(), node_id=NODE.did, clock=now_ms)
    processes = []
    for _ in range(2):
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=3)
        store = PostgresTeamStore(pool)
        index = LookSpy(pool, writer=store.writer)
        service = TeamsService(store, index, directory, coordination, shared=True)
        processes.append(Process(pool, store, index, service))
    await asyncio.gather(*(m for p in processes for m in (p.store.migrate(), p.index.migrate())))
    yield processes
    for process in processes:
        await process.pool.close()


def charter_of(team_id: str) -> Any:
    now = now_ms()
    return draft_charter(
        ALICE,
        goal="share one database",
        roles=(RoleSpec(name="keeper", count=2),),
        budget=Money(amount=10),
        deadline_ms=now + 3_600_000,
        now_ms=now,
        team_id=team_id,
    )


def invitation_for(state: TeamState, invitee: Identity) -> Any:
    return invite(state, ALICE, invitee=invitee.did, role="keeper", now_ms=now_ms(), ttl_ms=60_000)


async def stopped(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_migrations_apply_once_when_processes_start_together(
    two: list[Process], dsn: str
) -> None:
    assert {await p.store.migrate() for p in two} == {len(TEAMS_MIGRATIONS)}
    assert {await p.index.migrate() for p in two} == {len(INDEX_MIGRATIONS)}
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT component, COUNT(*) AS n FROM schema_migrations"
            " WHERE component LIKE 'teams%' GROUP BY component ORDER BY component"
        )
    finally:
        await conn.close()
    assert [(r["component"], r["n"]) for r in rows] == [("teams", 1), ("teams_index", 1)]


async def test_racing_appends_keep_one_order_and_the_service_retries_the_loser(
    two: list[Process],
) -> None:
    one, other = two
    state = await one.service.propose(charter_of("team-race"))
    first, second = invitation_for(state, BOB), invitation_for(state, CAROL)

    # Straight at the store: both read count 0; the database lets one append.
    results = await asyncio.gather(
        one.store.append_document("team-race", 0, first),
        other.store.append_document("team-race", 0, second),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, Conflict)]
    assert len(refused) == 1 and refused[0].reason == "team_changed"
    assert await one.store.document_count("team-race") == 1

    # Through the services: a loser re-applies its document on the new record.
    state = await other.service.propose(charter_of("team-race-2"))
    first, second = invitation_for(state, BOB), invitation_for(state, CAROL)
    await asyncio.gather(
        one.service.submit("team-race-2", first), other.service.submit("team-race-2", second)
    )
    record = await one.store.load_record("team-race-2")
    assert {d.content_hash() for d in record.documents} == {
        first.content_hash(),
        second.content_hash(),
    }
    assert await one.index.is_party("team-race-2", CAROL.did)


async def test_a_cached_state_follows_documents_another_process_appended(
    two: list[Process],
) -> None:
    one, other = two
    state = await one.service.propose(charter_of("team-cache"))
    assert (await one.service.state("team-cache")).applied_count == 0  # now cached in one
    invitation = invitation_for(state, BOB)
    await other.service.submit("team-cache", invitation)
    acceptance = accept(invitation, BOB, price=3, currency="CRL", now_ms=now_ms())
    await other.service.submit("team-cache", acceptance)
    seen = await one.service.state("team-cache")
    assert seen.applied_count == 2
    certificate = certify(seen, acceptance, ALICE, now_ms=now_ms())
    await one.service.submit("team-cache", certificate)
    members = (await other.service.state("team-cache")).current_members(now_ms())
    assert set(members) == {ALICE.did, BOB.did}  # other's cache (2 documents) was not used


async def test_a_team_long_poll_wakes_for_another_process_and_catches_up_after_a_gap(
    two: list[Process], dsn: str
) -> None:
    one, other = two
    state = await one.service.propose(charter_of("team-wait"))
    wakeups = PostgresWakeups(
        dsn,
        own_writer=one.store.writer,
        wake=one.service.changed,
        wake_all=one.service.changed_all,
        retry_s=0.05,
        channel=CHANNEL,
    )

    async def wait_then_submit(after: int, document: Any) -> int:
        """A long-poll on ``one``; once it has looked and found nothing, submit via ``other``."""
        one.index.looked.clear()
        waiter = asyncio.ensure_future(
            one.service.wait_view(
                "team-wait", ALICE.did, after_revision=after, timeout_ms=3_600_000
            )
        )
        try:
            async with asyncio.timeout(HANG_GUARD_S):
                await one.index.looked.wait()
                await other.service.submit("team-wait", document)
                return (await waiter).revision
        finally:
            await stopped(waiter)

    # Nobody listens yet: the notice is lost, and the listener that starts
    # afterwards wakes every wait to read the store again.
    one.index.looked.clear()
    waiter = asyncio.ensure_future(
        one.service.wait_view("team-wait", ALICE.did, after_revision=0, timeout_ms=3_600_000)
    )
    listening = None
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await one.index.looked.wait()
            await other.service.submit("team-wait", invitation_for(state, BOB))
            listening = asyncio.create_task(wakeups.run())
            assert (await waiter).revision == 1

        # Listening: the NOTIFY of the other process's commit wakes the wait.
        state = await one.service.state("team-wait")
        assert await wait_then_submit(1, invitation_for(state, CAROL)) == 2
    finally:
        await stopped(waiter)
        if listening is not None:
            await stopped(listening)


async def test_thread_bindings_written_elsewhere_are_seen_and_ordinary_threads_cached(
    two: list[Process],
) -> None:
    _, other = two
    existing = {"ordinary"}
    asked: list[str] = []

    async def thread_exists(thread_id: str) -> bool:
        asked.append(thread_id)
        return thread_id in existing

    index = PostgresTeamIndex(other.pool, thread_exists=thread_exists)
    # Not created yet: the answer "unbound" is not remembered...
    assert await index.team_of_thread("t-team") is None
    await two[0].index.bind_thread("t-team", "team-x")  # ... so a later binding is seen.
    assert await index.team_of_thread("t-team") == "team-x"
    assert await index.team_of_thread("t-team") == "team-x"
    # An existing thread that is not bound can never become bound: asked once.
    assert await index.team_of_thread("ordinary") is None
    assert await index.team_of_thread("ordinary") is None
    assert asked == ["t-team", "t-team", "ordinary"]
    with pytest.raises(Conflict):
        await index.bind_thread("t-team", "team-y")


async def test_team_posts_are_stored_as_ciphertext_only(two: list[Process], dsn: str) -> None:
    store = two[0].store
    charter = charter_of("team-secret")
    await store.create_team(charter)
    state = TeamState(charter, now_ms())
    invitation = invitation_for(state, BOB)
    state.apply(invitation, now_ms())
    acceptance = accept(invitation, BOB, price=3, currency="CRL", now_ms=now_ms())
    state.apply(acceptance, now_ms())
    certificate = certify(state, acceptance, ALICE, now_ms=now_ms())
    state.apply(certificate, now_ms())
    epoch, _ = new_key_epoch(state, ALICE, now_ms())
    for count, document in enumerate((invitation, acceptance, certificate, epoch)):
        await store.append_document("team-secret", count, document)
    key = open_key_epoch(epoch, BOB)
    post = build_team_message(
        key, BOB, thread="plans", parts=(TextPart(text=SECRET),), now_ms=now_ms()
    )
    await two[1].store.append_thread_message("team-secret", post)
    with pytest.raises(Replayed):
        await store.append_thread_message("team-secret", post)
    assert await store.thread_messages("team-secret", "plans") == [post]

    conn = await asyncpg.connect(dsn)
    try:
        stored = "".join(
            [
                str(await conn.fetch(f"SELECT * FROM {table}"))
                for table in ("team_charters", "team_documents", "team_thread_messages")
            ]
        )
    finally:
        await conn.close()
    assert "team-secret" in stored and "team.message" in stored
    assert SECRET not in stored and "quokka-unique" not in stored
