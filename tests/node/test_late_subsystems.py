"""Every subsystem but coordination is set up after the servers listen (late subsystems).

Requests that reach them, and submits through the gateway, before that wait
and then get the answers the set-up node gives: never a 404, an
UNIMPLEMENTED, or a message routed without the late parts' checks.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from coral.api.grpc.federation_client import GrpcPeerTransport
from coral.config import Config
from coral.federation.peer_record import PeerAddresses, issue_peer_record
from coral.node import Node
from coral.node.subsystems import Subsystem
from coral.protocol.codec import message_to_json
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms
from tests.hardening.support import agent_record, coral_auth, record_body, signed_message

LATE = ("ledger", "federation", "teams", "interop", "sessions", "dashboard", "launcher")


def subsystem(node: Node, name: str) -> Subsystem:
    return next(s for s in node.subsystems if s.name == name)


def park_setup(target: Subsystem) -> asyncio.Event:
    """Hold ``target``'s setup until the returned event is set."""
    release = asyncio.Event()
    real_setup = target.setup

    async def parked(node: Any, ctx: Any) -> None:
        await release.wait()
        await real_setup(node, ctx)

    target.setup = parked  # type: ignore[method-assign]
    return release


async def listening(node: Node, http: aiohttp.ClientSession) -> str:
    """The node's HTTP address once it answers /healthz (its start still running)."""
    while node.ctx is None or not node.ctx.http_address:
        await asyncio.sleep(0.01)
    base = node.ctx.http_address
    async with http.get(base + "/healthz") as resp:
        assert resp.status == 200
    return base


async def parked_requests(node: Node, count: int) -> None:
    """Wait until the HTTP server has taken ``count`` requests in all."""
    assert node._http is not None and node._http.server is not None
    while node._http.server.requests_count < count:
        await asyncio.sleep(0.01)


async def test_requests_sent_while_the_late_subsystems_load_get_their_real_answers(
    tmp_path: Path,
) -> None:
    node = Node(Config(data_dir=tmp_path / "node", grpc_port=0, http_port=0))
    assert [s.name for s in node.subsystems if s.late] == list(LATE)
    # The ledger is set up first of the late ones: parking it holds them all.
    release = park_setup(subsystem(node, "ledger"))
    alice = Identity.generate()
    peer = Identity.generate()
    starting = asyncio.create_task(node.start())
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            base = await listening(node, http)
            assert node.ctx is not None and node.ctx.teams is None  # not set up yet
            # Registering an agent needs none of the late parts: answered now.
            record = agent_record(alice, node.ctx.identity.did, "alice")
            async with http.post(base + "/v1/agents", data=record_body(record)) as resp:
                assert resp.status < 300, await resp.text()
            create = signed_message(
                alice,
                kind="thread.create",
                data={"name": "early", "participants": [alice.did], "strategy": "broadcast"},
            )

            admin = f"Bearer {node.ctx.admin_token}"

            async def call(
                method: str, path: str, body: bytes | None = None, auth: str = admin
            ) -> tuple[int, Any]:
                headers = {"Authorization": auth, "Content-Type": "application/json"}
                async with http.request(method, base + path, data=body, headers=headers) as resp:
                    return resp.status, await resp.json(content_type=None)

            as_alice = coral_auth(alice, "GET", "/v1/teams")
            teams = asyncio.create_task(call("GET", "/v1/teams", auth=as_alice))
            peers = asyncio.create_task(call("GET", "/v1/peers"))
            registry = asyncio.create_task(call("GET", "/api/v1/registry"))
            submit = asyncio.create_task(call("POST", "/v1/messages", message_to_json(create)))
            account = f"/v1/ledger/accounts/{alice.did}"
            balance = asyncio.create_task(
                call("GET", account, auth=coral_auth(alice, "GET", account))
            )
            snapshot = asyncio.create_task(call("GET", "/v1/dashboard/snapshot"))
            hello = asyncio.create_task(say_hello(peer, node.ctx.grpc_address))
            await parked_requests(node, 8)  # healthz, the registration and these six
            assert not starting.done()
            release.set()
            await asyncio.wait_for(starting, 60)

            status, body = await teams
            assert status == 200 and body["teams"] == []
            status, body = await peers
            assert status == 200 and isinstance(body["peers"], list)
            status, body = await registry
            assert status == 200, body
            status, body = await submit
            assert status < 300, body
            assert body["thread"]["name"] == "early"
            status, body = await balance
            assert status == 200 and body["id"] == alice.did and body["balance"] == 0
            status, body = await snapshot
            assert status == 200 and body["teams"] is not None and body["peers"] is not None
            answer = json.loads(await asyncio.wait_for(hello, 60))
            assert answer["node"] == node.ctx.identity.did
            status, body = await call("GET", "/v1/peers")
            assert peer.did in {p["node_id"] for p in body["peers"]}
            assert_routes_under_late_paths(node)
            # A path below a late prefix that nothing serves is still a 404.
            assert (await call("GET", "/v1/teams/x/no-such-route"))[0] == 404
    finally:
        release.set()
        if not starting.done():
            await asyncio.gather(starting, return_exceptions=True)
        await node.stop()


def assert_routes_under_late_paths(node: Node) -> None:
    """Every route a late subsystem installed is reachable through its ``late_paths``."""
    for late, routes in node._late.items():
        assert routes.loaded_app is not None, late.name
        for route in routes.loaded_app.router.routes():
            path = route.resource.canonical if route.resource is not None else ""
            assert any(
                path == prefix or path.startswith(prefix + "/") for prefix in late.late_paths
            ), (late.name, path)


async def say_hello(peer: Identity, address: str) -> str:
    """A federation Hello from another node, through the real peer transport."""
    record = issue_peer_record(peer, PeerAddresses(grpc="127.0.0.1:1"), now_ms())
    transport = GrpcPeerTransport(peer)
    try:
        return await transport.hello(address, json.dumps(record.model_dump(mode="json")))
    finally:
        await transport.close()


async def test_a_late_subsystem_that_fails_to_set_up_fails_the_start_and_its_waiters(
    tmp_path: Path,
) -> None:
    node = Node(Config(data_dir=tmp_path / "node", grpc_port=0, http_port=0))
    teams = subsystem(node, "teams")
    release = park_setup(teams)
    real = teams.setup

    async def broken(n: Any, ctx: Any) -> None:
        await real(n, ctx)  # parked until released
        raise OSError("disk on fire")

    teams.setup = broken  # type: ignore[method-assign]
    starting = asyncio.create_task(node.start())
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        base = await listening(node, http)

        async def teams_list() -> int:
            async with http.get(base + "/v1/teams") as resp:
                return resp.status

        waiting = asyncio.create_task(teams_list())
        await parked_requests(node, 2)
        release.set()
        with pytest.raises(OSError, match="disk on fire"):
            await starting
        assert await waiting == 503  # refused before the server closed, not left hanging
