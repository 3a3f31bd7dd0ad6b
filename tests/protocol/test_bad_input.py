"""Every kind of bad input gets its own typed error and changes nothing."""

import json

import pytest

from coral.protocol import errors
from coral.protocol.codec import message_from_json, message_from_protobuf_bytes, message_to_proto
from coral.protocol.identity import Identity
from coral.protocol.limits import Limits
from coral.protocol.message import DataPart, Message, TextPart, new_message_id, to_wire
from coral.protocol.signing import sign_message, verify_message_signature
from coral.protocol.verify import MessageVerifier

NOW = 1_800_000_000_000
ALICE, MALLORY = Identity.generate(), Identity.generate()


def signed(**fields) -> Message:
    base = dict(
        id=new_message_id(NOW), sender=ALICE.did, created_at=NOW, parts=(TextPart(text="hi"),)
    )
    base.update(fields)
    return sign_message(Message(**base), ALICE)


def verifier(limits: Limits = Limits()) -> MessageVerifier:
    return MessageVerifier(limits, clock=lambda: NOW)


def test_a_good_message_passes_once_then_is_a_replay():
    v, msg = verifier(), signed()
    v.verify(msg)
    with pytest.raises(errors.Replayed):
        v.verify(msg)


def test_check_without_replay_does_not_record_the_id():
    v, msg = verifier(), signed()
    v.verify(msg, check_replay=False)
    v.verify(msg, check_replay=False)
    v.verify(msg)


def test_malformed_json():
    with pytest.raises(errors.MalformedJson):
        message_from_json(b'{"id": "x",')


def test_malformed_protobuf():
    with pytest.raises(errors.MalformedProtobuf):
        message_from_protobuf_bytes(b"\x0a\xff\xff\xff\xff\x0f")


def test_unknown_json_field():
    wire = to_wire(signed())
    wire["sneaky"] = 1
    with pytest.raises(errors.UnknownField, match="sneaky"):
        message_from_json(json.dumps(wire))


def test_unknown_protobuf_field():
    raw = message_to_proto(signed()).SerializeToString() + b"\xa0\x06\x01"  # field 100, varint
    with pytest.raises(errors.UnknownField):
        message_from_protobuf_bytes(raw)


def test_tampered_field_after_signing():
    wire = to_wire(signed())
    wire["parts"][0]["text"] = "HI"
    with pytest.raises(errors.SignatureError):
        verify_message_signature(message_from_json(json.dumps(wire)))


def test_signature_by_another_key():
    msg = signed()
    forged = sign_message(
        msg.model_copy(update={"sender": MALLORY.did, "signature": None}), MALLORY
    )
    claimed = forged.model_copy(update={"sender": ALICE.did})
    with pytest.raises(errors.SignatureError):
        verify_message_signature(claimed)


def test_missing_signature():
    with pytest.raises(errors.MissingSignature):
        verify_message_signature(signed().model_copy(update={"signature": None}))


def test_wrong_did_key():
    wire = to_wire(signed())
    wire["sender"] = "did:key:z6MkBADBADBAD"
    with pytest.raises(errors.CoralError) as info:
        verify_message_signature(message_from_json(json.dumps(wire)))
    assert info.value.reason in {"invalid_did", "invalid_message"}


def test_expired_message():
    with pytest.raises(errors.Expired):
        verifier().verify(signed(expires_at=NOW - 1))


def test_message_older_than_the_age_bound():
    with pytest.raises(errors.Expired):
        verifier().verify(signed(created_at=NOW - Limits().max_age_ms - 1))


def test_timestamp_too_far_in_the_future():
    with pytest.raises(errors.FromFuture):
        verifier().verify(signed(created_at=NOW + Limits().max_future_skew_ms + 1))


def test_oversized_message_is_refused_before_parsing():
    limits = Limits(max_message_bytes=1024)
    big = json.dumps(to_wire(signed(parts=(TextPart(text="x" * 2000),))))
    with pytest.raises(errors.TooLarge):
        message_from_json(big, limits)
    with pytest.raises(errors.TooLarge):
        message_from_protobuf_bytes(b"\x00" * 2000, limits)


def test_too_many_parts():
    msg = signed(parts=tuple(TextPart(text="a") for _ in range(5)))
    with pytest.raises(errors.TooLarge):
        message_from_json(json.dumps(to_wire(msg)), Limits(max_parts=4))


def test_excessive_nesting_in_data():
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    wire = to_wire(signed(parts=(DataPart(data=deep),)))
    with pytest.raises(errors.TooDeep):
        message_from_json(json.dumps(wire))


def test_non_utf8_bytes():
    raw = json.dumps(to_wire(signed())).encode().replace(b'"hi"', b'"h\xffi"')
    with pytest.raises(errors.InvalidUtf8):
        message_from_json(raw)


def test_non_utf8_string_in_protobuf():
    msg = message_to_proto(signed())
    raw = msg.SerializeToString().replace(b"hi", b"h\xff")
    with pytest.raises((errors.InvalidUtf8, errors.MalformedProtobuf)):
        message_from_protobuf_bytes(raw)


def test_seen_ids_are_forgotten_after_the_window():
    now = [NOW]
    v = MessageVerifier(Limits(max_age_ms=1000), clock=lambda: now[0])
    for _ in range(50):
        v.verify(signed(id=new_message_id(NOW)))
    assert len(v.guard) == 50
    now[0] += 5000
    v.guard.check_time(signed(created_at=now[0]), now[0])
    v.verify(signed(created_at=now[0], id=new_message_id(now[0])))
    assert len(v.guard) == 1
