"""Message signatures: Ed25519 over a domain-separated canonical encoding.

The signed bytes are ``DOMAIN + JCS(message without signature)``. Because
both wires decode to the same wire object, one signature verifies whether the
message travelled as JSON or as protobuf. The domain prefix keeps a message
signature from being reusable as any other kind of Coral signature.
"""

from __future__ import annotations

from typing import Any

from coral.protocol.canonical import canonical_json, encode_plain, is_plain_json
from coral.protocol.errors import MissingSignature, SignatureError, TooLarge
from coral.protocol.identity import Identity, PublicIdentity, b64u_decode, b64u_encode
from coral.protocol.message import (
    DataPart,
    EncryptedPart,
    FilePart,
    Message,
    TextPart,
    to_wire,
    unsigned_wire,
)

MESSAGE_DOMAIN = b"coral/v1/message\x00"


def signing_payload(message: Message) -> bytes:
    """The exact bytes a message signature covers."""
    wire = _unsigned_wire_fast(message)
    if wire is None:
        return MESSAGE_DOMAIN + canonical_json(unsigned_wire(message))
    try:
        return MESSAGE_DOMAIN + encode_plain(wire).encode("utf-8")
    except UnicodeEncodeError:
        return MESSAGE_DOMAIN + canonical_json(unsigned_wire(message))  # raises the typed error


def canonical_wire(message: Message) -> bytes:
    """RFC 8785 canonical JSON of the whole wire object, signature included (for storage)."""
    wire = _unsigned_wire_fast(message)
    if wire is not None:
        if message.signature is not None:
            wire["signature"] = message.signature
        try:
            return encode_plain(wire).encode("utf-8")
        except UnicodeEncodeError:
            pass  # the general path raises the typed error
    return canonical_json(to_wire(message))


# Every field but DataPart.data is validated to a type whose stdlib JSON text is
# already its RFC 8785 form (ASCII keys, ints within 2**53, plain strings), so
# the wire object is built straight from the attributes (model_dump is most of
# the cost of a signature) and only data payloads need the full canonical check.


def _unsigned_wire_fast(message: Message) -> dict[str, Any] | None:
    """``unsigned_wire(message)`` without model_dump, or None when a data part is not plain."""
    parts: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, DataPart):
            if not is_plain_json(part.data):
                return None
            parts.append({"type": "data", "data": part.data})
        elif isinstance(part, FilePart):
            file: dict[str, Any] = {"type": "file", "uri": part.uri, "media_type": part.media_type}
            for key in ("name", "sha256", "size"):
                value = getattr(part, key)
                if value is not None:
                    file[key] = value
            parts.append(file)
        elif isinstance(part, EncryptedPart):
            parts.append(
                {
                    "type": "encrypted",
                    "alg": part.alg,
                    "key_id": part.key_id,
                    "nonce": part.nonce,
                    "ciphertext": part.ciphertext,
                }
            )
        else:
            return None
    wire: dict[str, Any] = {
        "id": message.id,
        "kind": message.kind,
        "sender": message.sender,
        "mentions": list(message.mentions),
        "created_at": message.created_at,
        "parts": parts,
    }
    if message.thread is not None:
        wire["thread"] = message.thread
    if message.expires_at is not None:
        wire["expires_at"] = message.expires_at
    if message.payment is not None:
        p = message.payment
        wire["payment"] = {"ledger": p.ledger, "transfer_id": p.transfer_id, "amount": p.amount}
    return wire


def sign_message(message: Message, identity: Identity) -> Message:
    """Return a copy of ``message`` signed by ``identity``, which must be its sender."""
    if message.sender != identity.did:
        raise SignatureError("the signer must be the message's sender")
    signature = b64u_encode(identity.sign(signing_payload(message)))
    return message.model_copy(update={"signature": signature})


def verify_message_signature(message: Message, *, max_bytes: int | None = None) -> None:
    """Raise a SignatureError subclass unless the sender's key signed this message.

    With ``max_bytes``, also refuse (TooLarge) a message whose canonical form is
    larger: the bytes are computed once, for both checks.
    """
    payload = signing_payload(message)
    if max_bytes is not None and len(payload) - len(MESSAGE_DOMAIN) > max_bytes:
        raise TooLarge(f"message exceeds the size limit of {max_bytes} bytes")
    if not message.signature:
        raise MissingSignature("message is not signed")
    raw = b64u_decode(message.signature)
    if len(raw) != 64:
        raise SignatureError("an Ed25519 signature is 64 bytes")
    PublicIdentity.from_did(message.sender).verify(payload, raw)


def sign_object(domain: bytes, obj: dict[str, Any], identity: Identity) -> str:
    """Sign a JSON object (records, manifests) under a domain; returns base64url."""
    return b64u_encode(identity.sign(domain + canonical_json(obj)))


def verify_object(domain: bytes, obj: dict[str, Any], signature: str, did: str) -> None:
    """Raise SignatureError unless ``signature`` by ``did`` covers ``obj`` under ``domain``."""
    raw = b64u_decode(signature)
    if len(raw) != 64:
        raise SignatureError("an Ed25519 signature is 64 bytes")
    PublicIdentity.from_did(did).verify(domain + canonical_json(obj), raw)
