"""Lossless conversion between the message model, its JSON and its protobuf.

Decoding is where untrusted bytes enter, so each decoder checks the size
limit first, then syntax, then the schema, and raises a typed error. After
decoding, both wires yield the same ``Message`` and so the same signed bytes.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage
from google.protobuf.unknown_fields import UnknownFieldSet

from coral.protocol.canonical import canonical_json, check_depth, check_strings, parse_json
from coral.protocol.errors import InvalidMessage, MalformedProtobuf, TooLarge, UnknownField
from coral.protocol.identity import b64u_decode, b64u_encode
from coral.protocol.limits import DEFAULT_LIMITS, Limits
from coral.protocol.message import (
    DataPart,
    FilePart,
    Message,
    Part,
    PaymentRef,
    TextPart,
    from_wire,
    to_wire,
)
from coral.v1 import message_pb2 as pb


def check_limits(message: Message, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise LimitExceeded when a decoded message breaks a named limit."""
    if len(message.parts) > limits.max_parts:
        raise TooLarge(f"{len(message.parts)} parts exceeds the limit of {limits.max_parts}")
    if len(message.mentions) > limits.max_mentions:
        raise TooLarge(f"{len(message.mentions)} mentions exceeds {limits.max_mentions}")
    for part in message.parts:
        if isinstance(part, TextPart) and len(part.text) > limits.max_text_chars:
            raise TooLarge(f"a text part exceeds {limits.max_text_chars} characters")
        if isinstance(part, DataPart):
            check_depth(part.data, limits.max_depth - 3)


# JSON -----------------------------------------------------------------------


def message_to_json(message: Message) -> bytes:
    """Serialize to compact JSON bytes (UTF-8)."""
    return json.dumps(to_wire(message), separators=(",", ":"), ensure_ascii=False).encode()


def message_from_json(raw: bytes | str, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Parse and validate JSON message bytes with every protocol check but the signature."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > limits.max_message_bytes:
        raise TooLarge(f"message is {size} bytes; the limit is {limits.max_message_bytes}")
    message = from_wire(
        parse_json(raw, max_depth=limits.max_depth, max_number_chars=limits.max_number_chars)
    )
    check_limits(message, limits)
    return message


# Protobuf ---------------------------------------------------------------------


def _part_to_pb(part: Part) -> pb.Part:
    if isinstance(part, TextPart):
        return pb.Part(text=pb.TextPart(text=part.text))
    if isinstance(part, DataPart):
        return pb.Part(data=pb.DataPart(json=canonical_json(part.data).decode()))
    if isinstance(part, FilePart):
        return pb.Part(
            file=pb.FilePart(
                uri=part.uri,
                media_type=part.media_type,
                name=part.name,
                sha256=part.sha256,
                size=part.size,
            )
        )
    return pb.Part(
        encrypted=pb.EncryptedPart(
            alg=part.alg,
            key_id=part.key_id,
            nonce=b64u_decode(part.nonce),
            ciphertext=b64u_decode(part.ciphertext),
        )
    )


def message_to_proto(message: Message) -> pb.Message:
    """Build the protobuf twin of a message."""
    out = pb.Message(
        id=message.id,
        kind=message.kind,
        sender=message.sender,
        mentions=list(message.mentions),
        created_at=message.created_at,
        parts=[_part_to_pb(p) for p in message.parts],
    )
    if message.thread is not None:
        out.thread = message.thread
    if message.expires_at is not None:
        out.expires_at = message.expires_at
    if message.payment is not None:
        p = message.payment
        out.payment.CopyFrom(
            pb.PaymentRef(ledger=p.ledger, transfer_id=p.transfer_id, amount=p.amount)
        )
    if message.signature is not None:
        out.signature = message.signature
    return out


def _part_from_pb(part: pb.Part, limits: Limits) -> dict[str, Any]:
    which = part.WhichOneof("content")
    if which == "text":
        return {"type": "text", "text": part.text.text}
    if which == "data":
        data = parse_json(
            part.data.json, max_depth=limits.max_depth, max_number_chars=limits.max_number_chars
        )
        return {"type": "data", "data": data}
    if which == "file":
        f = part.file
        obj: dict[str, Any] = {"type": "file", "uri": f.uri, "media_type": f.media_type}
        for name in ("name", "sha256", "size"):
            if f.HasField(name):
                obj[name] = getattr(f, name)
        return obj
    if which == "encrypted":
        e = part.encrypted
        return {
            "type": "encrypted",
            "alg": e.alg,
            "key_id": e.key_id,
            "nonce": b64u_encode(e.nonce),
            "ciphertext": b64u_encode(e.ciphertext),
        }
    raise InvalidMessage("a part has no content")


def _has_unknown_fields(msg: ProtoMessage) -> bool:
    # A field number we do not know could carry meaning the signer intended
    # but we would silently drop, so strictness matters here.
    if len(UnknownFieldSet(msg)):
        return True
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        children = value if field.is_repeated else [value]
        if any(_has_unknown_fields(child) for child in children):
            return True
    return False


def _message_has_unknown_fields(msg: pb.Message) -> bool:
    # The same walk as _has_unknown_fields, unrolled for coral.v1.Message (the
    # hot path: every submitted message): parts hold one flat sub-message each.
    if len(UnknownFieldSet(msg)):
        return True
    for part in msg.parts:
        if len(UnknownFieldSet(part)):
            return True
        which = part.WhichOneof("content")
        if which is not None and len(UnknownFieldSet(getattr(part, which))):
            return True
    return msg.HasField("payment") and bool(len(UnknownFieldSet(msg.payment)))


def message_from_proto(msg: pb.Message, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Validate a protobuf message into the model (same checks as JSON)."""
    if _message_has_unknown_fields(msg):
        raise UnknownField("protobuf message carries unknown fields")
    wire: dict[str, Any] = {
        "id": msg.id,
        "kind": msg.kind,
        "sender": msg.sender,
        "mentions": list(msg.mentions),
        "created_at": msg.created_at,
        "parts": [_part_from_pb(p, limits) for p in msg.parts],
    }
    for name in ("thread", "expires_at", "signature"):
        if msg.HasField(name):
            wire[name] = getattr(msg, name)
    if msg.HasField("payment"):
        p = msg.payment
        wire["payment"] = {"ledger": p.ledger, "transfer_id": p.transfer_id, "amount": p.amount}
    check_strings(wire)
    message = from_wire(wire)
    check_limits(message, limits)
    return message


def message_from_protobuf_bytes(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Parse serialized protobuf bytes with the size limit checked first."""
    if len(raw) > limits.max_message_bytes:
        raise TooLarge(f"message is {len(raw)} bytes; the limit is {limits.max_message_bytes}")
    msg = pb.Message()
    try:
        msg.ParseFromString(raw)
    except (DecodeError, RuntimeError) as exc:
        raise MalformedProtobuf(f"cannot parse protobuf: {exc}") from None
    return message_from_proto(msg, limits)


__all__ = [
    "PaymentRef",
    "check_limits",
    "message_from_json",
    "message_from_proto",
    "message_from_protobuf_bytes",
    "message_to_json",
    "message_to_proto",
]
