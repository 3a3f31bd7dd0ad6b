"""Team thread messages: ordinary signed Coral messages whose one part is ciphertext.

The node stores and routes these like any thread message; only members
holding the epoch key can read the inner parts (text, data, file references),
which travel as the canonical JSON list of their wire objects.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from pydantic import TypeAdapter, ValidationError

from coral.protocol.canonical import canonical_json, parse_json
from coral.protocol.identity import Identity
from coral.protocol.message import EncryptedPart, Message, Part, new_message_id
from coral.protocol.signing import sign_message, verify_message_signature
from coral.teams.errors import DecryptionFailed, InvalidTeamDocument
from coral.teams.keys import TeamKey, decrypt_team_message, encrypt_team_message, parse_key_id
from coral.teams.state import TeamState

TEAM_MESSAGE_KIND = "team.message"


@functools.cache
def _parts_adapter() -> TypeAdapter[tuple[Part, ...]]:
    # Built on first use, not at import (node start-up decrypts no team message).
    return TypeAdapter(tuple[Part, ...])


def build_team_message(
    key: TeamKey,
    sender: Identity,
    *,
    thread: str,
    parts: tuple[Part, ...],
    now_ms: int,
    mentions: tuple[str, ...] = (),
) -> Message:
    """Encrypt ``parts`` under ``key`` into a signed message for ``thread``.

    Mentions stay in clear so the node can wake the right members; put
    nothing secret in them.
    """
    plaintext = canonical_json([part.model_dump(mode="json") for part in parts])
    encrypted = encrypt_team_message(key, plaintext, thread=thread, sender=sender.did)
    message = Message(
        id=new_message_id(now_ms),
        kind=TEAM_MESSAGE_KIND,
        sender=sender.did,
        thread=thread,
        mentions=mentions,
        created_at=now_ms,
        parts=(encrypted,),
    )
    return sign_message(message, sender)


def team_message_epoch(message: Message) -> tuple[str, int]:
    """(team_id, epoch) a team message is encrypted under; InvalidTeamDocument if not one."""
    if message.kind != TEAM_MESSAGE_KIND or len(message.parts) != 1:
        raise InvalidTeamDocument("a team message has kind team.message and one part")
    part = message.parts[0]
    if not isinstance(part, EncryptedPart):
        raise InvalidTeamDocument("a team message's part is encrypted")
    return parse_key_id(part.key_id)


def authorize_team_message(state: TeamState, message: Message, now_ms: int) -> None:
    """Raise unless the message is signed and its sender may post to the team now.

    This is what a node (or a member) checks before accepting a team post:
    authorization against certificates and the key epoch head, not the caller.
    """
    verify_message_signature(message)
    team_id, epoch = team_message_epoch(message)
    if team_id != state.team_id:
        raise InvalidTeamDocument("message is encrypted for another team")
    state.authorize_post(message.sender, epoch, now_ms)


def read_team_message(message: Message, keys: Mapping[str, TeamKey]) -> tuple[Part, ...]:
    """Verify the sender's signature, decrypt with the matching key and return the inner parts."""
    verify_message_signature(message)
    team_message_epoch(message)
    part = message.parts[0]
    assert isinstance(part, EncryptedPart)
    key = keys.get(part.key_id)
    if key is None or message.thread is None:
        raise DecryptionFailed(f"no key {part.key_id} held for this message")
    plaintext = decrypt_team_message(key, part, thread=message.thread, sender=message.sender)
    try:
        return _parts_adapter().validate_python(parse_json(plaintext))
    except ValidationError:
        raise InvalidTeamDocument("decrypted team message is not a list of parts") from None
