"""Federation with a node run as two replicas on PostgreSQL: the network sees one node.

Node X is a plain node on SQLite. Node Y is two processes with one node key
and one PostgreSQL database (``database_stores = "all"``), each listing both
replicas' gRPC addresses in ``public_addresses``. X's view of Y's peer record
lists both; an agent on X and an agent registered through Y's second
replica talk on a cross-node thread both ways. On the way, X's deliveries
land on either replica of Y (a mirrored entry committed by one wakes the
wait open on the other), and the reply queued through replica 2 is delivered
by whichever replica holds Y's background lease.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from coral.protocol.identity import Identity
from coral_sdk import AgentManifest, CoralClient
from coral_sdk.types import Forwarded
from tests.support.nodeproc import NodeProcess
from tests.support.postgres import fresh_database
from tests.support.throwaway_postgres import ThrowawayPostgres

pytestmark = pytest.mark.postgres

FAST_GOSSIP = {"CORAL_GOSSIP_INTERVAL_S": "0.3"}
WAIT_MS = 15_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def eventually(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} not reached in {timeout}s")


async def test_a_node_of_two_replicas_is_one_peer_and_talks_through_either_replica(
    node_factory: Any, postgres_server: ThrowawayPostgres, tmp_path: Path
) -> None:
    x = node_factory("x", ["--log-level", "warning"], **FAST_GOSSIP)
    dsn = await fresh_database(postgres_server, "federated_replicas")
    ports = [free_port(), free_port()]
    public = [f"127.0.0.1:{port}" for port in ports]
    shared = {
        "CORAL_DATABASE_URL": dsn,
        "CORAL_DATABASE_STORES": "all",
        "CORAL_PUBLIC_ADDRESSES": ",".join(public),
        **FAST_GOSSIP,
    }

    def replica(name: str, port: int) -> NodeProcess:
        args = ["--log-level", "warning", "--grpc-port", str(port), "--bootstrap", x.grpc]
        started: NodeProcess = node_factory(name, args, **shared)
        return started

    y1 = replica("y1", ports[0])
    shutil.copytree(y1.data_dir / "keys", tmp_path / "y2" / "keys")  # the same node key
    y2 = replica("y2", ports[1])
    assert y1.node_id == y2.node_id and y2.grpc == public[1]

    async def y_as_x_sees_it() -> dict[str, Any] | None:
        peers = {p["node_id"]: p for p in x.get_json("/v1/peers")["peers"]}
        return peers.get(y1.node_id)

    seen = await eventually(y_as_x_sees_it, "X learning of Y")
    addresses = seen["record"]["addresses"]
    assert [addresses["grpc"], *addresses["grpc_replicas"]] == public

    alice = CoralClient(x.http, Identity.generate())
    bob = CoralClient(y2.http, Identity.generate())  # registered through replica 2
    try:
        await alice.register(AgentManifest(name="alice"))
        await bob.register(AgentManifest(name="bob"))

        async def directories_converged() -> bool:
            on_x = {r["agent"] for r in x.get_json("/v1/agents?all=true")["agents"]}
            on_y = {r["agent"] for r in y1.get_json("/v1/agents?all=true")["agents"]}
            return {alice.did, bob.did} <= on_x and {alice.did, bob.did} <= on_y

        await eventually(directories_converged, "both directories listing both agents")
        thread = await alice.create_thread("across", [bob.did])
        await alice.send(thread.id, "hello bob", mentions=[bob.did])
        got = await bob.wait("mention", timeout_ms=WAIT_MS)
        assert [e.entry.message.text() for e in got.entries] == ["hello bob"]

        receipt = await bob.send(thread.id, "hi alice", mentions=[alice.did])
        assert isinstance(receipt, Forwarded) and receipt.owner == x.node_id
        back = await alice.wait("mention", timeout_ms=WAIT_MS)
        assert [e.entry.message.text() for e in back.entries] == ["hi alice"]

        # X mirrors its log back to Y (bob's reply included, in X's order); both
        # replicas of Y serve that one copy.
        bob_on_y1 = CoralClient(y1.http, bob.identity)

        async def mirrored_on_both() -> bool:
            texts = [
                [e.message.text() for e in (await c.history(thread.id)).entries if not e.system]
                for c in (bob, bob_on_y1)
            ]
            return texts[0] == texts[1] == ["hello bob", "hi alice"]

        try:
            await eventually(mirrored_on_both, "the reply mirrored back to Y")
        finally:
            await bob_on_y1.close()
    finally:
        await alice.close()
        await bob.close()
