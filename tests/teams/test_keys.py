"""Team keys: sealing to members, AEAD binding, rotation on removal, rekey races."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from team_builders import Team, form_team, identity

from coral.protocol.errors import CoralError
from coral.protocol.identity import Identity
from coral.teams import (
    KeyEpoch,
    RoleSpec,
    TeamState,
    decrypt_team_message,
    encrypt_team_message,
    new_key_epoch,
    open_key_epoch,
    remove,
    verify_team,
)
from coral.teams.errors import (
    DecryptionFailed,
    KeyRecipientsMismatch,
    NotAMember,
    NotAuthorized,
    StaleKeyEpoch,
)
from coral.teams.keys import key_commitment, parse_key_id

THREAD = "thread-1"
KEY = form_team(2)


@settings(max_examples=60, deadline=None)
@given(plaintext=st.binary(max_size=2048))
def test_every_member_decrypts_what_any_member_encrypts(plaintext: bytes) -> None:
    assert KEY.key is not None
    sender = KEY.members[0]
    part = encrypt_team_message(KEY.key, plaintext, thread=THREAD, sender=sender.did)
    epoch = KEY.documents[-1]
    assert isinstance(epoch, KeyEpoch)
    for reader in [KEY.initiator, *KEY.members]:
        key = open_key_epoch(epoch, reader)
        assert decrypt_team_message(key, part, thread=THREAD, sender=sender.did) == plaintext


def test_outsider_cannot_open_the_epoch_or_the_message(team: Team) -> None:
    epoch = team.documents[-1]
    assert isinstance(epoch, KeyEpoch) and team.key is not None
    with pytest.raises(NotAMember):
        open_key_epoch(epoch, identity(999))
    part = encrypt_team_message(team.key, b"secret", thread=THREAD, sender=team.initiator.did)
    guessed = type(team.key)(team.key.team_id, team.key.epoch, bytes(32))
    with pytest.raises(DecryptionFailed):
        decrypt_team_message(guessed, part, thread=THREAD, sender=team.initiator.did)


def test_ciphertext_is_bound_to_thread_sender_and_epoch(team: Team) -> None:
    assert team.key is not None
    sender = team.members[0].did
    part = encrypt_team_message(team.key, b"plan", thread=THREAD, sender=sender)
    for thread, who in (("thread-2", sender), (THREAD, team.members[1].did)):
        with pytest.raises(DecryptionFailed):
            decrypt_team_message(team.key, part, thread=thread, sender=who)
    relabelled = part.model_copy(update={"key_id": f"{team.key.team_id}/7"})
    with pytest.raises(DecryptionFailed):
        decrypt_team_message(team.key, relabelled, thread=THREAD, sender=sender)
    flipped = (
        part.ciphertext[:-2] + ("A" if part.ciphertext[-2] != "A" else "B") + part.ciphertext[-1]
    )
    with pytest.raises(DecryptionFailed):
        decrypt_team_message(
            team.key, part.model_copy(update={"ciphertext": flipped}), thread=THREAD, sender=sender
        )
    assert parse_key_id(part.key_id) == (team.state.team_id, 1)


def test_split_key_is_detected_by_the_commitment(team: Team) -> None:
    epoch = team.documents[-1]
    assert isinstance(epoch, KeyEpoch)
    # A dishonest issuer seals another key to one member but keeps the commitment.
    victim = team.members[0]
    other, _ = new_key_epoch(team.state, team.initiator, team.now)
    sealed = [
        s
        if s.member != victim.did
        else next(o for o in other.sealed_keys if o.member == victim.did)
        for s in epoch.sealed_keys
    ]
    split = epoch.model_copy(update={"sealed_keys": tuple(sealed), "signature": None})
    split = split.signed_by(team.initiator)
    open_key_epoch(split, team.members[1])  # untouched members still open theirs
    with pytest.raises(DecryptionFailed, match="commitment"):
        open_key_epoch(split, victim)
    assert key_commitment("t", 1, bytes(32)) != key_commitment("t", 2, bytes(32))


def test_removed_member_cannot_read_anything_after_removal(team: Team) -> None:
    removed, stayer = team.members[0], team.members[1]
    team.add(remove(team.state, removed.did, team.initiator, now_ms=team.tick()))
    epoch2, key2 = new_key_epoch(team.state, team.initiator, team.tick())
    team.add(epoch2)
    with pytest.raises(NotAMember):
        open_key_epoch(epoch2, removed)
    part = encrypt_team_message(key2, b"after removal", thread=THREAD, sender=stayer.did)
    assert (
        decrypt_team_message(open_key_epoch(epoch2, stayer), part, thread=THREAD, sender=stayer.did)
        == b"after removal"
    )
    # Whatever the removed member kept (its old epoch key) does not open the new epoch.
    old_key = open_key_epoch(team.documents[-3], removed)  # type: ignore[arg-type]
    assert old_key.epoch == 1
    with pytest.raises(DecryptionFailed):
        decrypt_team_message(old_key, part, thread=THREAD, sender=stayer.did)
    forced = type(old_key)(key2.team_id, key2.epoch, old_key.secret)
    with pytest.raises(DecryptionFailed):
        decrypt_team_message(forced, part, thread=THREAD, sender=stayer.did)


def test_key_epoch_must_seal_to_exactly_the_members(team: Team) -> None:
    epoch2, _ = new_key_epoch(team.state, team.initiator, team.tick())
    missing_one = epoch2.model_copy(
        update={"sealed_keys": epoch2.sealed_keys[:-1], "signature": None}
    ).signed_by(team.initiator)
    with pytest.raises(KeyRecipientsMismatch):
        team.state.apply(missing_one, team.now)
    duplicated = epoch2.model_copy(
        update={"sealed_keys": (*epoch2.sealed_keys, epoch2.sealed_keys[0]), "signature": None}
    ).signed_by(team.initiator)
    with pytest.raises(KeyRecipientsMismatch):
        team.state.apply(duplicated, team.now)
    with pytest.raises(NotAuthorized):
        team.state.apply(new_key_epoch(team.state, team.members[0], team.now)[0], team.now)


def deliver(
    state: TeamState, epoch: KeyEpoch, issuer: Identity, now_ms: int
) -> tuple[KeyEpoch, int]:
    """Apply a key epoch; on a lost race, rebuild on the new head and retry (the rule)."""
    attempts = 1
    while True:
        try:
            state.apply(epoch, now_ms, live=True)
            return epoch, attempts
        except (StaleKeyEpoch, KeyRecipientsMismatch):
            if not state.rekey_required:
                return epoch, attempts  # someone else's epoch already covers it
            epoch, _ = new_key_epoch(state, issuer, now_ms)
            attempts += 1


@pytest.mark.parametrize(
    "arrival",
    [
        ("remove_a", "epoch_a", "remove_b", "epoch_b"),
        ("remove_a", "remove_b", "epoch_a", "epoch_b"),
        ("remove_b", "remove_a", "epoch_b", "epoch_a"),
        ("remove_a", "remove_b", "epoch_b", "epoch_a"),
    ],
)
def test_concurrent_removals_converge_with_both_removed(arrival: tuple[str, ...]) -> None:
    roles = (RoleSpec(name="lead", count=1), RoleSpec(name="worker", count=3))
    team = form_team(4, roles=roles, empowered_roles=("lead",))
    lead, keeper, victim_a, victim_b = team.members
    now = team.tick()
    # Each issuer sees only its own removal when it builds its epoch (a real race).
    view_a = verify_team(team.record(), now)
    removal_a = remove(view_a, victim_a.did, lead, now_ms=now)
    view_a.apply(removal_a, now)
    epoch_a, _ = new_key_epoch(view_a, lead, now)
    view_b = verify_team(team.record(), now)
    removal_b = remove(view_b, victim_b.did, team.initiator, now_ms=now)
    view_b.apply(removal_b, now)
    epoch_b, _ = new_key_epoch(view_b, team.initiator, now)
    assert epoch_a.epoch == epoch_b.epoch == 2

    shared = team.state
    documents = {"remove_a": removal_a, "remove_b": removal_b}
    epochs = {"epoch_a": (epoch_a, lead), "epoch_b": (epoch_b, team.initiator)}
    for name in arrival:
        if name in documents:
            shared.apply(documents[name], now)
        else:
            epoch, issuer = epochs[name]
            deliver(shared, epoch, issuer, now)

    survivors = {team.initiator.did, lead.did, keeper.did}
    assert set(shared.current_members(now)) == survivors
    assert shared.key_recipients == survivors
    assert not shared.rekey_required
    shared.authorize_post(keeper.did, shared.key_epoch, now)
    for victim in (victim_a, victim_b):
        with pytest.raises(CoralError):
            shared.authorize_post(victim.did, shared.key_epoch, now)
