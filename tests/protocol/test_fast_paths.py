"""The hot-path shortcuts give exactly what the general code gives."""

from __future__ import annotations

from hypothesis import given, settings

from coral.protocol.canonical import canonical_json
from coral.protocol.codec import _has_unknown_fields, _message_has_unknown_fields, message_to_proto
from coral.protocol.message import DataPart, Message, TextPart, to_wire, unsigned_wire
from coral.protocol.signing import (
    MESSAGE_DOMAIN,
    _unsigned_wire_fast,
    canonical_wire,
    signing_payload,
)
from coral.v1 import message_pb2 as pb

from .test_codec import messages


@settings(max_examples=300)
@given(messages)
def test_signing_payload_equals_canonical_json_of_the_unsigned_wire(message: Message) -> None:
    assert signing_payload(message) == MESSAGE_DOMAIN + canonical_json(unsigned_wire(message))
    fast = _unsigned_wire_fast(message)
    if fast is not None:
        assert fast == unsigned_wire(message)


def test_data_with_floats_takes_the_general_canonical_path() -> None:
    message = Message(
        id="m1",
        sender="did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
        created_at=1,
        parts=(TextPart(text="x"), DataPart(data={"f": 1.5e300, "b": [1e-7]})),
    )
    assert _unsigned_wire_fast(message) is None
    assert signing_payload(message) == MESSAGE_DOMAIN + canonical_json(unsigned_wire(message))


def test_unrolled_unknown_field_walk_covers_every_nested_message_type() -> None:
    # The unrolled walk assumes part contents and payment hold no sub-messages;
    # a schema change that adds one must update _message_has_unknown_fields.
    for field in pb.Part.DESCRIPTOR.fields:
        assert field.message_type is not None
        assert all(f.message_type is None for f in field.message_type.fields)
    assert all(f.message_type is None for f in pb.PaymentRef.DESCRIPTOR.fields)
    nested = {f.name for f in pb.Message.DESCRIPTOR.fields if f.message_type is not None}
    assert nested == {"parts", "payment"}


@settings(max_examples=100)
@given(messages)
def test_unrolled_unknown_field_walk_agrees_with_the_generic_one(message: Message) -> None:
    proto = message_to_proto(message)
    assert not _message_has_unknown_fields(proto)
    assert _message_has_unknown_fields(proto) == _has_unknown_fields(proto)
    if proto.parts:
        extra = pb.TextPart(text="x").SerializeToString() + b"\x98\x06\x01"  # field 99 = 1
        which = proto.parts[0].WhichOneof("content")
        getattr(proto.parts[0], which).MergeFromString(
            b"\x98\x06\x01" if which != "text" else extra
        )
        assert _message_has_unknown_fields(proto) and _has_unknown_fields(proto)


@settings(max_examples=200)
@given(messages)
def test_canonical_wire_equals_canonical_json_of_the_wire(message: Message) -> None:
    assert canonical_wire(message) == canonical_json(to_wire(message))
