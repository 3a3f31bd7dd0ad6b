"""The A2A and MCP front doors of two replicas (one node key, one PostgreSQL database).

Both run ``database_stores = "all"``, so A2A tasks, held agents (and their
keys) and MCP wait cursors are shared: a task sent through one replica is read,
and followed to its end, through the other; both replicas carry A2A tasks as
the one ``a2a-gateway`` agent, and a client subscribed through the replica
that does not run a task streams it to its end; an MCP agent made on one replica connects
through the other, and its waits resume where the last one ended, whichever
replica served it. The real a2a-sdk and mcp clients talk to real processes.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver
from a2a.types import a2a_pb2
from a2a.utils.errors import TaskNotFoundError
from mcp import Client

from tests.api.interop.conftest import create_mcp_agent, run_agent
from tests.api.interop.test_a2a_inbound import agent_card, client_for, collect, user_message
from tests.api.interop.test_a2a_tasks import Worker, texts, until
from tests.support.nodeproc import NodeProcess
from tests.support.postgres import fresh_database
from tests.support.throwaway_postgres import ThrowawayPostgres

pytestmark = pytest.mark.postgres

S = a2a_pb2.TaskState
HANG_GUARD_S = 60


@pytest.fixture(scope="module")
def replicas(
    postgres_server: ThrowawayPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    """Two replicas shared by this module's tests (starting nodes is the slow part)."""
    dsn = asyncio.run(fresh_database(postgres_server, "interop_replicas"))
    env = {"CORAL_DATABASE_URL": dsn, "CORAL_DATABASE_STORES": "all"}
    root = tmp_path_factory.mktemp("interop-replicas")
    one = NodeProcess(root / "one", [], env).start()
    try:
        shutil.copytree(one.data_dir / "keys", root / "two" / "keys")  # the same node key
        two = NodeProcess(root / "two", [], env).start()
        try:
            yield one, two
        finally:
            two.kill()
    finally:
        one.kill()


def agents_named(node: NodeProcess, name: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{node.http}/v1/agents?name={name}", timeout=10) as resp:
        body = json.loads(resp.read())
    return list(body["agents"])


async def test_a2a_tasks_sent_through_one_replica_are_read_and_finished_through_the_other(
    replicas: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    one, two = replicas
    worker = Worker(two.http, key_file=tmp_path / "worker.key")
    running = await run_agent(worker)
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            via_one = await client_for(await agent_card(one, "worker", http), "JSONRPC", http)
            via_two = await client_for(await agent_card(two, "worker", http), "HTTP+JSON", http)
            router_two = await client_for(
                await A2ACardResolver(http, two.http).get_agent_card(), "JSONRPC", http
            )
            first = (await collect(via_one.send_message(user_message("from one"))))[0].task
            assert first.status.state == S.TASK_STATE_WORKING  # accepted, finishing later

            seen = await via_two.get_task(a2a_pb2.GetTaskRequest(id=first.id))
            assert seen.status.state == S.TASK_STATE_WORKING
            assert seen.status.message.parts[0].text == "on it"
            listed = await via_two.list_tasks(a2a_pb2.ListTasksRequest())
            assert [t.id for t in listed.tasks] == [first.id]
            with pytest.raises(TaskNotFoundError):  # another agent's scope, same replica
                await router_two.get_task(a2a_pb2.GetTaskRequest(id=first.id))

            # The second task goes in through replica two: the same gateway agent carries it.
            second = (await collect(via_two.send_message(user_message("from two"))))[0].task
            assert second.status.state == S.TASK_STATE_WORKING
            assert len(agents_named(one, "a2a-gateway")) == 1

            # Replica one follows its task; the agent's replies reach it through
            # replica two, and a subscriber on replica two streams its writes to the end.
            streaming_two = await client_for(
                await agent_card(two, "worker", http), "GRPC", http, streaming=True
            )
            seen: list[a2a_pb2.StreamResponse] = []
            request = a2a_pb2.SubscribeToTaskRequest(id=first.id)
            async with asyncio.timeout(HANG_GUARD_S):  # only the end of the task ends it
                async for event in streaming_two.subscribe(request):
                    seen.append(event)
                    if len(seen) == 1:
                        worker.gates["from one"].set()  # subscribed: now let the agent finish
            assert seen[0].task.status.state == S.TASK_STATE_WORKING
            assert seen[-1].task.status.state == S.TASK_STATE_COMPLETED
            assert "done: from one" in texts(seen[-1].task)
            worker.gates["from two"].set()
            done_two = await until(S.TASK_STATE_COMPLETED, via_one, second.id)
            assert "done: from two" in texts(done_two)
            await streaming_two.close()
            for client in (via_one, via_two, router_two):
                await client.close()
    finally:
        for gate in worker.gates.values():
            gate.set()
        worker.stop()
        await running


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    return dict(json.loads(result.content[0].text))


def on(node: NodeProcess, url: str, other: NodeProcess) -> str:
    """The same MCP URL, on another replica."""
    return node.http + url.removeprefix(other.http)


async def test_an_mcp_agent_made_on_one_replica_waits_through_both_without_repeats(
    replicas: tuple[NodeProcess, NodeProcess],
) -> None:
    one, two = replicas
    ann = create_mcp_agent(one, "ann")
    bo = create_mcp_agent(one, "bo")
    ann_url = ann["urls"]["streamable_http"]
    bo_on_two = on(two, bo["urls"]["streamable_http"], one)
    started = int(time.time() * 1000)
    async with (
        Client(ann_url) as a,
        Client(bo_on_two) as b_two,
        Client(bo["urls"]["streamable_http"]) as b_one,
    ):
        thread = (
            await call(a, "coral_create_thread", threadName="across", participantNames=["bo"])
        )["thread"]
        for text in ("first", "second"):
            await call(
                a, "coral_send_message", threadId=thread["id"], content=text, mentions=["bo"]
            )
        # bo's first wait goes to replica two (a secret made on one), the next to one.
        got = await call(b_two, "coral_wait_for_mention", currentUnixTime=started, maxWaitMs=10_000)
        assert got["message"]["text"] == "first"
        then = await call(
            b_one, "coral_wait_for_mention", currentUnixTime=started, maxWaitMs=10_000
        )
        assert then["message"]["text"] == "second"
        again = await call(b_two, "coral_wait_for_mention", currentUnixTime=started, maxWaitMs=200)
        assert again["status"] == "Timeout reached" and "message" not in again
