"""SqliteTeamStore specifics: migrations, and posts reach the disk only as ciphertext.

The port's behaviour (round trips, conflicts, ordering) is proved against SQLite
and the in-memory twin alike in ``tests/teams/test_ports.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coral.protocol.errors import Replayed
from coral.protocol.identity import Identity
from coral.protocol.message import Message, TextPart
from coral.protocol.signing import sign_message
from coral.store.sqlite import SqliteDatabase
from coral.store.teams_sqlite import TEAMS_MIGRATIONS, SqliteTeamStore
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
)
from coral.teams.errors import InvalidTeamDocument

T0 = 1_700_000_000_000
SECRET = "the launch code is 4711 and nobody may know it"


def read_every_file(folder: Path) -> bytes:
    """All bytes SQLite left in the folder: main file, WAL and shared memory."""
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[tuple[SqliteDatabase, SqliteTeamStore]]:
    db = SqliteDatabase(tmp_path / "teams.db")
    await db.open()
    store = SqliteTeamStore(db)
    await store.migrate()
    yield db, store
    await db.close()


async def formed(store: SqliteTeamStore) -> tuple[TeamState, Identity, Identity]:
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


async def test_migrations_are_idempotent(
    opened: tuple[SqliteDatabase, SqliteTeamStore],
) -> None:
    _, store = opened
    await formed(store)
    assert await store.migrate() == len(TEAMS_MIGRATIONS)


async def test_team_posts_are_stored_as_ciphertext_only(
    opened: tuple[SqliteDatabase, SqliteTeamStore], tmp_path: Path
) -> None:
    db, store = opened
    state, initiator, member = await formed(store)
    latest = await store.latest_key_epoch(state.team_id)
    assert latest is not None
    key = open_key_epoch(latest, member)
    post = build_team_message(
        key, member, thread="plans", parts=(TextPart(text=SECRET),), now_ms=T0 + 10
    )
    await store.append_thread_message(state.team_id, post)
    with pytest.raises(Replayed):
        await store.append_thread_message(state.team_id, post)
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
    assert stored == [post]
    initiator_key = open_key_epoch(latest, initiator)
    assert read_team_message(stored[0], {initiator_key.key_id: initiator_key}) == (
        TextPart(text=SECRET),
    )
    await db.close()
    on_disk = read_every_file(tmp_path)
    assert b"team-secret" in on_disk  # the store really wrote there
    assert SECRET.encode() not in on_disk
    assert b"4711" not in on_disk
