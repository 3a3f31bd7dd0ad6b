"""The one gRPC server interceptor: caller rules, error mapping, metrics and cancellation.

A real grpc.aio server on 127.0.0.1 carries coral.v1 method paths whose
handlers the test controls, so each behaviour is observed from a real client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from coral.api.context import NodeContext
from coral.api.grpc import auth
from coral.api.grpc.auth import Caller, current_caller
from coral.api.grpc.interceptors import CANCELLED, CoralServerInterceptor
from coral.api.grpc.server import build_grpc_server
from coral.config import Config
from coral.metrics import NodeMetrics
from coral.protocol.errors import NotFound
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms
from coral.protocol.request_auth import sign_request
from coral.protocol.verify import MessageVerifier
from coral.v1 import (
    agents_pb2,
    coordination_pb2,
    federation_pb2,
    ledger_pb2,
    node_pb2,
)

COORDINATION = "coral.v1.CoordinationService"
WAIT = f"/{COORDINATION}/Wait"
SUBSCRIBE = f"/{COORDINATION}/Subscribe"
SUBMIT = f"/{COORDINATION}/Submit"


def make_ctx(tmp_path: Path) -> NodeContext:
    config = Config(data_dir=tmp_path)
    return NodeContext(
        config=config,
        identity=Identity.generate(),
        metrics=NodeMetrics(),
        verifier=MessageVerifier(config.limits.to_limits()),
        admin_token="admin-secret",
        started_at=0,
    )


def count(ctx: NodeContext, name: str, **labels: str) -> float:
    return ctx.metrics.registry.get_sample_value(name, labels) or 0.0


class Served:
    """A server with the interceptor and test handlers at coral.v1 paths."""

    def __init__(self, ctx: NodeContext, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.server = grpc.aio.server(interceptors=[CoralServerInterceptor(ctx)])
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(COORDINATION, handlers),)
        )
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")

    async def __aenter__(self) -> Served:
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.close()
        await self.server.stop(0)

    def wait(self) -> Any:
        return self.channel.unary_unary(
            WAIT,
            request_serializer=coordination_pb2.WaitRequest.SerializeToString,
            response_deserializer=coordination_pb2.WaitResponse.FromString,
        )

    def subscribe(self) -> Any:
        return self.channel.unary_stream(
            SUBSCRIBE,
            request_serializer=coordination_pb2.WaitRequest.SerializeToString,
            response_deserializer=coordination_pb2.InboxEntry.FromString,
        )


def unary(fn: Callable[..., Any]) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        fn,
        request_deserializer=coordination_pb2.WaitRequest.FromString,
        response_serializer=coordination_pb2.WaitResponse.SerializeToString,
    )


def streaming(fn: Callable[..., Any]) -> grpc.RpcMethodHandler:
    return grpc.unary_stream_rpc_method_handler(
        fn,
        request_deserializer=coordination_pb2.WaitRequest.FromString,
        response_serializer=coordination_pb2.InboxEntry.SerializeToString,
    )


def signed(identity: Identity, method: str, request: Any) -> tuple[tuple[str, str], ...]:
    value = sign_request(identity, "RPC", method, request.SerializeToString(), now_ms())
    return ((auth.AGENT_AUTH, value),)


def test_every_coral_v1_method_has_a_caller_rule() -> None:
    services = [
        service.full_name
        for module in (node_pb2, agents_pb2, coordination_pb2, ledger_pb2, federation_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
    ]
    assert auth.unruled_methods(services) == []


async def test_a_server_with_an_unruled_coral_method_is_not_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = dict(auth.METHOD_RULES)
    del rules["/coral.v1.NodeService/VerifyMessage"]
    monkeypatch.setattr(auth, "METHOD_RULES", rules)
    with pytest.raises(ValueError, match="VerifyMessage"):
        build_grpc_server(make_ctx(tmp_path))


async def test_a_signed_call_reaches_its_handler_with_the_verified_caller(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    seen: list[Caller] = []

    async def handle(request: Any, context: Any) -> coordination_pb2.WaitResponse:
        seen.append(current_caller())
        return coordination_pb2.WaitResponse()

    agent = Identity.generate()
    request = coordination_pb2.WaitRequest(kind="message", after=3)
    async with Served(ctx, {"Wait": unary(handle)}) as served:
        await served.wait()(request, metadata=signed(agent, WAIT, request), timeout=30)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await served.wait()(request, timeout=30)
    assert seen == [Caller(did=agent.did)]
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    reason = dict(refused.value.trailing_metadata() or ())["coral-reason"]
    assert count(ctx, "coral_rejections_total", api="grpc", reason=reason) == 1
    assert count(ctx, "coral_requests_total", api="grpc", method="Wait", status="OK") == 1
    assert (
        count(ctx, "coral_requests_total", api="grpc", method="Wait", status="UNAUTHENTICATED") == 1
    )


async def test_a_signature_for_another_method_is_refused(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)

    async def handle(request: Any, context: Any) -> coordination_pb2.WaitResponse:
        raise AssertionError("the handler ran for an unauthenticated call")

    request = coordination_pb2.WaitRequest()
    metadata = signed(Identity.generate(), SUBSCRIBE, request)
    async with Served(ctx, {"Wait": unary(handle)}) as served:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await served.wait()(request, metadata=metadata, timeout=30)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_typed_errors_and_server_bugs_map_to_their_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = make_ctx(tmp_path)
    failures: list[Exception] = [NotFound("no such thread", reason="thread_not_found"), KeyError()]

    async def handle(request: Any, context: Any) -> coordination_pb2.WaitResponse:
        raise failures.pop(0)

    agent = Identity.generate()
    request = coordination_pb2.WaitRequest()
    codes = []
    async with Served(ctx, {"Wait": unary(handle)}) as served:
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await served.wait()(request, metadata=signed(agent, WAIT, request), timeout=30)
            codes.append((info.value.code(), info.value.details()))
    assert codes == [
        (grpc.StatusCode.NOT_FOUND, "thread_not_found: no such thread"),
        (grpc.StatusCode.INTERNAL, "internal error"),
    ]
    assert count(ctx, "coral_rejections_total", api="grpc", reason="thread_not_found") == 1
    assert count(ctx, "coral_requests_total", api="grpc", method="Wait", status="NOT_FOUND") == 1
    assert count(ctx, "coral_requests_total", api="grpc", method="Wait", status="INTERNAL") == 1
    assert [r.message for r in caplog.records if r.levelno >= logging.ERROR] == [
        f"unhandled error in {WAIT}"
    ]


async def test_a_cancelled_unary_call_propagates_and_is_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = make_ctx(tmp_path)
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def handle(request: Any, context: Any) -> coordination_pb2.WaitResponse:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    agent = Identity.generate()
    request = coordination_pb2.WaitRequest()
    async with Served(ctx, {"Wait": unary(handle)}) as served:
        call = served.wait()(request, metadata=signed(agent, WAIT, request), timeout=30)
        await asyncio.wait_for(started.wait(), 30)
        call.cancel()
        await asyncio.wait_for(cancelled.wait(), 30)
        with pytest.raises(asyncio.CancelledError):
            await call
    assert count(ctx, "coral_requests_total", api="grpc", method="Wait", status="CANCELLED") == 1
    assert count(ctx, "coral_requests_total", api="grpc", method="Wait", status="OK") == 0
    assert not [s for s in ctx.metrics.rejections.collect()[0].samples if s.value]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_cancelled_stream_closes_its_handler_and_is_not_an_error(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    closed = asyncio.Event()
    seen: list[Caller] = []

    async def handle(request: Any, context: Any) -> AsyncIterator[coordination_pb2.InboxEntry]:
        seen.append(current_caller())
        try:
            yield coordination_pb2.InboxEntry(cursor=1)
            await asyncio.Event().wait()
        finally:
            closed.set()

    agent = Identity.generate()
    request = coordination_pb2.WaitRequest()
    async with Served(ctx, {"Subscribe": streaming(handle)}) as served:
        call = served.subscribe()(request, metadata=signed(agent, SUBSCRIBE, request), timeout=30)
        first = await call.read()
        call.cancel()
        await asyncio.wait_for(closed.wait(), 30)
    assert (first.cursor, seen) == (1, [Caller(did=agent.did)])
    assert (
        count(ctx, "coral_requests_total", api="grpc", method="Subscribe", status="CANCELLED") == 1
    )
    assert not [s for s in ctx.metrics.rejections.collect()[0].samples if s.value]


async def test_a_stream_failing_after_items_ends_with_the_mapped_status(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)

    async def handle(request: Any, context: Any) -> AsyncIterator[coordination_pb2.InboxEntry]:
        yield coordination_pb2.InboxEntry(cursor=1)
        raise NotFound("the thread went away", reason="thread_not_found")

    agent = Identity.generate()
    request = coordination_pb2.WaitRequest()
    received = []
    async with Served(ctx, {"Subscribe": streaming(handle)}) as served:
        call = served.subscribe()(request, metadata=signed(agent, SUBSCRIBE, request), timeout=30)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for entry in call:
                received.append(entry.cursor)
    assert received == [1]
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert (
        count(ctx, "coral_requests_total", api="grpc", method="Subscribe", status="NOT_FOUND") == 1
    )


SUBMIT_STREAM = f"/{COORDINATION}/SubmitStream"


def bidi(fn: Callable[..., Any]) -> grpc.RpcMethodHandler:
    return grpc.stream_stream_rpc_method_handler(
        fn,
        request_deserializer=coordination_pb2.SubmitRequest.FromString,
        response_serializer=coordination_pb2.SubmitStreamResponse.SerializeToString,
    )


def submit_stream(served: Served) -> Any:
    return served.channel.stream_stream(
        SUBMIT_STREAM,
        request_serializer=lambda raw: raw,
        response_deserializer=coordination_pb2.SubmitStreamResponse.FromString,
    )


async def test_a_request_stream_gets_decoded_requests_and_is_counted_once(
    tmp_path: Path,
) -> None:
    ctx = make_ctx(tmp_path)
    closed = asyncio.Event()

    async def handle(
        requests: AsyncIterator[coordination_pb2.SubmitRequest], context: Any
    ) -> AsyncIterator[coordination_pb2.SubmitStreamResponse]:
        try:
            async for request in requests:
                yield coordination_pb2.SubmitStreamResponse(message_id=request.message.id)
        finally:
            closed.set()

    frames = [
        coordination_pb2.SubmitRequest(message={"id": f"m{i}"}).SerializeToString()
        for i in range(3)
    ]
    async with Served(ctx, {"SubmitStream": bidi(handle)}) as served:
        call = submit_stream(served)(timeout=30)
        answers = []
        for frame in frames:
            await call.write(frame)
            answers.append((await call.read()).message_id)
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK
        await asyncio.wait_for(closed.wait(), 30)
    assert answers == ["m0", "m1", "m2"]
    ok = count(ctx, "coral_requests_total", api="grpc", method="SubmitStream", status="OK")
    assert ok == 1


async def test_an_undecodable_frame_ends_a_request_stream_and_a_cancel_is_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = make_ctx(tmp_path)
    closed = asyncio.Event()

    async def handle(
        requests: AsyncIterator[coordination_pb2.SubmitRequest], context: Any
    ) -> AsyncIterator[coordination_pb2.SubmitStreamResponse]:
        try:
            async for request in requests:
                yield coordination_pb2.SubmitStreamResponse(message_id=request.message.id)
        finally:
            closed.set()

    good = coordination_pb2.SubmitRequest(message={"id": "m0"}).SerializeToString()
    async with Served(ctx, {"SubmitStream": bidi(handle)}) as served:
        call = submit_stream(served)(timeout=30)
        await call.write(good)
        assert (await call.read()).message_id == "m0"
        await call.write(b"\xff\xff\xff not a protobuf")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        await asyncio.wait_for(closed.wait(), 30)

        closed.clear()
        cancelled = submit_stream(served)(timeout=30)
        await cancelled.write(good)
        assert (await cancelled.read()).message_id == "m0"
        cancelled.cancel()
        await asyncio.wait_for(closed.wait(), 30)
    labels = {"api": "grpc", "method": "SubmitStream"}
    assert count(ctx, "coral_requests_total", **labels, status="INVALID_ARGUMENT") == 1
    # A cancel between two requests reads, on the server, as the end of the requests.
    ended = [count(ctx, "coral_requests_total", **labels, status=s) for s in ("OK", CANCELLED)]
    assert sum(ended) == 1
    assert count(ctx, "coral_rejections_total", api="grpc", reason="malformed_protobuf") == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
