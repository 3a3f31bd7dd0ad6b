"""Offline verification of a whole team record.

``verify_team`` replays a record's documents, in order, through a fresh
``TeamState``. Every signature is checked (down to the home nodes'
countersignatures of embedded agent records), so a record that verifies needs
no trust in whoever handed it over.
"""

from __future__ import annotations

from coral.protocol.errors import CoralError
from coral.teams.documents import TeamRecord
from coral.teams.state import TeamState


def verify_team(record: TeamRecord, now_ms: int) -> TeamState:
    """Verify ``record`` offline and return its state; ``current_members(now_ms)`` is who is in.

    Raises the typed error of the first document that does not apply; the
    order is the record's, so the same record always gives the same answer.
    """
    state = TeamState(record.charter, now_ms)
    for index, document in enumerate(record.documents):
        try:
            state.apply(document, now_ms)
        except CoralError as exc:
            # Same type and reason, plus where in the record it failed.
            raise type(exc)(f"document {index}: {exc.detail}", reason=exc.reason) from None
    return state
