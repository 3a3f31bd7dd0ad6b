"""verify_team: a whole record verifies offline; any tamper or bad order is refused."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from team_builders import DEADLINE, T0, Team, agent_record, form_team, identity

from coral.protocol.errors import CoralError, SignatureError
from coral.teams import (
    TeamRecord,
    new_key_epoch,
    parse_team_document,
    parse_team_record,
    remove,
    verify_team,
)
from coral.teams.documents import MembershipCertificate, document_json
from coral.teams.errors import InvalidTeamDocument


def _grown_team() -> Team:
    """Two key epochs, a removal and a rekey: every document kind but dissolution."""
    team = form_team(3, with_agent_records=True)
    team.add(remove(team.state, team.members[2].did, team.initiator, now_ms=team.tick()))
    epoch, team.key = new_key_epoch(team.state, team.initiator, team.tick())
    team.add(epoch)
    return team


GROWN = _grown_team()
GROWN_JSON = GROWN.record().to_json()
NOW = GROWN.now + 1_000


def membership(record: TeamRecord) -> dict[str, str]:
    members = verify_team(record, NOW).current_members(NOW)
    return {did: member.role for did, member in members.items()}


def test_record_verifies_offline_from_its_json_alone() -> None:
    record = parse_team_record(GROWN_JSON)
    state = verify_team(record, NOW)
    assert set(state.current_members(NOW)) == {GROWN.initiator.did} | {
        m.did for m in GROWN.members[:2]
    }
    assert state.key_epoch == 2
    assert state.snapshot() == GROWN.state.snapshot()


def test_record_after_the_deadline_verifies_with_no_current_members() -> None:
    state = verify_team(parse_team_record(GROWN_JSON), DEADLINE + 1)
    assert state.current_members(DEADLINE + 1) == {}
    assert len(state.members) == 2  # history is intact; membership has simply ended


def test_error_names_the_failing_document() -> None:
    documents = list(GROWN.record().documents)
    documents[4] = documents[4].model_copy(update={"issued_at": documents[4].issued_at + 1})
    with pytest.raises(SignatureError, match="document 4"):
        verify_team(TeamRecord(charter=GROWN.state.charter, documents=tuple(documents)), NOW)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0), replacement=st.integers(min_value=0, max_value=255))
def test_any_single_byte_tamper_is_refused(position: int, replacement: int) -> None:
    position %= len(GROWN_JSON)
    if GROWN_JSON[position] == replacement:
        replacement = (replacement + 1) % 256
    tampered = bytearray(GROWN_JSON)
    tampered[position] = replacement
    with pytest.raises(CoralError):
        verify_team(parse_team_record(bytes(tampered)), NOW)


@settings(max_examples=200, deadline=None)
@given(
    index=st.integers(min_value=0),
    position=st.integers(min_value=0),
    replacement=st.integers(min_value=0, max_value=255),
)
def test_any_single_byte_tamper_of_any_one_document_is_refused(
    index: int, position: int, replacement: int
) -> None:
    documents = GROWN.record().documents
    index %= len(documents)
    raw = bytearray(document_json(documents[index]))
    position %= len(raw)
    if raw[position] == replacement:
        replacement = (replacement + 1) % 256
    raw[position] = replacement
    with pytest.raises(CoralError):
        tampered = parse_team_document(bytes(raw))
        swapped = (*documents[:index], tampered, *documents[index + 1 :])
        verify_team(TeamRecord.model_construct(charter=GROWN.state.charter, documents=swapped), NOW)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=st.permutations(range(len(GROWN.documents))))
def test_any_order_verifies_to_the_same_team_or_is_refused_deterministically(
    order: list[int],
) -> None:
    documents = tuple(GROWN.documents[i] for i in order)
    record = TeamRecord(charter=GROWN.state.charter, documents=documents)
    outcomes = []
    for _ in range(2):
        try:
            outcomes.append(("ok", membership(record)))
        except CoralError as exc:
            outcomes.append(("refused", (type(exc), exc.reason, str(exc))))
    assert outcomes[0] == outcomes[1]
    if outcomes[0][0] == "ok":
        assert outcomes[0][1] == membership(GROWN.record())


def test_certificate_chain_reaches_the_home_node_countersignature() -> None:
    certificate = GROWN.documents[2]
    assert isinstance(certificate, MembershipCertificate)
    assert certificate.agent_record is not None
    # A record countersigned by some other node than the one it names fails,
    # even when re-signed by a (dishonest) initiator around it.
    stranger_node = identity(77_777)
    forged_record = certificate.agent_record.model_copy(update={"home_node": stranger_node.did})
    bad = certificate.model_copy(update={"agent_record": forged_record, "signature": None})
    bad = bad.signed_by(GROWN.initiator)
    documents = GROWN.record().documents
    record = TeamRecord(charter=GROWN.state.charter, documents=(*documents[:2], bad))
    with pytest.raises(SignatureError, match="embedded agent record"):
        verify_team(record, NOW)


def test_embedded_record_must_be_the_members_and_cover_the_role() -> None:
    team = form_team(1, with_key=False)
    invitation, acceptance, certificate = team.documents
    assert isinstance(certificate, MembershipCertificate)
    node = identity(88_888)
    for wrong in (
        agent_record(identity(42), node, ("compute",)),  # someone else's record
        agent_record(team.members[0], node, ("chat",)),  # lacks the role's capability
    ):
        bad = certificate.model_copy(update={"agent_record": wrong, "signature": None})
        record = TeamRecord(
            charter=team.state.charter,
            documents=(invitation, acceptance, bad.signed_by(team.initiator)),
        )
        with pytest.raises(InvalidTeamDocument):
            verify_team(record, T0 + 60_000)


def test_signature_with_spare_base64_bits_set_is_refused() -> None:
    document = GROWN.documents[0]
    signature = document.signature
    assert signature is not None
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # 64 bytes leave 4 spare bits in the last base64 character; flip only those.
    last = alphabet.index(signature[-1])
    twin = signature[:-1] + alphabet[last ^ 0b0001]
    with pytest.raises(SignatureError, match="canonical"):
        document.model_copy(update={"signature": twin}).verify_signature()
