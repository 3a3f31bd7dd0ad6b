"""Message signatures: Ed25519 over a domain-separated canonical encoding.

The signed bytes are ``DOMAIN + JCS(message without signature)``. Because
both wires decode to the same wire object, one signature verifies whether the
message travelled as JSON or as protobuf. The domain prefix keeps a message
signature from being reusable as any other kind of Coral signature.
"""

from __future__ import annotations

from typing import Any

from coral.protocol.canonical import canonical_json
from coral.protocol.errors import MissingSignature, SignatureError, TooLarge
from coral.protocol.identity import Identity, PublicIdentity, b64u_decode, b64u_encode
from coral.protocol.message import Message, unsigned_wire

MESSAGE_DOMAIN = b"coral/v1/message\x00"


def signing_payload(message: Message) -> bytes:
    """The exact bytes a message signature covers."""
    return MESSAGE_DOMAIN + canonical_json(unsigned_wire(message))


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
