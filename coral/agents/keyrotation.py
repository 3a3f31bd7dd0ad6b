"""Key rotation with signed hand-over records, for agents and nodes.

A ``KeyHandover`` says "the key ``old_did`` hands over to ``new_did`` from
``issued_at``". Both keys sign the same body under their own domain prefix:
the old key's signature proves the holder of the old identity authorised the
move, the new key's signature proves the new key exists and agreed (so nobody
can hand an identity to a key they do not hold, or claim someone else's).

An agent rotates by sending a ``RotationRequest``: the handover, a tombstone
of its current directory record signed by the old key, and a replacement
record for the new did with the same manifest signed by the new key. A
directory that accepts it stores the tombstone (the old did is no longer
listed) and lists the replacement; peers receive both through ordinary
directory gossip and can follow ``successor_of`` from the old did to the new.

Pure module: no I/O, the clock is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from coral.protocol.agent import AgentRecord, sign_record_as_agent, verify_agent_signature
from coral.protocol.errors import Conflict, FromFuture, InvalidMessage, SignatureError
from coral.protocol.identity import Identity
from coral.protocol.message import Did, Millis
from coral.protocol.signing import sign_object, verify_object

#: Signed by the key being retired.
HANDOVER_OLD_DOMAIN = b"coral/v1/key-handover-old\x00"
#: Signed by the key taking over; a different prefix so one signature can never
#: stand in for the other.
HANDOVER_NEW_DOMAIN = b"coral/v1/key-handover-new\x00"

SubjectKind = Literal["agent", "node"]


class RotationRefused(Conflict):
    """A rotation that does not continue the current record (wrong did, manifest, order)."""

    reason = "rotation_refused"


class KeyHandover(BaseModel):
    """Proof that identity ``old_did`` continues as ``new_did``; signed by both keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: SubjectKind
    old_did: Did
    new_did: Did
    issued_at: Millis
    note: Annotated[str, Field(max_length=256)] = ""
    old_signature: str | None = None
    new_signature: str | None = None

    def body(self) -> dict[str, Any]:
        """The fields both keys sign."""
        return self.model_dump(mode="json", exclude={"old_signature", "new_signature"})


def issue_handover(
    old: Identity, new: Identity, issued_at: int, *, kind: SubjectKind = "agent", note: str = ""
) -> KeyHandover:
    """A hand-over from ``old`` to ``new``, signed by both (the caller holds both seeds)."""
    if old.did == new.did:
        raise InvalidMessage("a key cannot hand over to itself", reason="invalid_handover")
    unsigned = KeyHandover(
        kind=kind, old_did=old.did, new_did=new.did, issued_at=issued_at, note=note
    )
    body = unsigned.body()
    return unsigned.model_copy(
        update={
            "old_signature": sign_object(HANDOVER_OLD_DOMAIN, body, old),
            "new_signature": sign_object(HANDOVER_NEW_DOMAIN, body, new),
        }
    )


def verify_handover(handover: KeyHandover, now_ms: int, max_future_skew_ms: int) -> None:
    """Raise unless both keys signed this hand-over and it is not from the future.

    SignatureError for a missing or wrong signature, FromFuture for an
    ``issued_at`` beyond the skew window, InvalidMessage for a self hand-over.
    """
    if handover.old_did == handover.new_did:
        raise InvalidMessage("a key cannot hand over to itself", reason="invalid_handover")
    if not handover.old_signature or not handover.new_signature:
        raise SignatureError("a hand-over needs both signatures", reason="missing_signature")
    if handover.issued_at > now_ms + max_future_skew_ms:
        raise FromFuture("hand-over issued in the future")
    body = handover.body()
    verify_object(HANDOVER_OLD_DOMAIN, body, handover.old_signature, handover.old_did)
    verify_object(HANDOVER_NEW_DOMAIN, body, handover.new_signature, handover.new_did)


def parse_handover(obj: Any) -> KeyHandover:
    """Validate a JSON object as a KeyHandover with a typed error."""
    try:
        return KeyHandover.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "handover"
        raise InvalidMessage(f"{where}: {first['msg']}", reason="invalid_handover") from None


@dataclass(frozen=True, slots=True)
class RotationRequest:
    """What an agent sends to rotate: hand-over, old-record tombstone, new record."""

    handover: KeyHandover
    tombstone: AgentRecord
    replacement: AgentRecord


def build_agent_rotation(
    current: AgentRecord, old: Identity, new: Identity, now_ms: int
) -> RotationRequest:
    """Everything an agent holding both keys sends to move ``current`` to ``new``."""
    handover = issue_handover(old, new, now_ms, kind="agent")
    tombstone = current.model_copy(
        update={
            "version": current.version + 1,
            "updated_at": now_ms,
            "deleted": True,
            "agent_signature": None,
            "node_signature": None,
        }
    )
    replacement = AgentRecord(
        agent=new.did,
        home_node=current.home_node,
        manifest=current.manifest,
        version=1,
        updated_at=now_ms,
    )
    return RotationRequest(
        handover=handover,
        tombstone=sign_record_as_agent(tombstone, old),
        replacement=sign_record_as_agent(replacement, new),
    )


def check_agent_rotation(
    current: AgentRecord, request: RotationRequest, now_ms: int, max_future_skew_ms: int
) -> None:
    """Raise unless ``request`` validly continues the directory's ``current`` record.

    The checks a directory runs before storing the tombstone and listing the
    replacement: signatures, matching dids, same manifest and home node, and
    a tombstone newer than the current record.
    """
    handover, tombstone, replacement = request.handover, request.tombstone, request.replacement
    if handover.kind != "agent":
        raise RotationRefused("an agent rotation needs an agent hand-over")
    verify_handover(handover, now_ms, max_future_skew_ms)
    if current.deleted:
        raise RotationRefused("the current record is already deregistered")
    if handover.old_did != current.agent or tombstone.agent != current.agent:
        raise RotationRefused("the hand-over does not start from the current agent")
    if replacement.agent != handover.new_did:
        raise RotationRefused("the replacement record is not for the new key")
    if handover.issued_at < current.updated_at:
        raise RotationRefused("the hand-over predates the current record")
    if not tombstone.deleted or tombstone.version <= current.version:
        raise RotationRefused("the tombstone must be a newer, deleted version of the record")
    if tombstone.manifest != current.manifest or replacement.manifest != current.manifest:
        raise RotationRefused("a rotation keeps the manifest unchanged")
    if replacement.home_node != current.home_node or tombstone.home_node != current.home_node:
        raise RotationRefused("a rotation keeps the home node unchanged")
    verify_agent_signature(tombstone)
    verify_agent_signature(replacement)


def successor_of(did: str, handovers: Iterable[KeyHandover]) -> str:
    """Follow verified hand-overs from ``did`` to the key that holds the identity now.

    Stops at the last hop, or before revisiting a key if hand-overs form a
    cycle (possible only if a key was rotated back to an earlier one).
    """
    by_old: dict[str, KeyHandover] = {}
    for handover in handovers:
        known = by_old.get(handover.old_did)
        # Two hand-overs from one key: the later one is the key holder's final word.
        if known is None or handover.issued_at > known.issued_at:
            by_old[handover.old_did] = handover
    seen = {did}
    current = did
    while current in by_old:
        nxt = by_old[current].new_did
        if nxt in seen:
            break
        seen.add(nxt)
        current = nxt
    return current
