"""Three real nodes on 127.0.0.1: discovery, directory, cross-node threads, crashes."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import pytest

from coral.protocol.identity import Identity
from coral_sdk import AgentManifest, CoralClient
from coral_sdk.types import Forwarded

GOSSIP = ["--log-level", "warning"]


def start_network(node_factory):
    a = node_factory("a", GOSSIP, CORAL_GOSSIP_INTERVAL_S="0.3")
    b = node_factory("b", [*GOSSIP, "--bootstrap", a.grpc], CORAL_GOSSIP_INTERVAL_S="0.3")
    c = node_factory("c", [*GOSSIP, "--bootstrap", a.grpc], CORAL_GOSSIP_INTERVAL_S="0.3")
    return a, b, c


async def agent(node, name: str, identity: Identity | None = None) -> CoralClient:
    client = CoralClient(node.http, identity or Identity.generate())
    await client.register(AgentManifest(name=name, capabilities=("chat",)))
    return client


async def eventually(check, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} not reached in {timeout}s (last: {last!r})")


async def outbox_holds(node, count: int) -> bool:
    """Whether ``node``'s outbox worker last reported at least ``count`` undelivered items."""
    metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(node.http + "/metrics").read())
    for line in metrics.decode().splitlines():
        if line.startswith("coral_outbox_depth "):
            return float(line.split()[-1]) >= count
    return False


async def converged(nodes, agents) -> None:
    """Every node knows every other node and every agent."""
    wanted = {c.did for c in agents}

    async def check():
        for n in nodes:
            peers = {p["node_id"] for p in n.get_json("/v1/peers")["peers"]}
            if peers != {m.node_id for m in nodes} - {n.node_id}:
                return False
            listed = {r["agent"] for r in n.get_json("/v1/agents?all=true")["agents"]}
            if not wanted <= listed:
                return False
        return True

    await eventually(check, what="convergence")


async def test_discovery_and_directory_convergence(node_factory):
    a, b, c = start_network(node_factory)
    clients = [await agent(a, "alice"), await agent(b, "bob"), await agent(c, "carol")]
    try:
        await converged([a, b, c], clients)
        bob_seen_from_c = [
            r for r in c.get_json("/v1/agents?all=true")["agents"] if r["manifest"]["name"] == "bob"
        ]
        assert bob_seen_from_c[0]["home_node"] == b.node_id
        from coral.protocol.agent import parse_record, verify_record

        verify_record(parse_record(bob_seen_from_c[0]))  # countersigned by b, checked on c
        # Deregistration (a tombstone) reaches every node too.
        await clients[1].deregister(AgentManifest(name="bob", capabilities=("chat",)))

        async def gone():
            names = {r["manifest"]["name"] for r in a.get_json("/v1/agents?all=true")["agents"]}
            return "bob" not in names

        await eventually(gone, what="tombstone propagation")
    finally:
        for cl in clients:
            await cl.close()


async def test_cross_node_thread_with_mentions(node_factory):
    a, b, c = start_network(node_factory)
    alice, bob, carol = await agent(a, "alice"), await agent(b, "bob"), await agent(c, "carol")
    try:
        await converged([a, b, c], [alice, bob, carol])
        thread = await alice.create_thread("across", [bob.did, carol.did])
        tid = thread.id
        await alice.send(tid, "hello bob", mentions=[bob.did])
        got = await bob.wait("mention", timeout_ms=15_000)
        assert got.entries[0].entry.message.text() == "hello bob"
        receipt = await bob.send(tid, "hi alice", mentions=[alice.did])
        assert isinstance(receipt, Forwarded)
        assert receipt.queued and receipt.owner == a.node_id
        got = await alice.wait("mention", timeout_ms=15_000)
        assert got.entries[0].entry.message.text() == "hi alice"

        async def carol_sees_both():
            page = await carol.history(tid)
            texts = [e.message.text() for e in page.entries if e.message.kind == "message"]
            return texts if texts == ["hello bob", "hi alice"] else None

        await eventually(carol_sees_both, what="carol's mirror")
    finally:
        for cl in (alice, bob, carol):
            await cl.close()


async def test_kill_9_then_restart_delivers_every_message_exactly_once(node_factory):
    a, b, c = start_network(node_factory)
    alice, bob_id = await agent(a, "alice"), Identity.generate()
    bob = await agent(b, "bob", bob_id)
    try:
        await converged([a, b, c], [alice, bob])
        tid = (await alice.create_thread("burst", [bob.did])).id
        start = await bob.wait("message", timeout_ms=10_000)
        cursor = start.cursor
        await bob.close()
        sent = []
        for i in range(30):
            await alice.send(tid, f"m{i}", mentions=[bob.did])
            sent.append(f"m{i}")
            if i == 10:
                b.kill()  # SIGKILL while messages flow
        b.start()
        # A marker after the burst: node a's outbox delivers to b in order, so a
        # message delivered twice (a redelivery of the burst) arrives before it.
        await alice.send(tid, "end", mentions=[bob.did])
        bob = CoralClient(b.http, bob_id)
        seen: list[str] = []
        deadline = time.monotonic() + 40
        while "end" not in seen and time.monotonic() < deadline:
            got = await bob.wait("mention", after=cursor, timeout_ms=5000)
            seen += [e.entry.message.text() for e in got.entries]
            cursor = got.cursor
        assert seen == [*sent, "end"], "a message was lost or delivered twice"
    finally:
        await alice.close()
        await bob.close()


async def test_partition_healed_by_the_outbox(node_factory):
    a, b, c = start_network(node_factory)
    alice, carol_id = await agent(a, "alice"), Identity.generate()
    carol = await agent(c, "carol", carol_id)
    try:
        await converged([a, b, c], [alice, carol])
        tid = (await alice.create_thread("partition", [carol.did])).id
        await carol.close()
        assert c.terminate() == 0  # carol's node is cut off
        for i in range(5):
            await alice.send(tid, f"while away {i}", mentions=[carol.did])
        # Restart carol's node only once a's outbox has tried and kept them queued.
        await eventually(
            lambda: outbox_holds(a, 5), timeout=40, what="a's outbox holding the messages"
        )
        c.start()
        carol = CoralClient(c.http, carol_id)
        texts: list[str] = []
        cursor = 0
        deadline = time.monotonic() + 40
        while len(texts) < 5 and time.monotonic() < deadline:
            got = await carol.wait("mention", after=cursor, timeout_ms=5000)
            texts += [
                e.entry.message.text() for e in got.entries if e.entry.message.kind == "message"
            ]
            cursor = got.cursor
        assert texts == [f"while away {i}" for i in range(5)]
    finally:
        await alice.close()
        await carol.close()


@pytest.mark.parametrize("field", ["node"])
async def test_a_node_cannot_introduce_itself_as_another(node_factory, field):
    import grpc

    from coral.api.grpc.federation import node_auth_metadata
    from coral.federation import PeerAddresses, issue_peer_record
    from coral.protocol.message import now_ms
    from coral.v1 import federation_pb2, federation_pb2_grpc

    a = node_factory("a", GOSSIP)
    victim, attacker = Identity.generate(), Identity.generate()
    forged = issue_peer_record(victim, PeerAddresses(grpc="127.0.0.1:1"), now_ms())
    request = federation_pb2.HelloRequest(peer_record_json=forged.model_dump_json())
    async with grpc.aio.insecure_channel(a.grpc) as channel:
        stub = federation_pb2_grpc.FederationServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Hello(request, metadata=node_auth_metadata(attacker, "Hello", request))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Hello(request)  # no node signature at all
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert victim.did not in {p["node_id"] for p in a.get_json("/v1/peers")["peers"]}


async def test_cli_peers_and_agents_all_show_the_network(node_factory):
    import json
    import subprocess
    import sys

    a, b, c = start_network(node_factory)
    bob = await agent(b, "bob")
    try:
        await converged([a, b, c], [bob])
        peers = subprocess.run(
            [sys.executable, "-m", "coral", "peers", "--url", a.http, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert peers.returncode == 0, peers.stderr
        assert {p["node_id"] for p in json.loads(peers.stdout)["peers"]} == {b.node_id, c.node_id}
        agents = subprocess.run(
            [sys.executable, "-m", "coral", "agents", "--all", "--url", c.http, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert bob.did in {r["agent"] for r in json.loads(agents.stdout)}
    finally:
        await bob.close()
