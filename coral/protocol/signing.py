"""Message signatures: Ed25519 over a domain-separated canonical encoding.

The signed bytes are ``DOMAIN + JCS(message without signature)``. Because
both wires decode to the same wire object, one signature verifies whether the
message travelled as JSON or as protobuf. The domain prefix keeps a message
signature from being reusable as any other kind of Coral signature.
"""

from __future__ import annotations

import json
from typing import Any

from coral.protocol.canonical import MAX_SAFE_INTEGER, canonical_json, encode_plain, is_plain_json
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
    text = _canonical_text(message, None)
    if text is not None:
        try:
            return MESSAGE_DOMAIN + text.encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: the general path raises the typed error
    return MESSAGE_DOMAIN + canonical_json(unsigned_wire(message))


def canonical_wire(message: Message) -> bytes:
    """RFC 8785 canonical JSON of the whole wire object, signature included (for storage)."""
    text = _canonical_text(message, message.signature)
    if text is not None:
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            pass  # the general path raises the typed error
    return canonical_json(to_wire(message))


# Every field but DataPart.data is validated to a type whose stdlib JSON text is
# already its RFC 8785 form (ASCII keys, ints within 2**53, plain strings), so
# the canonical text is written straight from the attributes, keys in their
# sorted order (model_dump, and sorting the keys of every object, were most
# of the cost of a signature); only data payloads need the full canonical
# check. tests/protocol/test_fast_paths.py checks this against the general
# encoder on generated messages.

_str = json.encoder.encode_basestring  # the C escaper where CPython has one


def _int(value: object) -> str | None:
    # A validated Millis/amount is an int within 2**53; anything else (a
    # model_construct'ed message) takes the general path.
    if type(value) is int and 0 <= value <= MAX_SAFE_INTEGER:
        return str(value)
    return None


def _part_text(part: TextPart | DataPart | FilePart | EncryptedPart) -> str | None:
    """The canonical JSON text of one part, or None when only the general path can write it."""
    if isinstance(part, TextPart):
        if type(part.text) is not str:
            return None
        return '{"text":' + _str(part.text) + ',"type":"text"}'
    if isinstance(part, DataPart):
        if not is_plain_json(part.data):
            return None
        return '{"data":' + encode_plain(part.data) + ',"type":"data"}'
    if isinstance(part, FilePart):
        out = '{"media_type":' + _str(part.media_type)
        if part.name is not None:
            out += ',"name":' + _str(part.name)
        if part.sha256 is not None:
            out += ',"sha256":' + _str(part.sha256)
        if part.size is not None:
            size = _int(part.size)
            if size is None:
                return None
            out += ',"size":' + size
        return out + ',"type":"file","uri":' + _str(part.uri) + "}"
    if isinstance(part, EncryptedPart):
        return (
            '{"alg":' + _str(part.alg) + ',"ciphertext":' + _str(part.ciphertext)
            + ',"key_id":' + _str(part.key_id) + ',"nonce":' + _str(part.nonce)
            + ',"type":"encrypted"}'
        )  # fmt: skip
    return None


def _canonical_text(message: Message, signature: str | None) -> str | None:
    """RFC 8785 text of the wire object (with ``signature`` when given), or None.

    None means a value only the general encoder handles (a non-plain data
    payload, an unvalidated field); the caller then takes that path.
    """
    parts = []
    for part in message.parts:
        text = _part_text(part)
        if text is None:
            return None
        parts.append(text)
    created_at = _int(message.created_at)
    if created_at is None:
        return None
    head = f'{{"created_at":{created_at}'
    if message.expires_at is not None:
        expires_at = _int(message.expires_at)
        if expires_at is None:
            return None
        head = f'{head},"expires_at":{expires_at}'
    payment = ""
    if message.payment is not None:
        p = message.payment
        amount = _int(p.amount)
        if amount is None:
            return None
        payment = (
            f',"payment":{{"amount":{amount},"ledger":{_str(p.ledger)}'
            f',"transfer_id":{_str(p.transfer_id)}}}'
        )
    tail = "}" if message.thread is None else f',"thread":{_str(message.thread)}}}'
    if signature is not None:
        tail = f',"signature":{_str(signature)}{tail}'
    return (
        f'{head},"id":{_str(message.id)},"kind":{_str(message.kind)}'
        f',"mentions":[{",".join(map(_str, message.mentions))}]'
        f',"parts":[{",".join(parts)}]{payment},"sender":{_str(message.sender)}{tail}'
    )


def sign_message(message: Message, identity: Identity) -> Message:
    """Return a copy of ``message`` signed by ``identity``, which must be its sender."""
    if message.sender != identity.did:
        raise SignatureError("the signer must be the message's sender")
    signature = b64u_encode(identity.sign(signing_payload(message)))
    # What model_copy(update=...) does (a shallow copy, one field replaced, no
    # validation), without its general-purpose overhead.
    signed = message.__copy__()
    signed.__dict__["signature"] = signature
    signed.__pydantic_fields_set__.add("signature")
    return signed


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
