"""The client half of coral.v1.FederationService: ``PeerTransport`` over gRPC.

Every call is signed with this node's key (``coral-node-auth`` metadata) and
bounded by ``CALL_TIMEOUT_S``; a failed call raises ``PeerUnreachable`` with
the peer's error text. One channel per peer address, reused until ``close``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from coral.api.grpc.federation import node_auth_metadata
from coral.federation.ports import BatchOutcome, OutboundEnvelope, PeerUnreachable
from coral.protocol.identity import Identity
from coral.v1 import federation_pb2, federation_pb2_grpc

CALL_TIMEOUT_S = 5.0


class GrpcPeerTransport:
    """Calls other nodes' FederationService, signed as ``identity``."""

    def __init__(self, identity: Identity, *, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.identity = identity
        self.timeout_s = timeout_s
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _stub(self, address: str) -> federation_pb2_grpc.FederationServiceStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(address)
            self._channels[address] = channel
        return federation_pb2_grpc.FederationServiceStub(channel)

    async def _call(self, address: str, method: str, request: Any) -> Any:
        stub = self._stub(address)
        metadata = node_auth_metadata(self.identity, method, request)
        try:
            return await getattr(stub, method)(request, metadata=metadata, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise PeerUnreachable(exc.details() or "") from exc

    async def hello(self, address: str, peer_record_json: str) -> str:
        """Introduce this node; returns the peer's own record (JSON).

        Raises:
            PeerUnreachable: the call failed.
        """
        request = federation_pb2.HelloRequest(peer_record_json=peer_record_json)
        response = await self._call(address, "Hello", request)
        return str(response.peer_record_json)

    async def gossip_hashes(self, address: str, bucket_hashes: Sequence[int]) -> str:
        """Send bucket hashes; returns the digest JSON of differing buckets ("" when none).

        Raises:
            PeerUnreachable: the call failed.
        """
        request = federation_pb2.GossipHashesRequest(bucket_hashes=list(bucket_hashes))
        response = await self._call(address, "GossipHashes", request)
        return str(response.digest_json)

    async def gossip_exchange(self, address: str, records_json: str, request_json: str) -> str:
        """Push records and a request; returns the records the peer sends back (JSON).

        Raises:
            PeerUnreachable: the call failed.
        """
        request = federation_pb2.GossipExchangeRequest(
            records_json=records_json, request_json=request_json
        )
        response = await self._call(address, "GossipExchange", request)
        return str(response.records_json)

    async def deliver_batch(
        self, address: str, envelopes: Sequence[OutboundEnvelope]
    ) -> BatchOutcome:
        """Deliver envelopes in order as one DeliverBatch call.

        Raises:
            PeerUnreachable: the call failed before anything was applied.
        """
        batch = federation_pb2.EnvelopeBatch(
            envelopes=[
                federation_pb2.Envelope(id=e.id, kind=e.kind, payload_json=e.payload_json)
                for e in envelopes
            ]
        )
        response = await self._call(address, "DeliverBatch", batch)
        return BatchOutcome(applied=int(response.applied), error=str(response.error))

    async def close(self) -> None:
        """Close every channel."""
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
