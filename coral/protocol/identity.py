"""Ed25519 identities written as ``did:key`` identifiers.

A did:key for Ed25519 is ``did:key:z`` followed by the base58btc encoding of
the multicodec prefix ``0xed 0x01`` and the 32-byte public key (W3C did:key
method). Agents and nodes are both identified this way.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from functools import lru_cache

import base58
import nacl.bindings
import nacl.exceptions
import nacl.signing

from coral.protocol.errors import InvalidIdentity, SignatureError

_ED25519_MULTICODEC = b"\xed\x01"
DID_KEY_PREFIX = "did:key:z"


def b58encode(data: bytes) -> str:
    """Encode bytes as base58btc (Bitcoin alphabet), keeping leading zeros."""
    return base58.b58encode(data).decode("ascii")


def b58decode(text: str) -> bytes:
    """Decode base58btc text; raises InvalidIdentity on a foreign character.

    Stricter than the library on one point: trailing whitespace, which it
    strips, is refused, so one key has exactly one did:key spelling.
    """
    if text != text.rstrip():
        raise InvalidIdentity("base58 text ends in whitespace")
    try:
        return base58.b58decode(text)
    except ValueError as exc:  # a foreign character, or non-ASCII text
        raise InvalidIdentity(f"invalid base58: {exc}"[:200]) from None


# What base64.urlsafe_b64encode/-decode do, without their per-call wrapper layers
# (every signed message is encoded once and decoded at least once).
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def b64u_encode(data: bytes) -> str:
    """Unpadded URL-safe base64, the encoding of every signature on the wire."""
    encoded = binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE)
    return encoded.rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    """Decode unpadded URL-safe base64; raises SignatureError when malformed."""
    try:
        if type(text) is str:
            padded = text.encode("ascii").translate(_FROM_URLSAFE) + b"=" * (-len(text) % 4)
            return binascii.a2b_base64(padded)
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"signature is not base64url: {exc}") from None


def did_from_public_key(public_key: bytes) -> str:
    """Return the did:key identifier of a 32-byte Ed25519 public key."""
    if len(public_key) != 32:
        raise InvalidIdentity("an Ed25519 public key is 32 bytes")
    return DID_KEY_PREFIX + b58encode(_ED25519_MULTICODEC + public_key)


def public_key_from_did(did: str) -> bytes:
    """Return the Ed25519 public key inside a did:key; InvalidIdentity otherwise."""
    if not isinstance(did, str) or not did.startswith(DID_KEY_PREFIX):
        raise InvalidIdentity(f"not a did:key identifier: {did!r}"[:200])
    raw = b58decode(did[len(DID_KEY_PREFIX) :])
    if raw[:2] != _ED25519_MULTICODEC:
        raise InvalidIdentity("did:key is not an Ed25519 key (multicodec 0xed01)")
    if len(raw) != 34:
        raise InvalidIdentity("did:key has the wrong key length")
    return raw[2:]


@dataclass(frozen=True, slots=True)
class PublicIdentity:
    """A verifier for one did:key."""

    did: str
    verify_key: nacl.signing.VerifyKey
    _raw: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_raw", bytes(self.verify_key))

    @classmethod
    def from_did(cls, did: str) -> PublicIdentity:
        """Decode a did:key (cached: agents sign many messages with one key)."""
        return _public_identity(did)

    def verify(self, payload: bytes, signature: bytes) -> None:
        """Raise SignatureError unless ``signature`` signs ``payload`` under this key."""
        if len(signature) != nacl.bindings.crypto_sign_BYTES:
            raise SignatureError("an Ed25519 signature is 64 bytes")
        try:
            # PyNaCl's binding directly: VerifyKey.verify adds only checks done here.
            nacl.bindings.crypto_sign_open(signature + payload, self._raw)
        except (nacl.exceptions.BadSignatureError, ValueError):
            raise SignatureError(f"signature does not verify for {self.did}") from None


@lru_cache(maxsize=4096)
def _public_identity(did: str) -> PublicIdentity:
    return PublicIdentity(did, nacl.signing.VerifyKey(public_key_from_did(did)))


class Identity:
    """An Ed25519 signing identity (an agent's or a node's private key)."""

    __slots__ = ("_secret", "_signing_key", "did", "public")

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._signing_key = signing_key
        self._secret = nacl.bindings.crypto_sign_seed_keypair(bytes(signing_key))[1]
        self.did = did_from_public_key(bytes(signing_key.verify_key))
        self.public = PublicIdentity(self.did, signing_key.verify_key)

    @classmethod
    def generate(cls) -> Identity:
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """Rebuild an identity from its 32-byte private seed."""
        if len(seed) != 32:
            raise InvalidIdentity("an Ed25519 seed is 32 bytes")
        return cls(nacl.signing.SigningKey(seed))

    @property
    def seed(self) -> bytes:
        return bytes(self._signing_key)

    @property
    def public_key(self) -> bytes:
        return bytes(self._signing_key.verify_key)

    def sign(self, payload: bytes) -> bytes:
        """Return the 64-byte detached Ed25519 signature of ``payload``."""
        return nacl.bindings.crypto_sign(payload, self._secret)[: nacl.bindings.crypto_sign_BYTES]

    def __repr__(self) -> str:  # never print the seed
        return f"Identity({self.did})"
