"""coral.v1.NodeService: node info and message verification."""

from __future__ import annotations

from typing import Any

import grpc

from coral.api.context import NodeContext
from coral.protocol.codec import message_from_json, message_from_proto, message_from_protobuf_bytes
from coral.protocol.errors import InvalidMessage
from coral.v1 import node_pb2, node_pb2_grpc


class NodeServicer(node_pb2_grpc.NodeServiceServicer):
    """Serves the node's signed info and checks messages for callers."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    async def GetNodeInfo(
        self, request: node_pb2.GetNodeInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> node_pb2.NodeInfo:
        return node_pb2.NodeInfo(**self.ctx.node_info())

    async def VerifyMessage(
        self, request: node_pb2.VerifyMessageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> node_pb2.VerifyMessageResponse:
        limits = self.ctx.verifier.limits
        which = request.WhichOneof("encoding")
        if which == "message":
            message = message_from_proto(request.message, limits)
        elif which == "json":
            message = message_from_json(request.json, limits)
        elif which == "protobuf":
            message = message_from_protobuf_bytes(request.protobuf, limits)
        else:
            raise InvalidMessage("no message given")
        # A check for a third party never records the id (see verify_message over HTTP).
        self.ctx.verifier.verify(message, check_replay=request.check_replay, remember=False)
        return node_pb2.VerifyMessageResponse(valid=True, message_id=message.id)
