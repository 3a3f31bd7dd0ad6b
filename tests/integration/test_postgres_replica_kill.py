"""SIGKILL one of two replicas mid-burst: nothing acknowledged is lost or duplicated.

Two node processes share one node key and one PostgreSQL database
(``--database-url``; every store there by default). Alice talks to replica one, Bob to replica two;
each sends a burst mentioning the other while each long-polls its inbox, so a
wait on one replica is woken by a post through the other. Once Alice has some
acknowledged sends, replica one is SIGKILLed; Alice's sender and her inbox
reader reconnect to replica two and resume (the reader from its cursor).

After the burst each sender posts a final marker through replica two. A thread
is totally ordered, so every earlier message of that sender comes before its
marker in the recipient's inbox: draining up to the marker proves absence
without sleeping. Every acknowledged message (the sender got its stored entry
back) must arrive exactly once, in thread order; an unacknowledged one (in
flight when the replica died) arrives once or not at all, never twice.
"""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from coral.coordination.model import InboxEntry, ThreadEntry
from coral.protocol.identity import Identity
from coral.protocol.message import TextPart
from coral_sdk import AgentManifest, CoralClient
from coral_sdk.client import NodeUnreachable
from tests.support.nodeproc import NodeProcess
from tests.support.postgres import fresh_database
from tests.support.throwaway_postgres import ThrowawayPostgres

pytestmark = pytest.mark.postgres

BURST = 40
KILL_AFTER_ACKS = 10
HANG_GUARD_S = 300
# What a client sees when the replica it talks to dies under it.
REPLICA_GONE = (NodeUnreachable, aiohttp.ClientError, asyncio.TimeoutError)


def text_of(entry: ThreadEntry) -> str:
    part = entry.message.parts[0]
    assert isinstance(part, TextPart)
    return part.text


@dataclass
class Agent:
    """One agent's clients: the replica it uses now, and the fallback."""

    name: str
    identity: Identity
    client: CoralClient
    fallback_url: str
    acked: dict[str, int] = field(default_factory=dict)  # text -> seq the node returned
    unacked: list[str] = field(default_factory=list)
    received: list[InboxEntry] = field(default_factory=list)
    reconnects: int = 0
    #: Set once ``KILL_AFTER_ACKS`` of this agent's sends are acknowledged.
    enough_acked: asyncio.Event = field(default_factory=asyncio.Event)

    def fail_over(self, current: CoralClient) -> CoralClient:
        """A client on the fallback replica (shared by sender and reader once made)."""
        if self.client is current:
            self.client = CoralClient(self.fallback_url, self.identity)
            self.reconnects += 1
        return self.client


async def send_burst(agent: Agent, thread_id: str, to: str, killed: asyncio.Event) -> None:
    """Send ``BURST`` messages; on a dead replica note the message as unacknowledged and fail over."""
    for n in range(BURST):
        text = f"{agent.name}{n}"
        client = agent.client
        try:
            entry = await client.send(thread_id, text, mentions=[to])
        except REPLICA_GONE:
            agent.unacked.append(text)
            await killed.wait()  # the replica is gone for good: move on
            agent.fail_over(client)
            continue
        assert isinstance(entry, ThreadEntry)
        agent.acked[text] = entry.seq
        if len(agent.acked) == KILL_AFTER_ACKS:
            agent.enough_acked.set()


async def read_until(agent: Agent, marker: str) -> None:
    """Long-poll the inbox from a cursor until ``marker`` arrives, failing over on a dead replica."""
    cursor = 0
    while True:
        client = agent.client
        try:
            result = await client.wait("mention", after=cursor, timeout_ms=20_000)
        except REPLICA_GONE:
            agent.fail_over(client)
            continue
        for item in result.entries:
            agent.received.append(item)
            if text_of(item.entry) == marker:
                return
        cursor = result.cursor


async def full_history(client: CoralClient, thread_id: str) -> list[ThreadEntry]:
    """Every entry of the thread's log, page by page."""
    entries: list[ThreadEntry] = []
    after: int | None = 0
    while after is not None:
        page = await client.history(thread_id, after=after)
        entries.extend(page.entries)
        after = page.next_after_seq
    return entries


def check_delivery(sender: Agent, recipient: Agent) -> None:
    """Every acknowledged message once, in order; unacknowledged ones at most once."""
    texts = [text_of(i.entry) for i in recipient.received]
    counts = Counter(texts)
    for text in sender.acked:
        assert counts[text] == 1, (text, counts[text])
    for text in sender.unacked:
        assert counts[text] <= 1, (text, counts[text])
    mine = [i for i in recipient.received if text_of(i.entry).startswith(sender.name)]
    # Thread order, and the seq each sender was told is the seq delivered.
    assert [i.entry.seq for i in mine] == sorted({i.entry.seq for i in mine})
    assert [i.cursor for i in recipient.received] == sorted({i.cursor for i in recipient.received})
    for item in mine:
        text = text_of(item.entry)
        if text in sender.acked:
            assert sender.acked[text] == item.entry.seq
    numbers = [
        int(t[len(sender.name) :])
        for t in texts
        if t.startswith(sender.name) and t[len(sender.name) :].isdigit()
    ]
    assert numbers == sorted(numbers)
    assert texts[-1] == f"{sender.name}-end"


async def test_sigkill_of_a_replica_mid_burst_loses_nothing_acknowledged(
    node_factory: Any, postgres_server: ThrowawayPostgres, tmp_path: Path
) -> None:
    dsn = await fresh_database(postgres_server, "replica_kill")
    env = {"CORAL_DATABASE_URL": dsn}
    one: NodeProcess = node_factory("one", **env)
    shutil.copytree(one.data_dir / "keys", tmp_path / "two" / "keys")  # the same node key
    two: NodeProcess = node_factory("two", **env)
    assert one.get_json("/v1/node")["node_id"] == two.get_json("/v1/node")["node_id"]

    alice_id, bob_id = Identity.generate(), Identity.generate()
    alice = Agent("a", alice_id, CoralClient(one.http, alice_id), two.http)
    bob = Agent("b", bob_id, CoralClient(two.http, bob_id), two.http)
    first_alice_client = alice.client
    try:
        await alice.client.register(AgentManifest(name="alice"))
        await bob.client.register(AgentManifest(name="bob"))
        tid = (await alice.client.create_thread("burst", ["bob"])).id

        killed = asyncio.Event()

        async def kill_replica_one() -> None:
            await alice.enough_acked.wait()
            await asyncio.to_thread(one.kill)
            killed.set()

        async def burst_then_marker(agent: Agent, to: str) -> None:
            await send_burst(agent, tid, to, killed)
            await killed.wait()
            if agent.client is first_alice_client:
                agent.fail_over(agent.client)
            end = await agent.client.send(tid, f"{agent.name}-end", mentions=[to])
            assert isinstance(end, ThreadEntry)

        async with asyncio.timeout(HANG_GUARD_S):
            await asyncio.gather(
                read_until(bob, "a-end"),
                read_until(alice, "b-end"),
                burst_then_marker(alice, bob.identity.did),
                burst_then_marker(bob, alice.identity.did),
                kill_replica_one(),
            )

        assert one.proc is not None and one.proc.returncode is not None  # it really died
        assert alice.client is not first_alice_client and alice.reconnects == 1
        assert len(alice.acked) >= KILL_AFTER_ACKS
        assert len(alice.acked) + len(alice.unacked) == BURST
        assert len(bob.acked) == BURST and not bob.unacked
        check_delivery(alice, bob)
        check_delivery(bob, alice)

        # Replica one restarted after the crash on the same database and key: the same
        # node, and the same thread log as replica two.
        node_id = one.info["node_id"]
        await asyncio.to_thread(one.start)
        assert one.get_json("/v1/node")["node_id"] == two.get_json("/v1/node")["node_id"] == node_id
        restarted = CoralClient(one.http, alice_id)
        try:
            assert await full_history(restarted, tid) == await full_history(bob.client, tid)
        finally:
            await restarted.close()
    finally:
        for client in {first_alice_client, alice.client, bob.client}:
            await client.close()
