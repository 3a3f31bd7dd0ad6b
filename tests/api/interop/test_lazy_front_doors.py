"""A2A and MCP load after the node serves: early requests wait and get real answers."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from a2a.types import a2a_pb2, a2a_pb2_grpc

from tests.support.nodeproc import NodeProcess


def get(url: str, method: str = "GET") -> tuple[int, bytes]:
    try:
        request = urllib.request.Request(url, method=method)
        with urllib.request.urlopen(request, timeout=120) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_requests_sent_right_after_start_are_served_by_the_loaded_front_doors(
    tmp_path: Path,
) -> None:
    node = NodeProcess(tmp_path / "node").start(wait_for_front_doors=False)
    try:
        # Sent as soon as the node reports ready, before the front doors have loaded.
        early_grpc = asyncio.create_task(early_a2a_grpc_call(node.grpc))
        status, body = await asyncio.to_thread(get, node.http + "/.well-known/agent-card.json")
        assert status == 200 and json.loads(body)["name"] == "coral-node"
        code, details = await asyncio.wait_for(early_grpc, 120)
        # The real A2A handler answered (its own version check), not UNIMPLEMENTED.
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "version" in details.lower()
        # Paths nobody serves are still 404, core routes are untouched.
        assert (await asyncio.to_thread(get, node.http + "/no/such/route"))[0] == 404
        assert (await asyncio.to_thread(get, node.http + "/healthz"))[0] == 200
        assert (await asyncio.to_thread(get, node.http + "/healthz", "DELETE"))[0] == 405
    finally:
        node.terminate()


async def early_a2a_grpc_call(address: str) -> tuple[grpc.StatusCode, str]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = a2a_pb2_grpc.A2AServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetTask(
                a2a_pb2.GetTaskRequest(id="x", tenant="echo"),
                metadata=[("a2a-version", "2.0")],
                timeout=120,
            )
        return refused.value.code(), refused.value.details() or ""
