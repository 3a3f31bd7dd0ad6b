"""The teams ports: SQLite, PostgreSQL and the in-memory twins behave alike.

Every test runs once per implementation (the fixtures' params). The
PostgreSQL cases use a fresh schema of the session's server; they skip with a
reason when no server binaries are installed (and fail under CI=true).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from coral.protocol.errors import Conflict, NotFound, Replayed
from coral.protocol.identity import Identity
from coral.protocol.message import Message, TextPart
from coral.protocol.signing import sign_message
from coral.store.sqlite import SqliteDatabase
from coral.store.teams_postgres import PostgresTeamIndex, PostgresTeamStore
from coral.store.teams_sqlite import SqliteTeamIndex, SqliteTeamStore
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
    read_team_message,
    verify_team,
)
from coral.teams.errors import InvalidTeamDocument
from coral.teams.lifecycle import EscrowHold
from coral.teams.memory import MemoryTeamIndex, MemoryTeamStore
from coral.teams.ports import TeamIndex, TeamStore

T0 = 1_700_000_000_000
SECRET = "the launch code is 4711 and nobody may know it"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = SqliteDatabase(tmp_path / "node.db")
    await database.open()
    yield database
    await database.close()


IMPLEMENTATIONS = ["sqlite", "memory", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
async def sqlite_store(db: SqliteDatabase) -> TeamStore:
    sqlite_store = SqliteTeamStore(db)
    await sqlite_store.migrate()
    return sqlite_store


@pytest.fixture
async def memory_store() -> TeamStore:
    return MemoryTeamStore()


@pytest.fixture
async def postgres_store(postgres_pool: asyncpg.Pool) -> TeamStore:
    postgres_store = PostgresTeamStore(postgres_pool)
    await postgres_store.migrate()
    return postgres_store


@pytest.fixture(params=IMPLEMENTATIONS)
def store(request: pytest.FixtureRequest) -> TeamStore:
    """Each TeamStore in turn."""
    chosen: TeamStore = request.getfixturevalue(f"{request.param}_store")
    return chosen


@pytest.fixture
async def sqlite_index(db: SqliteDatabase) -> TeamIndex:
    sqlite_index = SqliteTeamIndex(db)
    await sqlite_index.migrate()
    return sqlite_index


@pytest.fixture
async def memory_index() -> TeamIndex:
    return MemoryTeamIndex()


@pytest.fixture
async def postgres_index(postgres_pool: asyncpg.Pool) -> TeamIndex:
    postgres_index = PostgresTeamIndex(postgres_pool)
    await postgres_index.migrate()
    return postgres_index


@pytest.fixture(params=IMPLEMENTATIONS)
def index(request: pytest.FixtureRequest) -> TeamIndex:
    """Each TeamIndex in turn."""
    chosen: TeamIndex = request.getfixturevalue(f"{request.param}_index")
    return chosen


async def formed(store: TeamStore) -> tuple[TeamState, Identity, Identity]:
    """Store a one-member team with its first key epoch; returns (state, initiator, member)."""
    initiator = Identity.from_seed(b"\x01" * 32)
    member = Identity.from_seed(b"\x02" * 32)
    charter = draft_charter(
        initiator,
        goal="keep a secret",
        roles=(RoleSpec(name="keeper"),),
        budget=Money(amount=10),
        deadline_ms=T0 + 3_600_000,
        now_ms=T0,
        team_id="team-secret",
    )
    await store.create_team(charter)
    state = TeamState(charter, T0)
    invitation = invite(
        state, initiator, invitee=member.did, role="keeper", now_ms=T0, ttl_ms=60_000
    )
    state.apply(invitation, T0)
    acceptance = accept(invitation, member, price=3, currency="CRL", now_ms=T0 + 1)
    state.apply(acceptance, T0 + 1)
    certificate = certify(state, acceptance, initiator, now_ms=T0 + 2)
    state.apply(certificate, T0 + 2)
    epoch, _ = new_key_epoch(state, initiator, T0 + 3)
    state.apply(epoch, T0 + 3)
    for count, document in enumerate((invitation, acceptance, certificate, epoch)):
        await store.append_document(charter.team_id, count, document)
    return state, initiator, member


async def test_record_round_trips_and_verifies(store: TeamStore) -> None:
    state, _, member = await formed(store)
    record = await store.load_record(state.team_id)
    assert verify_team(record, T0 + 10).snapshot() == state.snapshot()
    latest = await store.latest_key_epoch(state.team_id)
    assert latest is not None and open_key_epoch(latest, member).epoch == 1
    assert await store.latest_key_epoch("team-missing") is None


async def test_document_count_follows_the_record(store: TeamStore) -> None:
    state, _, _ = await formed(store)
    assert await store.document_count(state.team_id) == 4
    record = await store.load_record(state.team_id)
    await store.append_document(state.team_id, 4, record.documents[0])
    assert await store.document_count(state.team_id) == 5
    with pytest.raises(NotFound):
        await store.document_count("team-missing")


async def test_duplicate_and_unknown_teams_are_typed_errors(store: TeamStore) -> None:
    state, _, _ = await formed(store)
    with pytest.raises(Conflict) as raised:
        await store.create_team(state.charter)
    assert raised.value.reason == "team_exists"
    with pytest.raises(NotFound):
        await store.load_record("team-missing")
    first = (await store.load_record(state.team_id)).documents[0]
    with pytest.raises(NotFound):
        await store.append_document("team-missing", 0, first)
    assert await store.load_escrow("team-missing") is None


async def test_stale_writer_conflicts_and_nothing_is_written(store: TeamStore) -> None:
    state, initiator, _ = await formed(store)
    extra = invite(
        state,
        initiator,
        invitee=Identity.from_seed(b"\x03" * 32).did,
        role="keeper",
        now_ms=T0 + 5,
        ttl_ms=60_000,
    )
    with pytest.raises(Conflict):
        await store.append_document(state.team_id, 2, extra, escrow_hold="h1")
    assert len((await store.load_record(state.team_id)).documents) == 4
    assert await store.load_escrow(state.team_id) is None
    await store.append_document(state.team_id, 4, extra, escrow_hold="h1")
    assert (await store.load_escrow(state.team_id)) == EscrowHold("h1", "held")
    with pytest.raises(Conflict):
        await store.append_document(state.team_id, 5, extra, escrow_hold="h2")
    assert len((await store.load_record(state.team_id)).documents) == 5
    await store.settle_escrow(state.team_id, "released")
    assert (await store.load_escrow(state.team_id)) == EscrowHold("h1", "released")
    with pytest.raises(Conflict) as raised:
        await store.settle_escrow(state.team_id, "paid")
    assert raised.value.reason == "escrow_settled"


async def test_only_open_holds_past_their_deadline_are_due(store: TeamStore) -> None:
    state, _, _ = await formed(store)
    deadline = state.charter.deadline_ms
    assert await store.teams_with_due_holds(deadline) == []  # no hold yet
    record = await store.load_record(state.team_id)
    await store.append_document(
        state.team_id, len(record.documents), record.documents[0], escrow_hold="h1"
    )
    assert await store.teams_with_due_holds(deadline - 1) == []
    assert await store.teams_with_due_holds(deadline) == [state.team_id]
    await store.settle_escrow(state.team_id, "paid")
    assert await store.teams_with_due_holds(deadline + 1) == []


async def test_team_posts_are_kept_once_in_order_and_only_as_team_ciphertext(
    store: TeamStore,
) -> None:
    state, initiator, member = await formed(store)
    latest = await store.latest_key_epoch(state.team_id)
    assert latest is not None
    key = open_key_epoch(latest, member)
    later = build_team_message(
        key, member, thread="plans", parts=(TextPart(text="second"),), now_ms=T0 + 20
    )
    post = build_team_message(
        key, member, thread="plans", parts=(TextPart(text=SECRET),), now_ms=T0 + 10
    )
    elsewhere = build_team_message(
        key, member, thread="other", parts=(TextPart(text="x"),), now_ms=T0 + 5
    )
    for message in (later, post, elsewhere):
        await store.append_thread_message(state.team_id, message)
    with pytest.raises(Replayed):
        await store.append_thread_message(state.team_id, post)
    with pytest.raises(Conflict) as raised:
        await store.append_thread_message("team-other", post)
    assert raised.value.reason == "wrong_team"
    plain = sign_message(
        Message(
            id="m-plain",
            sender=member.did,
            thread="plans",
            created_at=T0,
            parts=(TextPart(text=SECRET),),
        ),
        member,
    )
    with pytest.raises(InvalidTeamDocument):
        await store.append_thread_message(state.team_id, plain)

    stored = await store.thread_messages(state.team_id, "plans")
    assert stored == [post, later]
    initiator_key = open_key_epoch(latest, initiator)
    assert read_team_message(stored[0], {initiator_key.key_id: initiator_key}) == (
        TextPart(text=SECRET),
    )
    assert await store.thread_messages(state.team_id, "nothing") == []


async def test_a_thread_binds_to_one_team(index: TeamIndex) -> None:
    await index.bind_thread("t-2", "team-a")
    await index.bind_thread("t-1", "team-a")
    await index.bind_thread("t-3", "team-b")
    with pytest.raises(Conflict) as raised:
        await index.bind_thread("t-1", "team-b")
    assert raised.value.reason == "bound"
    assert await index.team_of_thread("t-1") == "team-a"
    assert await index.team_of_thread("t-9") is None
    assert await index.threads_of_team("team-a") == ["t-1", "t-2"]
    assert await index.threads_of_team("team-c") == []


async def test_parties_are_recorded_once_per_team(index: TeamIndex) -> None:
    await index.add_party("team-b", "did:key:ann")
    await index.add_party("team-a", "did:key:ann")
    await index.add_party("team-a", "did:key:ann")
    await index.add_party("team-a", "did:key:bo")
    assert await index.is_party("team-a", "did:key:ann")
    assert not await index.is_party("team-b", "did:key:bo")
    assert await index.teams_of("did:key:ann") == ["team-a", "team-b"]
    assert await index.teams_of("did:key:cy") == []
