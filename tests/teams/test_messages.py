"""Team thread messages: ordinary signed messages carrying one EncryptedPart."""

from __future__ import annotations

import pytest
from team_builders import Team, identity

from coral.protocol.errors import SignatureError
from coral.protocol.message import DataPart, EncryptedPart, TextPart, to_wire
from coral.protocol.signing import sign_message
from coral.teams import (
    authorize_team_message,
    build_team_message,
    new_key_epoch,
    open_key_epoch,
    read_team_message,
    remove,
)
from coral.teams.errors import DecryptionFailed, NotAMember, RekeyRequired
from coral.teams.keys import TeamKey
from coral.teams.messages import TEAM_MESSAGE_KIND


def test_member_posts_and_another_member_reads(team: Team) -> None:
    assert team.key is not None
    sender, reader = team.members[0], team.members[1]
    parts = (TextPart(text="draft ready"), DataPart(data={"score": 0.93}))
    message = build_team_message(team.key, sender, thread="t1", parts=parts, now_ms=team.now)
    assert message.kind == TEAM_MESSAGE_KIND
    assert [type(p) for p in message.parts] == [EncryptedPart]
    assert "draft ready" not in str(to_wire(message))
    authorize_team_message(team.state, message, team.now)
    reader_key = open_key_epoch(team.documents[-1], reader)  # type: ignore[arg-type]
    assert read_team_message(message, {reader_key.key_id: reader_key}) == parts


def test_non_member_cannot_post_even_with_a_leaked_key(team: Team) -> None:
    assert team.key is not None
    outsider = identity(4242)
    message = build_team_message(
        team.key, outsider, thread="t1", parts=(TextPart(text="hi"),), now_ms=team.now
    )
    with pytest.raises(NotAMember):
        authorize_team_message(team.state, message, team.now)


def test_removed_member_is_refused_and_others_wait_for_the_rekey(team: Team) -> None:
    assert team.key is not None
    gone, stayer = team.members[0], team.members[1]
    team.add(remove(team.state, gone.did, team.initiator, now_ms=team.tick()))
    stale = build_team_message(
        team.key, stayer, thread="t1", parts=(TextPart(text="x"),), now_ms=team.now
    )
    with pytest.raises(RekeyRequired):
        authorize_team_message(team.state, stale, team.now)
    epoch2, key2 = new_key_epoch(team.state, team.initiator, team.tick())
    team.add(epoch2)
    fresh = build_team_message(
        key2, stayer, thread="t1", parts=(TextPart(text="y"),), now_ms=team.now
    )
    authorize_team_message(team.state, fresh, team.now)
    with pytest.raises(DecryptionFailed):
        read_team_message(fresh, {team.key.key_id: team.key})


def test_tampered_or_resigned_message_is_refused(team: Team) -> None:
    assert team.key is not None
    sender = team.members[0]
    message = build_team_message(
        team.key, sender, thread="t1", parts=(TextPart(text="z"),), now_ms=team.now
    )
    moved = message.model_copy(update={"thread": "t2"})
    with pytest.raises(SignatureError):
        read_team_message(moved, {team.key.key_id: team.key})
    # Re-signed by another member, the ciphertext still names the first sender.
    impostor = team.members[1]
    stolen = sign_message(
        message.model_copy(update={"sender": impostor.did, "signature": None}), impostor
    )
    with pytest.raises(DecryptionFailed):
        read_team_message(stolen, {team.key.key_id: team.key})
    assert isinstance(team.key, TeamKey)
