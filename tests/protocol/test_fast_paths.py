"""The hot-path shortcuts give exactly what the general code gives."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coral.protocol.canonical import canonical_json
from coral.protocol.codec import _has_unknown_fields, _message_has_unknown_fields, message_to_proto
from coral.protocol.errors import InvalidUtf8
from coral.protocol.message import (
    DataPart,
    EncryptedPart,
    FilePart,
    Message,
    PaymentRef,
    TextPart,
    to_wire,
    unsigned_wire,
)
from coral.protocol.signing import (
    MESSAGE_DOMAIN,
    _canonical_text,
    canonical_wire,
    signing_payload,
)
from coral.v1 import message_pb2 as pb

from .test_codec import DIDS, messages, text


@settings(max_examples=300)
@given(messages)
def test_signing_payload_equals_canonical_json_of_the_unsigned_wire(message: Message) -> None:
    assert signing_payload(message) == MESSAGE_DOMAIN + canonical_json(unsigned_wire(message))
    fast = _canonical_text(message, None)
    if fast is not None:
        assert fast.encode("utf-8") == canonical_json(unsigned_wire(message))


# Every free-text field (the fields no pattern restricts) with any character,
# escapes and non-ASCII included: the directly written text must match the
# general encoder's byte for byte.
free_text_parts = st.one_of(
    st.builds(
        FilePart,
        uri=text.filter(bool),
        media_type=text.filter(bool),
        name=st.none() | text,
        sha256=st.none() | st.just("0f" * 32),
        size=st.none() | st.integers(min_value=0, max_value=2**53 - 1),
    ),
    st.builds(
        EncryptedPart,
        alg=text.filter(bool),
        key_id=text.filter(bool),
        nonce=st.just("AA"),
        ciphertext=st.just("A-_z"),
    ),
    st.builds(TextPart, text=text),
)
free_text_messages = st.builds(
    Message,
    id=st.just("m-1"),
    sender=st.sampled_from(DIDS),
    created_at=st.integers(min_value=0, max_value=2**53 - 1),
    parts=st.lists(free_text_parts, max_size=3).map(tuple),
    payment=st.none()
    | st.builds(PaymentRef, ledger=text.filter(bool), transfer_id=st.just("t"), amount=st.just(5)),
    signature=st.none() | st.just("c2ln"),
)


@settings(max_examples=300)
@given(free_text_messages)
def test_directly_written_text_matches_the_general_encoder_for_free_text(message: Message) -> None:
    fast = _canonical_text(message, message.signature)
    assert fast is not None
    assert fast.encode("utf-8") == canonical_json(to_wire(message))
    assert signing_payload(message) == MESSAGE_DOMAIN + canonical_json(unsigned_wire(message))


def test_a_lone_surrogate_takes_the_general_path_and_its_typed_error() -> None:
    message = Message(
        id="m1",
        sender="did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
        created_at=1,
        parts=(DataPart(data={"k": "a\ud800b"}),),
    )
    with pytest.raises(InvalidUtf8):
        signing_payload(message)
    with pytest.raises(InvalidUtf8):
        canonical_wire(message)


def test_an_unvalidated_field_takes_the_general_path() -> None:
    message = Message.model_construct(
        id="m1",
        kind="message",
        sender="did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
        thread=None,
        mentions=(),
        created_at=True,  # not an int: the JSON text would be "true"
        expires_at=None,
        parts=(),
        payment=None,
        signature=None,
    )
    assert _canonical_text(message, None) is None


def test_data_with_floats_takes_the_general_canonical_path() -> None:
    message = Message(
        id="m1",
        sender="did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
        created_at=1,
        parts=(TextPart(text="x"), DataPart(data={"f": 1.5e300, "b": [1e-7]})),
    )
    assert _canonical_text(message, None) is None
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
