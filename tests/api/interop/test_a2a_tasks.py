"""A2A tasks with the real a2a-sdk client against a real node: long-running work,
follow-ups, per-agent scoping, push notifications, version and filter rules,
signed cards, and tasks that survive a restart."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import httpx
import pytest
from a2a.client import A2ACardResolver
from a2a.compat.v0_3 import a2a_v0_3_pb2, a2a_v0_3_pb2_grpc
from a2a.types import a2a_pb2, a2a_pb2_grpc
from a2a.utils.errors import InvalidParamsError, TaskNotFoundError
from aiohttp import web

from coral.api.a2a.outbound import CardSignatureInvalid, verify_card
from coral_sdk import Agent, AgentManifest, Incoming, TaskUpdate, Updates
from tests.api.interop.conftest import Echo, admin_post_async, run_agent
from tests.api.interop.test_a2a_inbound import (
    BINDINGS,
    agent_card,
    client_for,
    collect,
    final_task_id,
    user_message,
)
from tests.support.nodeproc import NodeProcess

S = a2a_pb2.TaskState
CONFIG = """
[a2a]
push_allow = ["127.0.0.1"]
push_attempts = 3
"""


class Worker(Agent):
    """Accepts each task for background work and finishes when the test opens its gate."""

    manifest = AgentManifest(name="worker", description="works in the background")
    concurrency = 32

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gates: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.threads: list[str] = []

    async def on_mention(self, message: Incoming) -> Updates:
        self.threads.append(message.thread_id)
        text = message.text
        if text.endswith("?"):
            yield TaskUpdate.input_required(f"more about {text}")
            return
        yield TaskUpdate.accepted("on it")
        yield TaskUpdate.artifact(f"half of {text}")
        await self.gates[text].wait()
        yield TaskUpdate.complete(f"done: {text}")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    data = tmp_path_factory.mktemp("a2a-tasks") / "node"
    data.mkdir(parents=True)
    (data / "config.toml").write_text(CONFIG)
    proc = NodeProcess(data).start()
    yield proc
    proc.kill()


@pytest.fixture
async def worker(node: NodeProcess) -> AsyncIterator[Worker]:
    agent = Worker(node.http, key_file=node.data_dir.parent / "worker.key")
    task = await run_agent(agent)
    yield agent
    for gate in agent.gates.values():
        gate.set()
    agent.stop()
    await task


@pytest.fixture
async def echo(node: NodeProcess) -> AsyncIterator[Echo]:
    agent = Echo(node.http, key_file=node.data_dir.parent / "echo.key")
    task = await run_agent(agent)
    yield agent
    agent.stop()
    await task


async def until(state: int, client: Any, task_id: str) -> a2a_pb2.Task:
    """Poll GetTask until the task is in ``state`` (generous bound, not a timing assert)."""
    for _ in range(600):
        task = await client.get_task(a2a_pb2.GetTaskRequest(id=task_id))
        if task.status.state == state:
            return task
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} stayed {S.Name(task.status.state)}")


def texts(task: a2a_pb2.Task) -> list[str]:
    return [p.text for a in task.artifacts for p in a.parts if p.text]


@pytest.mark.parametrize("binding", BINDINGS)
async def test_accepted_task_returns_working_and_completes_after_the_call(
    node: NodeProcess, worker: Worker, binding: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        client = await client_for(await agent_card(node, "worker", http), binding, http)
        text = f"report over {binding}"
        first = (await collect(client.send_message(user_message(text))))[0].task
        # The blocking call returned although the task is not finished.
        assert first.status.state == S.TASK_STATE_WORKING
        assert first.status.message.parts[0].text == "on it"
        worker.gates[text].set()
        done = await until(S.TASK_STATE_COMPLETED, client, first.id)
        assert texts(done) == [f"half of {text}", f"done: {text}"]
        await client.close()
    # In Coral terms the updates are messages of the agent in the task's thread.
    history = await worker.client.history(worker.threads[-1])
    kinds = [e.message.kind for e in history.entries if not e.system]
    assert kinds[-3:] == ["a2a.accepted", "a2a.artifact", "a2a.completed"]


@pytest.mark.parametrize("binding", BINDINGS)
async def test_streaming_shows_working_partial_artifact_and_completion(
    node: NodeProcess, worker: Worker, binding: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        card = await agent_card(node, "worker", http)
        client = await client_for(card, binding, http, streaming=True)
        text = f"stream over {binding}"
        seen: list[a2a_pb2.StreamResponse] = []
        async for event in client.send_message(user_message(text)):
            seen.append(event)
            if event.HasField("artifact_update"):
                worker.gates[text].set()  # release only once the partial result arrived
        states = [e.status_update.status.state for e in seen if e.HasField("status_update")]
        artifacts = [
            e.artifact_update.artifact.parts[0].text for e in seen if e.HasField("artifact_update")
        ]
        assert S.TASK_STATE_WORKING in states and states[-1] == S.TASK_STATE_COMPLETED
        assert artifacts == [f"half of {text}", f"done: {text}"]
        await client.close()


async def test_subscriber_follows_a_task_started_with_return_immediately(
    node: NodeProcess, worker: Worker
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        card = await agent_card(node, "worker", http)
        unary = await client_for(card, "JSONRPC", http)
        streaming = await client_for(card, "JSONRPC", http, streaming=True)
        request = user_message("subscribe to me")
        request.configuration.return_immediately = True
        task_id = final_task_id(await collect(unary.send_message(request)))
        await until(S.TASK_STATE_WORKING, unary, task_id)
        seen: list[a2a_pb2.StreamResponse] = []
        async for event in streaming.subscribe(a2a_pb2.SubscribeToTaskRequest(id=task_id)):
            seen.append(event)
            if len(seen) == 1:
                worker.gates["subscribe to me"].set()
        assert seen[0].task.id == task_id
        assert seen[-1].status_update.status.state == S.TASK_STATE_COMPLETED
        await unary.close()
        await streaming.close()


@pytest.mark.parametrize("binding", ["JSONRPC", "GRPC"])
async def test_follow_ups_with_only_the_task_id_continue_its_context_and_thread(
    node: NodeProcess, worker: Worker, binding: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        client = await client_for(await agent_card(node, "worker", http), binding, http)
        first = (await collect(client.send_message(user_message("which room?"))))[0].task
        assert first.status.state == S.TASK_STATE_INPUT_REQUIRED
        second = (
            await collect(client.send_message(user_message("the big one?", task_id=first.id)))
        )[0].task
        assert second.status.state == S.TASK_STATE_INPUT_REQUIRED
        assert second.context_id == first.context_id
        worker.gates["friday"].set()
        third = (await collect(client.send_message(user_message("friday", task_id=first.id))))[
            0
        ].task
        assert third.id == first.id and third.context_id == first.context_id
        done = await until(S.TASK_STATE_COMPLETED, client, first.id)
        assert texts(done)[-1] == "done: friday"
        await client.close()
    # All three messages reached the agent in one Coral thread.
    assert len(set(worker.threads[-3:])) == 1


async def test_concurrent_tasks_in_one_context_get_their_own_replies(
    node: NodeProcess, worker: Worker
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        client = await client_for(await agent_card(node, "worker", http), "JSONRPC", http)
        one = (await collect(client.send_message(user_message("job one"))))[0].task
        two = (
            await collect(client.send_message(user_message("job two", context_id=one.context_id)))
        )[0].task
        worker.gates["job two"].set()
        worker.gates["job one"].set()
        assert texts(await until(S.TASK_STATE_COMPLETED, client, one.id))[-1] == "done: job one"
        assert texts(await until(S.TASK_STATE_COMPLETED, client, two.id))[-1] == "done: job two"
        await client.close()


async def test_tasks_belong_to_the_agent_they_were_sent_to(
    node: NodeProcess, worker: Worker, echo: Echo
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        echo_card = await agent_card(node, "echo", http)
        worker_card = await agent_card(node, "worker", http)
        for binding in BINDINGS:
            to_echo = await client_for(echo_card, binding, http)
            via_worker = await client_for(worker_card, binding, http)
            sent = (await collect(to_echo.send_message(user_message(f"mine {binding}"))))[0].task
            assert sent.status.state == S.TASK_STATE_COMPLETED
            with pytest.raises(TaskNotFoundError):
                await via_worker.get_task(a2a_pb2.GetTaskRequest(id=sent.id))
            listed = await via_worker.list_tasks(a2a_pb2.ListTasksRequest())
            assert sent.id not in {t.id for t in listed.tasks}
            mine = await to_echo.list_tasks(a2a_pb2.ListTasksRequest())
            assert sent.id in {t.id for t in mine.tasks}
            await to_echo.close()
            await via_worker.close()
        # A URL naming one agent and a tenant naming another is refused.
        refused = await http.post(
            f"{node.http}/a2a/worker",
            headers={"A2A-Version": "1.0"},
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "GetTask",
                "params": {"id": sent.id, "tenant": "echo"},
            },
        )
        assert refused.json()["error"]["code"] == -32602


async def test_version_header_filters_and_history_length(node: NodeProcess, echo: Echo) -> None:
    url = f"{node.http}/a2a/echo"
    async with httpx.AsyncClient(timeout=30) as http:
        client = await client_for(await agent_card(node, "echo", http), "JSONRPC", http)
        task = (await collect(client.send_message(user_message("history")))).pop().task
        none = await client.get_task(a2a_pb2.GetTaskRequest(id=task.id, history_length=0))
        one = await client.get_task(a2a_pb2.GetTaskRequest(id=task.id, history_length=1))
        full = await client.get_task(a2a_pb2.GetTaskRequest(id=task.id))
        assert len(none.history) == 0 and len(one.history) == 1 and len(full.history) >= 1
        await client.close()
    async with httpx.AsyncClient(timeout=30) as raw:  # no SDK default headers
        call = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": task.id}}
        wrong = (await raw.post(url, json=call, headers={"A2A-Version": "0.9"})).json()
        assert wrong["error"]["code"] == -32009
        # No header and a 1.0 method name: served as 1.0; the query parameter also works.
        assert (await raw.post(url, json=call)).json()["result"]["id"] == task.id
        query = await raw.post(url, params={"A2A-Version": "2.0"}, json=call)
        assert query.json()["error"]["code"] == -32009
        bad_status = {"jsonrpc": "2.0", "id": 2, "method": "ListTasks"}
        bad_status["params"] = {"status": "TASK_STATE_BOGUS"}
        assert (await raw.post(url, json=bad_status)).json()["error"]["code"] == -32602
        rest = await raw.get(f"{url}/tasks", params={"status": "BOGUS"})
        assert rest.status_code == 400
        good = await raw.get(f"{url}/tasks", params={"status": "TASK_STATE_COMPLETED"})
        assert task.id in {t["id"] for t in good.json()["tasks"]}
    async with grpc.aio.insecure_channel(node.grpc) as channel:
        stub = a2a_pb2_grpc.A2AServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as unknown_state:
            await stub.ListTasks(a2a_pb2.ListTasksRequest(tenant="echo", status=99))  # type: ignore[arg-type]
        assert unknown_state.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_unadvertised_03_interfaces_are_absent_and_fail_cleanly(
    node: NodeProcess, echo: Echo
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        card = (await http.get(f"{node.http}/a2a/echo/.well-known/agent-card.json")).json()
    assert "additionalInterfaces" not in card and card["url"] == f"{node.http}/a2a/echo"
    async with grpc.aio.insecure_channel(node.grpc) as channel:
        stub = a2a_v0_3_pb2_grpc.A2AServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as legacy:
            await stub.GetTask(a2a_v0_3_pb2.GetTaskRequest(name="tasks/x"))
        assert legacy.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "Traceback" not in node.output()


async def test_cards_are_signed_at_each_base_url_and_tampering_is_detected(
    node: NodeProcess, echo: Echo
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        card = await A2ACardResolver(http, f"{node.http}/a2a/echo").get_agent_card()
        router = await A2ACardResolver(http, f"{node.http}/a2a").get_agent_card()
        jwks = (await http.get(f"{node.http}/.well-known/jwks.json")).json()
    assert card.name == "echo" and router.name == "coral-node"
    assert jwks["keys"][0]["kid"].startswith(node.node_id + "#")
    card_url = f"{node.http}/a2a/echo/.well-known/agent-card.json"
    assert await verify_card(card_url, card)
    card.description = "forged"
    with pytest.raises(CardSignatureInvalid):
        await verify_card(card_url, card)


async def test_outbound_proxy_refuses_a_card_whose_signature_fails(
    node: NodeProcess, echo: Echo
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        signed = (await http.get(f"{node.http}/a2a/echo/.well-known/agent-card.json")).json()
    forged = {**signed, "description": "not what the node signed"}

    async def serve(request: web.Request) -> web.Response:
        return web.json_response(forged)

    app = web.Application()
    app.router.add_get("/.well-known/agent-card.json", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        status, body = await admin_post_async(
            node, "/v1/admin/a2a-agents", {"card_url": f"http://127.0.0.1:{port}"}
        )
        assert status == 400 and body["reason"] == "a2a_card_signature_invalid"
        status, body = await admin_post_async(
            node,
            "/v1/admin/a2a-agents",
            {"card_url": f"{node.http}/a2a/echo", "name": "echo-proxy"},
        )
        assert status == 201, body
    finally:
        await runner.cleanup()


async def test_push_notifications_crud_authenticated_delivery_retries_and_target_policy(
    node: NodeProcess, worker: Worker
) -> None:
    received: list[tuple[dict[str, str], dict[str, Any]]] = []
    attempts = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            return web.Response(status=503)  # the node must retry
        received.append((dict(request.headers), await request.json()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook_url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            client = await client_for(await agent_card(node, "worker", http), "HTTP+JSON", http)
            task = (await collect(client.send_message(user_message("push me")))).pop().task
            config = a2a_pb2.TaskPushNotificationConfig(
                task_id=task.id,
                id="hook-1",
                url=hook_url,
                token="tok-1",
                authentication=a2a_pb2.AuthenticationInfo(scheme="Bearer", credentials="s3cret"),
            )
            created = await client.create_task_push_notification_config(config)
            assert created.id == "hook-1" and created.url == hook_url
            got = await client.get_task_push_notification_config(
                a2a_pb2.GetTaskPushNotificationConfigRequest(task_id=task.id, id="hook-1")
            )
            assert got.token == "tok-1"
            listed = await client.list_task_push_notification_configs(
                a2a_pb2.ListTaskPushNotificationConfigsRequest(task_id=task.id)
            )
            assert [c.id for c in listed.configs] == ["hook-1"]
            for internal in ("http://169.254.169.254/latest", "http://10.0.0.1/x", "ftp://a/b"):
                bad = a2a_pb2.TaskPushNotificationConfig(task_id=task.id, id="bad", url=internal)
                with pytest.raises(InvalidParamsError):
                    await client.create_task_push_notification_config(bad)
            worker.gates["push me"].set()
            await until(S.TASK_STATE_COMPLETED, client, task.id)
            for _ in range(600):  # delivery runs beside the task
                if any("COMPLETED" in json.dumps(body) for _, body in received):
                    break
                await asyncio.sleep(0.05)
            headers, _ = received[-1]
            assert headers["Authorization"] == "Bearer s3cret"
            assert headers["X-A2A-Notification-Token"] == "tok-1"
            assert any("TASK_STATE_COMPLETED" in json.dumps(body) for _, body in received)
            assert attempts > len(received)  # the 503 was retried
            await client.delete_task_push_notification_config(
                a2a_pb2.DeleteTaskPushNotificationConfigRequest(task_id=task.id, id="hook-1")
            )
            after = await client.list_task_push_notification_configs(
                a2a_pb2.ListTaskPushNotificationConfigsRequest(task_id=task.id)
            )
            assert list(after.configs) == []
            await client.close()
    finally:
        await runner.cleanup()


class Crasher(Agent):
    """Accepts, then breaks: the SDK fails the task instead of leaving it working."""

    manifest = AgentManifest(name="crasher", description="breaks")

    async def on_mention(self, message: Incoming) -> Updates:
        yield TaskUpdate.accepted("trying")
        raise RuntimeError("boom")


async def test_a_handler_that_raises_fails_its_task(node: NodeProcess) -> None:
    agent = Crasher(node.http, key_file=node.data_dir.parent / "crasher.key")
    running = await run_agent(agent)
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            client = await client_for(await agent_card(node, "crasher", http), "JSONRPC", http)
            task = (await collect(client.send_message(user_message("try")))).pop().task
            failed = await until(S.TASK_STATE_FAILED, client, task.id)
            assert failed.status.message.parts[0].text == "the agent failed: RuntimeError"
            await client.close()
    finally:
        agent.stop()
        await running


async def test_tasks_survive_a_restart(node: NodeProcess, echo: Echo, worker: Worker) -> None:
    """Last in this module: it restarts the node."""
    async with httpx.AsyncClient(timeout=30) as http:
        client = await client_for(await agent_card(node, "echo", http), "JSONRPC", http)
        task = (await collect(client.send_message(user_message("remember me")))).pop().task
        await client.close()
        client = await client_for(await agent_card(node, "worker", http), "JSONRPC", http)
        running = (await collect(client.send_message(user_message("never finished")))).pop().task
        assert running.status.state == S.TASK_STATE_WORKING
        await client.close()
    echo.stop()
    worker.stop()
    node.terminate()
    node.start()
    async with httpx.AsyncClient(timeout=30) as http:
        client = await client_for(await agent_card(node, "echo", http), "GRPC", http)
        again = await client.get_task(a2a_pb2.GetTaskRequest(id=task.id))
        assert again.status.state == S.TASK_STATE_COMPLETED
        assert texts(again) == ["echo: remember me"]
        await client.close()
        # Nothing follows a task that was running in the old process: it fails, saying why.
        client = await client_for(await agent_card(node, "worker", http), "GRPC", http)
        orphan = await client.get_task(a2a_pb2.GetTaskRequest(id=running.id))
        assert orphan.status.state == S.TASK_STATE_FAILED
        assert "restarted" in orphan.status.message.parts[0].text
        await client.close()
