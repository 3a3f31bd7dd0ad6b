"""coral.v1.FederationService, server side (the client is ``federation_client``).

Every call is authenticated by a request signature of the calling node's key
in ``coral-node-auth`` metadata; the servicer hands the verified caller did to
the federation driver, which decides what that node may do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from coral.api.context import NodeContext
from coral.api.grpc.auth import NODE_AUTH, current_caller
from coral.protocol.errors import CoralError
from coral.protocol.message import now_ms
from coral.protocol.request_auth import sign_request
from coral.v1 import federation_pb2, federation_pb2_grpc

if TYPE_CHECKING:
    from coral.federation.driver import FederationNode

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
SERVICE = "/coral.v1.FederationService/"


def node_auth_metadata(node: Any, method: str, request: Any) -> tuple[tuple[str, str], ...]:
    """Metadata proving this node (``node`` is its Identity) sent ``request``."""
    value = sign_request(node, "RPC", SERVICE + method, request.SerializeToString(), now_ms())
    return ((NODE_AUTH, value),)


class FederationServicer(federation_pb2_grpc.FederationServiceServicer):
    """Translates node-to-node RPCs into calls on the FederationNode driver."""

    def __init__(self, ctx: NodeContext, driver: FederationNode) -> None:
        self.ctx = ctx
        self.driver = driver

    async def Hello(
        self, request: federation_pb2.HelloRequest, context: Context
    ) -> federation_pb2.HelloResponse:
        caller = current_caller().did
        own = await self.driver.on_hello(caller, request.peer_record_json)
        return federation_pb2.HelloResponse(peer_record_json=own)

    async def GossipHashes(
        self, request: federation_pb2.GossipHashesRequest, context: Context
    ) -> federation_pb2.GossipDigestResponse:
        caller = current_caller().did
        digest = self.driver.on_gossip_hashes(caller, list(request.bucket_hashes))
        return federation_pb2.GossipDigestResponse(digest_json=digest)

    async def GossipExchange(
        self, request: federation_pb2.GossipExchangeRequest, context: Context
    ) -> federation_pb2.GossipExchangeResponse:
        caller = current_caller().did
        records = await self.driver.on_gossip_exchange(
            caller, request.records_json, request.request_json
        )
        return federation_pb2.GossipExchangeResponse(records_json=records)

    async def Deliver(
        self, request: federation_pb2.Envelope, context: Context
    ) -> federation_pb2.DeliverResponse:
        caller = current_caller().did
        duplicate = await self.driver.on_deliver(
            caller, request.id, request.kind, request.payload_json
        )
        return federation_pb2.DeliverResponse(duplicate=duplicate)

    async def DeliverBatch(
        self, request: federation_pb2.EnvelopeBatch, context: Context
    ) -> federation_pb2.DeliverBatchResponse:
        caller = current_caller().did
        applied = 0
        for envelope in request.envelopes:
            try:
                await self.driver.on_deliver(
                    caller, envelope.id, envelope.kind, envelope.payload_json
                )
            except CoralError as exc:
                if applied == 0:
                    raise  # nothing applied: the whole call fails with the typed error
                return federation_pb2.DeliverBatchResponse(
                    applied=applied, error=exc.detail, error_reason=exc.reason
                )
            applied += 1
        return federation_pb2.DeliverBatchResponse(applied=applied)
