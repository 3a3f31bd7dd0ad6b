"""did:key encoding, Ed25519 identities."""

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coral.protocol.errors import InvalidIdentity, SignatureError
from coral.protocol.identity import (
    Identity,
    PublicIdentity,
    b58decode,
    b58encode,
    b64u_decode,
    b64u_encode,
    did_from_public_key,
    public_key_from_did,
)

# W3C did:key Ed25519 vector (did-method-key test vectors): did <-> publicKeyBase58.
SPEC_DID = "did:key:z6MkmjY8GnV5i9YTDtPETC2uUAW6ejw3nk5mXF5yci5ab7th"
SPEC_KEY_B58 = "8HH5gYEeNc3z7PYXmd54d4x6qAfCNrqQqEB3nS7Zfu7K"

# RFC 8032 section 7.1, test 1.
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUB = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIG_EMPTY = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def test_spec_vector_decodes_to_the_published_key():
    assert public_key_from_did(SPEC_DID) == b58decode(SPEC_KEY_B58)


def test_spec_vector_encodes_back_to_the_same_did():
    assert did_from_public_key(b58decode(SPEC_KEY_B58)) == SPEC_DID


def test_rfc8032_seed_gives_published_key_and_signature():
    identity = Identity.from_seed(RFC8032_SEED)
    assert identity.public_key == RFC8032_PUB
    assert identity.sign(b"") == RFC8032_SIG_EMPTY
    assert identity.did.startswith("did:key:z6Mk")


def test_base58_keeps_leading_zero_bytes():
    data = b"\x00\x00\x01\x02"
    assert b58encode(data).startswith("11")
    assert b58decode(b58encode(data)) == data


# The hand-written base58btc the library replaced: ids and DIDs it wrote must still parse.
_BITCOIN = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _reference_b58encode(data: bytes) -> str:
    n, out = int.from_bytes(data, "big"), []
    while n:
        n, rem = divmod(n, 58)
        out.append(_BITCOIN[rem])
    return "1" * (len(data) - len(data.lstrip(b"\x00"))) + "".join(reversed(out))


@given(st.binary(max_size=64))
def test_base58_matches_the_reference_encoding_and_round_trips(data):
    text = b58encode(data)
    assert text == _reference_b58encode(data)
    assert b58decode(text) == data


@given(st.binary(min_size=32, max_size=32))
def test_did_round_trips_every_key(key):
    assert public_key_from_did(did_from_public_key(key)) == key


@pytest.mark.parametrize(
    "bad",
    [
        "did:web:example",
        "did:key:",
        "did:key:z0OIl",  # characters outside base58
        SPEC_DID + " ",  # the base58 library strips trailing whitespace; a DID may not carry it
        SPEC_DID + "\n",
        "did:key:z6Mkö",  # not ASCII
        "did:key:z" + b58encode(b"\xe7\x01" + bytes(33)),  # secp256k1 multicodec
        "did:key:z" + b58encode(b"\xed\x01" + bytes(31)),  # short key
        "not a did",
    ],
)
def test_wrong_did_key_is_a_typed_error(bad):
    with pytest.raises(InvalidIdentity):
        public_key_from_did(bad)


def test_signature_by_another_key_does_not_verify():
    alice, mallory = Identity.generate(), Identity.generate()
    sig = mallory.sign(b"payload")
    with pytest.raises(SignatureError):
        PublicIdentity.from_did(alice.did).verify(b"payload", sig)
    PublicIdentity.from_did(mallory.did).verify(b"payload", sig)


def test_repr_never_shows_the_seed():
    identity = Identity.generate()
    assert identity.seed.hex() not in repr(identity)


def _reference_b64u_decode(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        return None


@given(st.binary(max_size=96))
def test_b64u_matches_the_standard_library_and_round_trips(data):
    text = b64u_encode(data)
    assert text == base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
    assert b64u_decode(text) == data


@given(st.text(alphabet="AZaz09-_+/=!\u00e9 \n", max_size=24))
def test_b64u_decode_accepts_and_refuses_what_the_standard_library_does(text):
    expected = _reference_b64u_decode(text)
    if expected is None:
        with pytest.raises(SignatureError):
            b64u_decode(text)
    else:
        assert b64u_decode(text) == expected
