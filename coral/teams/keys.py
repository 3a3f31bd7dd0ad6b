"""Team keys: one random key per epoch, sealed to each member, and AEAD for messages.

A member needs no extra key exchange: its X25519 key is derived from its
Ed25519 did:key (the birational map libsodium implements). Each epoch's 32-byte
key is sealed to every member with an X25519 sealed box. Team messages are
XChaCha20-Poly1305 ciphertext whose associated data binds the team, the
epoch, the thread and the sender, so ciphertext moved to another thread,
epoch or sender fails to open.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing
import nacl.utils

from coral.protocol.canonical import canonical_json
from coral.protocol.errors import InvalidIdentity
from coral.protocol.identity import Identity, b64u_decode, b64u_encode, public_key_from_did
from coral.protocol.message import EncryptedPart
from coral.teams.documents import KeyEpoch, SealedKey
from coral.teams.errors import DecryptionFailed, InvalidTeamDocument, NotAMember
from coral.teams.state import TeamState

TEAM_MESSAGE_ALG = "xchacha20poly1305-ietf"
TEAM_KEY_BYTES = 32
_NONCE_BYTES = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
_AD_DOMAIN = b"coral/v1/team-message\x00"
_COMMITMENT_DOMAIN = b"coral/v1/team-key-commitment\x00"


@dataclass(frozen=True, slots=True)
class TeamKey:
    """The symmetric key of one team epoch, as a member holds it after unsealing."""

    team_id: str
    epoch: int
    secret: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        """The id an EncryptedPart carries: ``<team_id>/<epoch>`` ('/' never occurs in ids)."""
        return f"{self.team_id}/{self.epoch}"


def parse_key_id(key_id: str) -> tuple[str, int]:
    """Split a team key id into (team_id, epoch); InvalidTeamDocument when malformed."""
    team_id, _, epoch = key_id.rpartition("/")
    if not team_id or not epoch.isdigit():
        raise InvalidTeamDocument(f"not a team key id: {key_id!r}"[:200])
    return team_id, int(epoch)


def member_public_key(did: str) -> nacl.public.PublicKey:
    """The X25519 public key of a member, derived from its Ed25519 did:key."""
    try:
        return nacl.signing.VerifyKey(public_key_from_did(did)).to_curve25519_public_key()
    except nacl.exceptions.RuntimeError:
        raise InvalidIdentity(f"{did} has no X25519 equivalent") from None


def member_private_key(identity: Identity) -> nacl.public.PrivateKey:
    """The X25519 private key matching ``member_public_key(identity.did)``."""
    return nacl.signing.SigningKey(identity.seed).to_curve25519_private_key()


def key_commitment(team_id: str, epoch: int, secret: bytes) -> str:
    """A keyed hash of the epoch key: members compare it to detect a split key."""
    label = _COMMITMENT_DOMAIN + canonical_json({"team_id": team_id, "epoch": epoch})
    return b64u_encode(hmac.new(secret, label, hashlib.sha256).digest())


def _seal_to_member(did: str, secret: bytes) -> str:
    return b64u_encode(nacl.public.SealedBox(member_public_key(did)).encrypt(secret))


def new_key_epoch(
    state: TeamState, issuer: Identity, now_ms: int, *, secret: bytes | None = None
) -> tuple[KeyEpoch, TeamKey]:
    """Build and sign the next key epoch on ``state``'s head, sealed to its current members.

    The returned document still has to be applied (and may then lose a race,
    StaleKeyEpoch); the TeamKey is the issuer's own copy of the new key.
    """
    secret = nacl.utils.random(TEAM_KEY_BYTES) if secret is None else secret
    if len(secret) != TEAM_KEY_BYTES:
        raise InvalidTeamDocument("a team key is 32 bytes")
    epoch = state.key_epoch + 1
    sealed_keys = tuple(
        SealedKey(member=did, sealed=_seal_to_member(did, secret))
        for did in sorted(state.member_dids())
    )
    document = KeyEpoch(
        team_id=state.team_id,
        issued_at=now_ms,
        epoch=epoch,
        previous_hash=state.key_head_hash,
        issuer=issuer.did,
        key_commitment=key_commitment(state.team_id, epoch, secret),
        sealed_keys=sealed_keys,
    ).signed_by(issuer)
    return document, TeamKey(state.team_id, epoch, secret)


def open_key_epoch(key_epoch: KeyEpoch, identity: Identity) -> TeamKey:
    """Unseal this member's copy of an epoch key and check it against the commitment."""
    key_epoch.verify_signature()
    sealed = next((s.sealed for s in key_epoch.sealed_keys if s.member == identity.did), None)
    if sealed is None:
        raise NotAMember(f"key epoch {key_epoch.epoch} is not sealed to {identity.did}")
    box = nacl.public.SealedBox(member_private_key(identity))
    try:
        secret = box.decrypt(b64u_decode(sealed))
    except nacl.exceptions.CryptoError:
        raise DecryptionFailed("sealed team key does not open") from None
    expected = key_commitment(key_epoch.team_id, key_epoch.epoch, secret)
    if not hmac.compare_digest(expected, key_epoch.key_commitment):
        raise DecryptionFailed("sealed team key differs from the epoch's commitment")
    return TeamKey(key_epoch.team_id, key_epoch.epoch, secret)


def _associated_data(key: TeamKey, thread: str, sender: str) -> bytes:
    return _binding_bytes(key.team_id, key.epoch, thread, sender)


@functools.lru_cache(maxsize=4096)
def _binding_bytes(team_id: str, epoch: int, thread: str, sender: str) -> bytes:
    # Cached: a thread's posts reuse a handful of (epoch, sender) pairs.
    binding = {
        "alg": TEAM_MESSAGE_ALG,
        "team_id": team_id,
        "epoch": epoch,
        "thread": thread,
        "sender": sender,
    }
    return _AD_DOMAIN + canonical_json(binding)


def encrypt_team_message(
    key: TeamKey, plaintext: bytes, *, thread: str, sender: str, nonce: bytes | None = None
) -> EncryptedPart:
    """Encrypt ``plaintext`` for the team; the result only opens for this thread and sender."""
    nonce = nacl.utils.random(_NONCE_BYTES) if nonce is None else nonce
    if len(nonce) != _NONCE_BYTES:
        raise InvalidTeamDocument(f"an XChaCha20 nonce is {_NONCE_BYTES} bytes")
    ciphertext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, _associated_data(key, thread, sender), nonce, key.secret
    )
    return EncryptedPart(
        alg=TEAM_MESSAGE_ALG,
        key_id=key.key_id,
        nonce=b64u_encode(nonce),
        ciphertext=b64u_encode(ciphertext),
    )


def decrypt_team_message(key: TeamKey, part: EncryptedPart, *, thread: str, sender: str) -> bytes:
    """Open a team ciphertext; DecryptionFailed on a wrong key, binding or any tamper."""
    if part.alg != TEAM_MESSAGE_ALG:
        raise DecryptionFailed(f"unsupported team message algorithm {part.alg!r}")
    if part.key_id != key.key_id:
        raise DecryptionFailed(f"encrypted under key {part.key_id}, not {key.key_id}")
    nonce = b64u_decode(part.nonce)
    if len(nonce) != _NONCE_BYTES:
        raise DecryptionFailed("nonce has the wrong length")
    try:
        return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            b64u_decode(part.ciphertext), _associated_data(key, thread, sender), nonce, key.secret
        )
    except nacl.exceptions.CryptoError:
        raise DecryptionFailed("team message does not open under this key") from None
