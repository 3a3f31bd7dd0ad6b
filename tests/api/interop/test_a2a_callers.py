"""Configured A2A callers: bearer authentication on every binding, per-caller task
scope, and the extended card (real a2a-sdk client, real node)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import httpx
import pytest
from a2a.client import A2ACardResolver
from a2a.types import a2a_pb2, a2a_pb2_grpc
from a2a.utils.errors import TaskNotFoundError

from tests.api.interop.conftest import Echo, run_agent
from tests.api.interop.test_a2a_inbound import client_for, collect, user_message
from tests.support.nodeproc import NodeProcess

CONFIG = """
[a2a]
extended_card_description = "Also answers in French."
[a2a.callers]
alice = "alice-token"
bob = "bob-token"
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    data = tmp_path_factory.mktemp("a2a-callers") / "node"
    data.mkdir(parents=True)
    (data / "config.toml").write_text(CONFIG)
    proc = NodeProcess(data).start()
    yield proc
    proc.kill()


@pytest.fixture
async def echo(node: NodeProcess) -> AsyncIterator[Echo]:
    agent = Echo(node.http, key_file=node.data_dir.parent / "echo.key")
    task = await run_agent(agent)
    yield agent
    agent.stop()
    await task


def caller(token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {token}"})


async def test_cards_stay_public_and_declare_the_required_scheme(
    node: NodeProcess, echo: Echo
) -> None:
    async with httpx.AsyncClient(timeout=10) as anonymous:
        card = await A2ACardResolver(anonymous, f"{node.http}/a2a/echo").get_agent_card()
        denied = await anonymous.post(
            f"{node.http}/a2a/echo",
            json={"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}},
        )
        wrong = await anonymous.get(
            f"{node.http}/a2a/echo/tasks", headers={"Authorization": "Bearer nope"}
        )
    assert card.security_schemes["bearer"].http_auth_security_scheme.scheme == "Bearer"
    assert "bearer" in card.security_requirements[0].schemes
    assert card.capabilities.extended_agent_card
    assert denied.status_code == 401 and "Bearer" in denied.headers["WWW-Authenticate"]
    assert wrong.status_code == 401
    async with grpc.aio.insecure_channel(node.grpc) as channel:
        stub = a2a_pb2_grpc.A2AServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as anonymous_grpc:
            await stub.ListTasks(a2a_pb2.ListTasksRequest(tenant="echo"))
        assert anonymous_grpc.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_each_caller_sees_only_its_own_tasks(
    node: NodeProcess, echo: Echo, binding: str
) -> None:
    async with caller("alice-token") as alice_http, caller("bob-token") as bob_http:
        card = await A2ACardResolver(alice_http, f"{node.http}/a2a/echo").get_agent_card()
        alice = await client_for(card, binding, alice_http)
        bob = await client_for(card, binding, bob_http)
        task = (await collect(alice.send_message(user_message(f"secret {binding}")))).pop().task
        assert task.status.state == a2a_pb2.TaskState.TASK_STATE_COMPLETED
        assert (await alice.get_task(a2a_pb2.GetTaskRequest(id=task.id))).id == task.id
        with pytest.raises(TaskNotFoundError):
            await bob.get_task(a2a_pb2.GetTaskRequest(id=task.id))
        bobs = await bob.list_tasks(a2a_pb2.ListTasksRequest())
        assert task.id not in {t.id for t in bobs.tasks}
        await alice.close()
        await bob.close()


async def test_grpc_callers_authenticate_with_metadata_and_are_scoped(
    node: NodeProcess, echo: Echo
) -> None:
    alice = [("a2a-version", "1.0"), ("authorization", "Bearer alice-token")]
    bob = [("a2a-version", "1.0"), ("authorization", "Bearer bob-token")]
    async with grpc.aio.insecure_channel(node.grpc) as channel:
        stub = a2a_pb2_grpc.A2AServiceStub(channel)
        request = user_message("secret over gRPC")
        request.tenant = "echo"
        sent = await stub.SendMessage(request, metadata=alice)
        assert sent.task.status.state == a2a_pb2.TaskState.TASK_STATE_COMPLETED
        get = a2a_pb2.GetTaskRequest(id=sent.task.id, tenant="echo")
        assert (await stub.GetTask(get, metadata=alice)).id == sent.task.id
        with pytest.raises(grpc.aio.AioRpcError) as hidden:
            await stub.GetTask(get, metadata=bob)
        assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as forged:
            await stub.GetTask(get, metadata=[("authorization", "Bearer forged")])
        assert forged.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_extended_card_is_for_authenticated_callers(node: NodeProcess, echo: Echo) -> None:
    async with caller("alice-token") as http:
        card = await A2ACardResolver(http, f"{node.http}/a2a/echo").get_agent_card()
        client = await client_for(card, "JSONRPC", http)
        extended = await client.get_extended_agent_card(a2a_pb2.GetExtendedAgentCardRequest())
        assert extended.name == "echo" and "Also answers in French." in extended.description
        await client.close()
