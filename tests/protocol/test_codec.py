"""JSON <-> protobuf codecs: lossless both ways, one signature for both wires."""

from hypothesis import given, settings
from hypothesis import strategies as st

from coral.protocol.canonical import canonical_json
from coral.protocol.codec import (
    message_from_json,
    message_from_proto,
    message_from_protobuf_bytes,
    message_to_json,
    message_to_proto,
)
from coral.protocol.identity import Identity, b64u_encode
from coral.protocol.message import (
    DataPart,
    EncryptedPart,
    FilePart,
    Message,
    PaymentRef,
    TextPart,
    new_message_id,
    now_ms,
    to_wire,
)
from coral.protocol.signing import sign_message, verify_message_signature

IDENTITIES = [Identity.generate() for _ in range(3)]
DIDS = [i.did for i in IDENTITIES]

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
json_data = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    # Integral floats at or above 2**53 canonicalize to integer text, which I-JSON
    # cannot carry exactly; they are a documented JCS edge, not a codec bug.
    | st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda f: not (f.is_integer() and abs(f) >= 2**53)
    )
    | text,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(text, c, max_size=3),
    max_leaves=10,
)
ids = st.from_regex(r"[A-Za-z0-9._:~-]{1,40}", fullmatch=True)
b64 = st.binary(max_size=64).map(b64u_encode)

parts = st.one_of(
    st.builds(TextPart, text=text),
    st.builds(DataPart, data=json_data),
    st.builds(
        FilePart,
        uri=st.just("file:///data/x.npy") | st.just("https://example.org/a.csv"),
        media_type=st.sampled_from(["text/csv", "application/octet-stream"]),
        name=st.none() | st.just("x.npy"),
        sha256=st.none() | st.just("ab" * 32),
        size=st.none() | st.integers(min_value=0, max_value=2**40),
    ),
    st.builds(
        EncryptedPart, alg=st.just("xchacha20poly1305"), key_id=ids, nonce=b64, ciphertext=b64
    ),
)
millis = st.integers(min_value=0, max_value=2**53 - 1)
messages = st.builds(
    Message,
    id=ids,
    kind=st.sampled_from(["message", "request", "thread.create", "bid"]),
    sender=st.sampled_from(DIDS),
    thread=st.none() | ids,
    mentions=st.lists(st.sampled_from(DIDS), max_size=3).map(tuple),
    created_at=millis,
    expires_at=st.none() | millis,
    parts=st.lists(parts, max_size=4).map(tuple),
    payment=st.none()
    | st.builds(
        PaymentRef, ledger=st.just("CRL"), transfer_id=ids, amount=st.integers(1, 2**53 - 1)
    ),
    signature=st.none() | b64,
)


@settings(max_examples=200)
@given(messages)
def test_protobuf_round_trip_is_lossless(message):
    raw = message_to_proto(message).SerializeToString()
    assert message_from_protobuf_bytes(raw) == message


@settings(max_examples=200)
@given(messages)
def test_json_round_trip_is_lossless(message):
    assert message_from_json(message_to_json(message)) == message


@settings(max_examples=100)
@given(messages)
def test_json_to_protobuf_to_json_is_identity(message):
    via_proto = message_from_proto(message_to_proto(message_from_json(message_to_json(message))))
    # JSON numbers compare by value (RFC 8785): 0.0 and 0 are the same number,
    # so the canonical bytes, which signatures cover, must be identical.
    assert canonical_json(to_wire(via_proto)) == canonical_json(to_wire(message))


@settings(max_examples=50)
@given(messages)
def test_one_signature_verifies_on_both_wires(message):
    signer = IDENTITIES[DIDS.index(message.sender)]
    signed = sign_message(message.model_copy(update={"signature": None}), signer)
    verify_message_signature(message_from_json(message_to_json(signed)))
    verify_message_signature(
        message_from_protobuf_bytes(message_to_proto(signed).SerializeToString())
    )


def test_numbers_in_data_survive_protobuf_exactly():
    alice = IDENTITIES[0]
    msg = Message(
        id=new_message_id(),
        sender=alice.did,
        created_at=now_ms(),
        parts=(DataPart(data={"big": 2**53 - 1, "f": 0.1, "neg": -7}),),
    )
    back = message_from_protobuf_bytes(message_to_proto(msg).SerializeToString())
    assert back.data() == [{"big": 2**53 - 1, "f": 0.1, "neg": -7}]
    assert isinstance(back.data()[0]["big"], int)


@settings(max_examples=50)
@given(messages)
def test_the_signed_copy_is_the_message_with_only_its_signature_set(message):
    signer = IDENTITIES[DIDS.index(message.sender)]
    unsigned = message.model_copy(update={"signature": None})
    signed = sign_message(unsigned, signer)
    reference = unsigned.model_copy(update={"signature": signed.signature})
    assert signed == reference
    assert signed.model_fields_set == reference.model_fields_set
    assert unsigned.signature is None  # the original is untouched
    verify_message_signature(signed)
