"""The real a2a-sdk client against a real node: cards, three bindings, tasks, errors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.types import a2a_pb2, a2a_pb2_grpc
from a2a.utils.errors import InvalidParamsError, TaskNotCancelableError, TaskNotFoundError

from coral.coordination.model import ThreadEntry
from coral.protocol.identity import Identity
from coral_sdk import AgentManifest, CoralClient
from tests.api.interop.conftest import Echo, Silent
from tests.support.nodeproc import NodeProcess

BINDINGS = ["JSONRPC", "HTTP+JSON", "GRPC"]
COMPLETED = a2a_pb2.TaskState.TASK_STATE_COMPLETED


def user_message(text: str, **fields: str) -> a2a_pb2.SendMessageRequest:
    message = a2a_pb2.Message(
        message_id=str(uuid.uuid4()),
        role=a2a_pb2.Role.ROLE_USER,
        parts=[a2a_pb2.Part(text=text)],
        **fields,
    )
    return a2a_pb2.SendMessageRequest(message=message)


async def agent_card(node: NodeProcess, name: str, http: httpx.AsyncClient) -> a2a_pb2.AgentCard:
    return await A2ACardResolver(http, f"{node.http}/a2a/{name}").get_agent_card()


def grpc_channel(url: str) -> grpc.aio.Channel:
    """The channel for a card's ``grpc://host:port`` interface URL."""
    return grpc.aio.insecure_channel(url.removeprefix("grpc://"))


async def client_for(
    card: a2a_pb2.AgentCard, binding: str, http: httpx.AsyncClient, *, streaming: bool = False
):
    config = ClientConfig(
        streaming=streaming,
        httpx_client=http,
        supported_protocol_bindings=[binding],
        grpc_channel_factory=grpc_channel,
    )
    return await create_client(card, config)


async def collect(stream: AsyncIterator[a2a_pb2.StreamResponse]) -> list[a2a_pb2.StreamResponse]:
    return [event async for event in stream]


def final_task_id(events: list[a2a_pb2.StreamResponse]) -> str:
    last = events[-1]
    return last.task.id if last.HasField("task") else last.status_update.task_id


async def test_agent_and_router_cards_list_three_v1_interfaces(interop_node, echo: Echo):
    async with httpx.AsyncClient(timeout=10) as http:
        card = await agent_card(interop_node, "echo", http)
        router = await A2ACardResolver(http, interop_node.http).get_agent_card()
    assert card.name == "echo" and card.capabilities.streaming
    bindings = {i.protocol_binding: i for i in card.supported_interfaces}
    assert set(bindings) == set(BINDINGS)
    assert {i.protocol_version for i in card.supported_interfaces} == {"1.0"}
    # HTTP interfaces are the agent's base URL; gRPC (one service) carries the name as tenant.
    assert bindings["GRPC"].url == f"grpc://{interop_node.grpc}"
    assert bindings["GRPC"].tenant == "echo"
    assert bindings["JSONRPC"].url == bindings["HTTP+JSON"].url == f"{interop_node.http}/a2a/echo"
    assert not bindings["JSONRPC"].tenant and not bindings["HTTP+JSON"].tenant
    assert router.name == "coral-node"
    assert "echo" in [s.id for s in router.skills]
    assert "a2a-gateway" not in [s.id for s in router.skills]


@pytest.mark.parametrize("binding", BINDINGS)
async def test_send_unary_and_streaming_then_get_and_list(interop_node, echo: Echo, binding: str):
    async with httpx.AsyncClient(timeout=30) as http:
        card = await agent_card(interop_node, "echo", http)
        unary = await client_for(card, binding, http)
        events = [e async for e in unary.send_message(user_message(f"hi over {binding}"))]
        assert len(events) == 1 and events[0].task.status.state == COMPLETED
        task = events[0].task
        assert task.artifacts[0].parts[0].text == f"echo: hi over {binding}"

        streaming = await client_for(card, binding, http, streaming=True)
        stream = [e async for e in streaming.send_message(user_message("streamed"))]
        kinds = [e.WhichOneof("payload") for e in stream]
        assert kinds[0] == "task" and "artifact_update" in kinds
        assert stream[-1].status_update.status.state == COMPLETED
        artifact = next(e.artifact_update for e in stream if e.HasField("artifact_update"))
        assert artifact.artifact.parts[0].text == "echo: streamed"

        got = await unary.get_task(a2a_pb2.GetTaskRequest(id=final_task_id(stream)))
        assert got.status.state == COMPLETED and got.artifacts[0].parts[0].text == "echo: streamed"
        listed = await unary.list_tasks(a2a_pb2.ListTasksRequest())
        assert {task.id, got.id} <= {t.id for t in listed.tasks}
        await unary.close()
        await streaming.close()


@pytest.mark.parametrize("binding", ["JSONRPC", "GRPC"])
async def test_cancel_a_working_task_once(interop_node, silent: Silent, binding: str):
    async with httpx.AsyncClient(timeout=30) as http:
        card = await agent_card(interop_node, "silent", http)
        client = await client_for(card, binding, http)
        request = user_message("take your time")
        request.configuration.return_immediately = True
        events = [e async for e in client.send_message(request)]
        task_id = final_task_id(events)
        working = await client.get_task(a2a_pb2.GetTaskRequest(id=task_id))
        assert working.status.state in (
            a2a_pb2.TaskState.TASK_STATE_SUBMITTED,
            a2a_pb2.TaskState.TASK_STATE_WORKING,
        )
        canceled = await client.cancel_task(a2a_pb2.CancelTaskRequest(id=task_id))
        assert canceled.status.state == a2a_pb2.TaskState.TASK_STATE_CANCELED
        with pytest.raises(TaskNotCancelableError):
            await client.cancel_task(a2a_pb2.CancelTaskRequest(id=task_id))
        await client.close()


@pytest.mark.parametrize("binding", BINDINGS)
async def test_unknown_task_is_task_not_found(interop_node, echo: Echo, binding: str):
    async with httpx.AsyncClient(timeout=10) as http:
        client = await client_for(await agent_card(interop_node, "echo", http), binding, http)
        with pytest.raises(TaskNotFoundError):
            await client.get_task(a2a_pb2.GetTaskRequest(id="no-such-task"))
        await client.close()


async def test_router_routes_by_mention_and_refuses_unknown_agents(interop_node, echo: Echo):
    async with httpx.AsyncClient(timeout=30) as http:
        router = await A2ACardResolver(http, interop_node.http).get_agent_card()
        client = await client_for(router, "JSONRPC", http)
        events = [e async for e in client.send_message(user_message("@echo routed"))]
        assert events[0].task.artifacts[0].parts[0].text == "echo: @echo routed"
        with pytest.raises(InvalidParamsError):
            [e async for e in client.send_message(user_message("@nobody hello"))]
        with pytest.raises(InvalidParamsError):
            [e async for e in client.send_message(user_message("no agent named"))]
        await client.close()


async def test_unknown_agent_card_and_endpoint_are_404(interop_node):
    async with httpx.AsyncClient(timeout=10) as http:
        card = await http.get(f"{interop_node.http}/a2a/nobody/.well-known/agent-card.json")
        rpc = await http.post(
            f"{interop_node.http}/a2a/nobody/jsonrpc",
            headers={"A2A-Version": "1.0"},
            json={"jsonrpc": "2.0", "id": "1", "method": "GetTask", "params": {"id": "x"}},
        )
    assert card.status_code == 404 and rpc.status_code == 404
    assert rpc.json()["reason"] == "agent_not_registered"


async def test_wrong_or_missing_version_and_malformed_requests(interop_node, echo: Echo):
    url = f"{interop_node.http}/a2a/echo/jsonrpc"
    call = {"jsonrpc": "2.0", "id": "1", "method": "GetTask", "params": {"id": "x"}}
    async with httpx.AsyncClient(timeout=10) as http:
        wrong = (await http.post(url, json=call, headers={"A2A-Version": "2.0"})).json()
        missing = (await http.post(url, json=call)).json()
        garbage = await http.post(
            url, content=b'{"jsonrpc": "2.0",', headers={"A2A-Version": "1.0"}
        )
        unknown = (
            await http.post(url, json={**call, "method": "Nope"}, headers={"A2A-Version": "1.0"})
        ).json()
        rest = await http.get(
            f"{interop_node.http}/a2a/echo/tasks/x", headers={"A2A-Version": "9.9"}
        )
    assert wrong["error"]["code"] == -32009
    # No header: the spec assumes 0.3, whose methods have other names, so a 1.0 method is 1.0.
    assert missing["error"]["code"] == -32001
    assert garbage.json()["error"]["code"] == -32700
    assert unknown["error"]["code"] == -32601
    assert rest.status_code >= 400


async def test_oversized_message_is_invalid_params(interop_node, echo: Echo):
    async with httpx.AsyncClient(timeout=30) as http:
        client = await client_for(await agent_card(interop_node, "echo", http), "JSONRPC", http)
        with pytest.raises(InvalidParamsError):
            [e async for e in client.send_message(user_message("x" * 200_000))]
        huge = await http.post(
            f"{interop_node.http}/a2a/echo/jsonrpc",
            headers={"A2A-Version": "1.0"},
            content=b"x" * 2_000_000,
        )
        assert huge.status_code in (400, 413) and huge.json()["reason"] == "too_large"
        await client.close()


async def test_v03_client_methods_work_through_the_compat_layer(interop_node, echo: Echo):
    call = {
        "jsonrpc": "2.0",
        "id": "1",
        "method": "message/send",
        "params": {
            "message": {
                "kind": "message",
                "messageId": str(uuid.uuid4()),
                "role": "user",
                "parts": [{"kind": "text", "text": "old client"}],
            }
        },
    }
    async with httpx.AsyncClient(timeout=30) as http:
        reply = (await http.post(f"{interop_node.http}/a2a/echo/jsonrpc", json=call)).json()
    result = reply["result"]
    assert result["status"]["state"] == "completed"
    assert result["artifacts"][0]["parts"][0]["text"] == "echo: old client"


async def test_follow_up_in_same_context_reuses_the_thread(interop_node, echo: Echo):
    async with httpx.AsyncClient(timeout=30) as http:
        client = await client_for(await agent_card(interop_node, "echo", http), "GRPC", http)
        first = (await collect(client.send_message(user_message("one"))))[0].task
        second = [
            e async for e in client.send_message(user_message("two", context_id=first.context_id))
        ]
        assert second[0].task.context_id == first.context_id
        assert second[0].task.artifacts[0].parts[0].text == "echo: two"
        await client.close()
    await asyncio.sleep(0)


async def _next_mention(agent: CoralClient, after: int) -> tuple[ThreadEntry, int]:
    got = await agent.wait("mention", after=after, timeout_ms=10_000)
    return got.entries[0].entry, got.cursor


async def test_task_state_follows_the_agent_and_the_thread(interop_node):
    """input-required and failed reply kinds, and a closed thread completing the task."""
    clerk = CoralClient(interop_node.http, Identity.generate())
    await clerk.register(AgentManifest(name="clerk", description="asks back"))
    async with httpx.AsyncClient(timeout=30) as http:
        client = await client_for(await agent_card(interop_node, "clerk", http), "JSONRPC", http)
        cursor = 0

        async def ask(text: str, context_id: str = "") -> a2a_pb2.Task:
            events = await collect(client.send_message(user_message(text, context_id=context_id)))
            return events[0].task

        async def answer(kind: str, text: str) -> None:
            nonlocal cursor
            entry, cursor = await _next_mention(clerk, cursor)
            await clerk.send(entry.thread_id, text, kind=kind, mentions=[entry.message.sender])

        pending = asyncio.create_task(ask("book a room"))
        await answer("a2a.input_required", "which day?")
        first = await pending
        assert first.status.state == a2a_pb2.TaskState.TASK_STATE_INPUT_REQUIRED
        assert first.status.message.parts[0].text == "which day?"

        pending = asyncio.create_task(ask("friday", first.context_id))
        await answer("message", "booked for friday")
        second = await pending
        assert second.status.state == COMPLETED
        assert second.artifacts[0].parts[0].text == "booked for friday"

        pending = asyncio.create_task(ask("and a car"))
        await answer("a2a.failed", "no cars left")
        assert (await pending).status.state == a2a_pb2.TaskState.TASK_STATE_FAILED

        pending = asyncio.create_task(ask("anything else?"))
        entry, cursor = await _next_mention(clerk, cursor)
        await clerk.close_thread(entry.thread_id, "nothing more to do")
        closed = await pending
        assert closed.status.state == COMPLETED
        assert closed.artifacts[0].parts[0].text == "nothing more to do"
        await client.close()
    await clerk.close()


async def test_subscriber_sees_the_cancellation(interop_node, silent: Silent):
    async with httpx.AsyncClient(timeout=30) as http:
        card = await agent_card(interop_node, "silent", http)
        client = await client_for(card, "HTTP+JSON", http, streaming=True)
        request = user_message("wait for it")
        request.configuration.return_immediately = True
        unary = await client_for(card, "HTTP+JSON", http)
        task_id = final_task_id([e async for e in unary.send_message(request)])
        seen: list[a2a_pb2.StreamResponse] = []
        subscribed = asyncio.Event()

        async def subscribe() -> None:
            async for event in client.subscribe(a2a_pb2.SubscribeToTaskRequest(id=task_id)):
                seen.append(event)
                subscribed.set()  # the stream opens with the task as it stands

        watcher = asyncio.create_task(subscribe())
        await asyncio.wait_for(subscribed.wait(), 30)  # subscribed before the cancel
        await unary.cancel_task(a2a_pb2.CancelTaskRequest(id=task_id))
        await asyncio.wait_for(watcher, 10)
        states = [e.status_update.status.state for e in seen if e.HasField("status_update")]
        assert a2a_pb2.TaskState.TASK_STATE_CANCELED in states
        await client.close()
        await unary.close()


async def test_grpc_refuses_wrong_versions_and_unknown_tenants(interop_node, echo: Echo):
    async with grpc.aio.insecure_channel(interop_node.grpc) as channel:
        stub = a2a_pb2_grpc.A2AServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await stub.GetTask(
                a2a_pb2.GetTaskRequest(id="x", tenant="echo"), metadata=[("a2a-version", "2.0")]
            )
        assert wrong.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "version" in (wrong.value.details() or "").lower()
        with pytest.raises(grpc.aio.AioRpcError) as absent:  # lf.a2a.v1 is the 1.0 service
            await stub.GetTask(a2a_pb2.GetTaskRequest(id="x", tenant="echo"))
        assert absent.value.code() == grpc.StatusCode.NOT_FOUND
        unknown = user_message("hello")
        unknown.tenant = "nobody"
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.SendMessage(unknown, metadata=[("a2a-version", "1.0")])
        assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "nobody" in (missing.value.details() or "")
