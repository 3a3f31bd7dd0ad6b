"""coral.v1.AgentService and coral.v1.CoordinationService over grpc.aio."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, TypeAlias, cast

import grpc

from coral.api.context import NodeContext, need
from coral.api.errors import as_coral_error, grpc_status
from coral.api.grpc import convert
from coral.api.grpc.auth import current_caller
from coral.coordination.model import Thread, ThreadEntry, WaitKind
from coral.protocol.codec import message_from_proto
from coral.protocol.errors import InvalidMessage
from coral.v1 import (
    agents_pb2,
    agents_pb2_grpc,
    coordination_pb2,
    coordination_pb2_grpc,
    message_pb2,
)

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

log = logging.getLogger("coral.grpc")


class AgentServicer(agents_pb2_grpc.AgentServiceServicer):
    """Registration and lookup of agents."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    async def RegisterAgent(
        self, request: agents_pb2.RegisterAgentRequest, context: Context
    ) -> agents_pb2.AgentRecord:
        record = convert.record_from_proto(request.record)
        return convert.record_to_proto(await need(self.ctx.directory, "directory").register(record))

    async def GetAgent(
        self, request: agents_pb2.GetAgentRequest, context: Context
    ) -> agents_pb2.AgentRecord:
        return convert.record_to_proto(
            await need(self.ctx.directory, "directory").resolve(request.agent)
        )

    async def ListAgents(
        self, request: agents_pb2.ListAgentsRequest, context: Context
    ) -> agents_pb2.ListAgentsResponse:
        records = await need(self.ctx.directory, "directory").search(
            name=request.name or None,
            capability=request.capability or None,
            local_only=not request.all,
            include_deleted=request.include_deleted,
        )
        return agents_pb2.ListAgentsResponse(agents=[convert.record_to_proto(r) for r in records])


class EntryProtos:
    """Thread entries converted to protobuf once, for the sender's reply and every stream.

    Keyed by the entry object (held, so its id is not reused), newest ``size`` kept.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._protos: OrderedDict[int, tuple[ThreadEntry, coordination_pb2.ThreadEntry]] = (
            OrderedDict()
        )

    def get(
        self, entry: ThreadEntry, message: message_pb2.Message | None = None
    ) -> coordination_pb2.ThreadEntry:
        """The entry's protobuf; ``message`` (its message as received) spares re-encoding it."""
        hit = self._protos.get(id(entry))
        if hit is not None and hit[0] is entry:
            return hit[1]
        proto = convert.entry_to_proto(entry, message)
        self._protos[id(entry)] = (entry, proto)
        if len(self._protos) > self.size:
            self._protos.popitem(last=False)
        return proto


def _reusable(message: message_pb2.Message) -> bool:
    # Data parts are re-encoded canonically on the way out; other parts round-trip as is.
    return all(part.WhichOneof("content") != "data" for part in message.parts)


class CoordinationServicer(coordination_pb2_grpc.CoordinationServiceServicer):
    """Threads, messages and waiting."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.entries = EntryProtos()

    async def Submit(
        self, request: coordination_pb2.SubmitRequest, context: Context
    ) -> coordination_pb2.SubmitResponse:
        return await self._submit(request)

    async def SubmitStream(
        self, requests: AsyncIterator[coordination_pb2.SubmitRequest], context: Context
    ) -> AsyncIterator[coordination_pb2.SubmitStreamResponse]:
        """Apply each message of the stream in order; answer each, in order, once durable.

        A message the node refuses is answered with its error (the status code,
        reason and detail ``Submit`` would have ended with) and the stream goes
        on. Cancellation (the client goes, or the call's deadline passes) stops
        the message being applied as ``Submit``'s cancellation would, and the
        ones not yet read are never applied.
        """
        async for request in requests:
            message_id = request.message.id
            try:
                result = await self._submit(request)
            except Exception as exc:
                yield coordination_pb2.SubmitStreamResponse(
                    message_id=message_id, error=self._refusal(exc)
                )
            else:
                yield coordination_pb2.SubmitStreamResponse(message_id=message_id, result=result)

    def _refusal(self, exc: Exception) -> coordination_pb2.SubmitError:
        """What ``Submit``'s status would have said about ``exc``, counted as it would be."""
        error = as_coral_error(exc)
        if error is None:
            log.exception("unhandled error in SubmitStream")
            return coordination_pb2.SubmitError(
                code=grpc.StatusCode.INTERNAL.value[0], reason="internal", detail="internal error"
            )
        if error.category == "unavailable":
            log.warning("SubmitStream: %s", error.detail)
        self.ctx.metrics.rejections.labels("grpc", error.reason).inc()
        return coordination_pb2.SubmitError(
            code=grpc_status(error).value[0], reason=error.reason, detail=error.detail
        )

    async def _submit(
        self, request: coordination_pb2.SubmitRequest
    ) -> coordination_pb2.SubmitResponse:
        if not request.HasField("message"):
            raise InvalidMessage("no message given")
        message = message_from_proto(request.message, self.ctx.verifier.limits)
        result = await need(self.ctx.gateway, "gateway").submit(message)
        if isinstance(result, Thread):
            return coordination_pb2.SubmitResponse(thread=convert.thread_to_proto(result))
        if isinstance(result, dict):  # queued for the node that owns the thread
            return coordination_pb2.SubmitResponse(forwarded_to=result["owner"])
        received = request.message if _reusable(request.message) else None
        return coordination_pb2.SubmitResponse(entry=self.entries.get(result, received))

    async def GetThread(
        self, request: coordination_pb2.GetThreadRequest, context: Context
    ) -> coordination_pb2.Thread:
        agent = current_caller().did
        thread = await need(self.ctx.coordination, "coordination").get_thread(
            agent, request.thread_id
        )
        return convert.thread_to_proto(thread)

    async def ListThreads(
        self, request: coordination_pb2.ListThreadsRequest, context: Context
    ) -> coordination_pb2.ListThreadsResponse:
        agent = current_caller().did
        session = request.session_id if request.HasField("session_id") else None
        threads = await need(self.ctx.coordination, "coordination").list_threads(agent, session)
        return coordination_pb2.ListThreadsResponse(
            threads=[convert.thread_to_proto(t) for t in threads]
        )

    async def History(
        self, request: coordination_pb2.HistoryRequest, context: Context
    ) -> coordination_pb2.HistoryResponse:
        agent = current_caller().did
        page = await need(self.ctx.coordination, "coordination").history(
            agent, request.thread_id, request.after_seq, request.limit or 100
        )
        return convert.history_to_proto(page)

    async def Wait(
        self, request: coordination_pb2.WaitRequest, context: Context
    ) -> coordination_pb2.WaitResponse:
        agent = current_caller().did
        self.ctx.metrics.waits_open.inc()
        try:
            result = await need(self.ctx.coordination, "coordination").wait(
                agent,
                cast(WaitKind, request.kind or "message"),
                from_agent=request.from_agent if request.HasField("from_agent") else None,
                after=request.after,
                timeout_ms=request.timeout_ms or 30_000,
                limit=request.limit or 100,
            )
        finally:
            self.ctx.metrics.waits_open.dec()
        return convert.wait_to_proto(result)

    async def Subscribe(
        self, request: coordination_pb2.WaitRequest, context: Context
    ) -> AsyncIterator[coordination_pb2.InboxEntry]:
        """Stream matching inbox entries past the cursor until the client cancels."""
        engine = need(self.ctx.coordination, "coordination")
        agent = current_caller().did
        after = request.after
        kind = cast(WaitKind, request.kind or "message")
        from_agent = request.from_agent if request.HasField("from_agent") else None
        self.ctx.metrics.waits_open.inc()
        try:
            batches = engine.subscribe(
                agent, kind, from_agent=from_agent, after=after, limit=request.limit or 100
            )
            # aclosing: the wait slot is released when the client goes, not at GC.
            async with aclosing(batches):
                async for result in batches:
                    for item in result.entries:
                        yield convert.inbox_to_proto(item, self.entries.get(item.entry))
        finally:
            self.ctx.metrics.waits_open.dec()


def install(server: grpc.aio.Server, ctx: NodeContext) -> list[str]:
    agents_pb2_grpc.add_AgentServiceServicer_to_server(AgentServicer(ctx), server)
    coordination_pb2_grpc.add_CoordinationServiceServicer_to_server(
        CoordinationServicer(ctx), server
    )
    return [
        agents_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
        coordination_pb2.DESCRIPTOR.services_by_name["CoordinationService"].full_name,
    ]
