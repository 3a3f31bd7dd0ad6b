"""Team documents: charter rules, domain separation, parsing with typed errors."""

from __future__ import annotations

import pytest
from team_builders import DEADLINE, T0, Team, identity

from coral.protocol.errors import InvalidMessage, SignatureError
from coral.teams import Money, RoleSpec, draft_charter, parse_charter, parse_team_document
from coral.teams.documents import INVITATION_DOMAIN, document_json
from coral.teams.errors import InvalidTeamDocument


def charter_json(**changes: object) -> dict[str, object]:
    charter = draft_charter(
        identity(1),
        goal="g",
        roles=(RoleSpec(name="worker"),),
        budget=Money(amount=1),
        deadline_ms=DEADLINE,
        now_ms=T0,
    )
    return {**charter.model_dump(mode="json"), **changes}


@pytest.mark.parametrize(
    "changes",
    [
        {"roles": [{"name": "a"}, {"name": "a"}]},
        {"roles": [{"name": "initiator"}]},
        {"empowered_roles": ["ghost"]},
        {"deadline_ms": T0},
        {"roles": []},
        {"surprise": 1},
    ],
)
def test_inconsistent_charters_are_refused_with_a_typed_error(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidTeamDocument):
        parse_charter(charter_json(**changes))


def test_signature_of_one_document_kind_never_verifies_as_another(team: Team) -> None:
    invitation = team.documents[0]
    assert invitation.domain == INVITATION_DOMAIN
    as_acceptance = {**invitation.model_dump(mode="json")}
    assert parse_team_document(document_json(invitation)) == invitation
    as_acceptance["type"] = "acceptance"
    with pytest.raises(InvalidTeamDocument):
        parse_team_document(as_acceptance)


def test_only_the_named_signer_can_sign(team: Team) -> None:
    unsigned = team.documents[0].model_copy(update={"signature": None})
    with pytest.raises(SignatureError):
        unsigned.signed_by(team.members[0])
    with pytest.raises(SignatureError, match="not signed"):
        unsigned.verify_signature()


def test_content_hash_changes_with_any_field_but_not_the_signature(team: Team) -> None:
    document = team.documents[0]
    assert document.content_hash() == document.model_copy(update={"signature": None}).content_hash()
    assert document.content_hash() != document.model_copy(update={"issued_at": 0}).content_hash()


def test_garbage_is_a_typed_error() -> None:
    for raw in (b"\xff", b"[]", b'{"type": "charter"}', b"{"):
        with pytest.raises(InvalidMessage):
            parse_team_document(raw)
