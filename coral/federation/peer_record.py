"""Signed peer records: how a node announces its id and where to reach it.

A record is signed by the node key it names, so a node cannot publish an
address for another node's id. ``seq`` grows with every new record from the
same node (nodes use their issue time in ms, which survives restarts); the
highest ``seq`` wins and anything else is stale.

A node whose key was rotated carries ``previous``: the hand-over from its
old key to the one that signs the record (``coral.agents.keyrotation``, kind
"node"). Peers verify it with the record and retire the old node id, so the
rotation spreads by ordinary gossip.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from coral.agents.keyrotation import KeyHandover, RotationRefused, verify_handover
from coral.federation.errors import RecordFromFuture, UnsignedRecord
from coral.protocol.errors import InvalidMessage, SignatureError
from coral.protocol.identity import Identity
from coral.protocol.message import Did, Millis
from coral.protocol.signing import sign_object, verify_object

PEER_RECORD_DOMAIN = b"coral/v1/peer-record\x00"
PROTOCOL_VERSION = "coral/v1"
#: How far into the future a record's timestamp may lie (clock skew allowance).
DEFAULT_MAX_FUTURE_SKEW_MS = 5 * 60 * 1000

_STRICT = ConfigDict(extra="forbid", frozen=True, defer_build=True)  # built on first use
Address = Annotated[str, Field(min_length=1, max_length=255)]


#: Most further gRPC addresses (replicas) one peer record may list.
MAX_REPLICA_ADDRESSES = 16


class PeerAddresses(BaseModel):
    """Where a node listens: its gRPC endpoint (node-to-node) and HTTP endpoint.

    A node run as several replicas (one key, one database) lists the other
    replicas' gRPC endpoints in ``grpc_replicas``; a peer may call any of
    them. Left empty, the field is not serialized at all, so records (and
    their signatures) read exactly as before it existed.
    """

    model_config = _STRICT
    grpc: Address | None = None
    http: Address | None = None
    grpc_replicas: Annotated[tuple[Address, ...], Field(max_length=MAX_REPLICA_ADDRESSES)] = ()

    @model_serializer(mode="wrap")
    def _omit_no_replicas(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if not self.grpc_replicas and isinstance(data, dict):
            data.pop("grpc_replicas", None)
        return data

    def grpc_all(self) -> list[str]:
        """Every gRPC address of the node, ``grpc`` first, each once."""
        listed = [self.grpc] if self.grpc else []
        return list(dict.fromkeys([*listed, *self.grpc_replicas]))


class PeerRecord(BaseModel):
    """A node's self-description, signed by the node key named in ``node``."""

    model_config = _STRICT
    node: Did
    addresses: PeerAddresses
    protocol_version: Annotated[str, Field(pattern=r"^coral/v[0-9]+$")] = PROTOCOL_VERSION
    seq: Annotated[int, Field(ge=1, le=2**53 - 1)]
    issued_at: Millis
    #: The hand-over from this node's previous key, after a key rotation.
    previous: KeyHandover | None = None
    signature: str | None = None

    def body(self) -> dict[str, Any]:
        """The fields the node signs (everything but the signature; ``previous`` when set)."""
        exclude = {"signature"} if self.previous is not None else {"signature", "previous"}
        return self.model_dump(mode="json", exclude=exclude)


def sign_peer_record(record: PeerRecord, node: Identity) -> PeerRecord:
    """Return the record signed by ``node``, which must be the node it describes."""
    if node.did != record.node:
        raise SignatureError("a node signs only its own peer record", reason="wrong_signer")
    return record.model_copy(
        update={"signature": sign_object(PEER_RECORD_DOMAIN, record.body(), node)}
    )


def issue_peer_record(
    node: Identity,
    addresses: PeerAddresses,
    now_ms: int,
    *,
    seq: int | None = None,
    previous: KeyHandover | None = None,
) -> PeerRecord:
    """Create and sign this node's record; ``seq`` defaults to ``now_ms`` (rises on restart).

    ``previous`` is the hand-over from the node's former key, after a rotation.
    """
    record = PeerRecord(
        node=node.did,
        addresses=addresses,
        seq=seq if seq is not None else now_ms,
        issued_at=now_ms,
        previous=previous,
    )
    return sign_peer_record(record, node)


def verify_peer_record(
    record: PeerRecord, now_ms: int, *, max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS
) -> None:
    """Raise a typed error unless the record is signed by its own node and not from the future."""
    if not record.signature:
        raise UnsignedRecord("peer record is not signed")
    if record.issued_at > now_ms + max_future_skew_ms:
        raise RecordFromFuture(f"peer record issued {record.issued_at - now_ms} ms in the future")
    verify_object(PEER_RECORD_DOMAIN, record.body(), record.signature, record.node)
    if record.previous is not None:
        handover = record.previous
        if handover.kind != "node" or handover.new_did != record.node:
            raise RotationRefused("the hand-over is not from a node key to this record's node")
        verify_handover(handover, now_ms, max_future_skew_ms)


def parse_peer_record(obj: Any) -> PeerRecord:
    """Validate a JSON object as a PeerRecord, raising InvalidMessage on bad input."""
    try:
        return PeerRecord.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise InvalidMessage(f"{where}: {first['msg']}", reason="invalid_peer_record") from None
