"""Two node processes (replicas) with one node key on one PostgreSQL database.

Both get only ``--database-url`` (every store on PostgreSQL is the default):
the agent directory, seen ids, threads and inboxes are shared, and both
dashboards show the same logical node. Agents registered on different replicas find each
other, and a stream open on one replica is woken by a message posted through
the other (the ``coordination`` NOTIFY). A stream never times out on its own,
so only the wake-up can end each await; a hang guard bounds it.
"""

from __future__ import annotations

import asyncio
import shutil
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from coral.coordination.model import InboxEntry, ThreadEntry
from coral.protocol.identity import Identity
from coral.protocol.message import TextPart
from coral_sdk import AgentManifest, CoralClient
from tests.support.nodeproc import NodeProcess
from tests.support.postgres import fresh_database
from tests.support.throwaway_postgres import ThrowawayPostgres

pytestmark = pytest.mark.postgres

HANG_GUARD_S = 60


def text_of(entry: ThreadEntry) -> str:
    part = entry.message.parts[0]
    assert isinstance(part, TextPart)
    return part.text


def open_waits(node: NodeProcess) -> str:
    with urllib.request.urlopen(node.http + "/metrics", timeout=10) as resp:
        text: str = resp.read().decode()
    return next(line for line in text.splitlines() if line.startswith("coral_waits_open "))


async def next_mention_after_post(
    waiter: CoralClient,
    waiter_node: NodeProcess,
    sender: CoralClient,
    thread_id: str,
    text: str,
    after: int,
) -> str:
    """Open a mention stream for ``waiter``; once its replica counts it, post; return the text."""
    stream: AsyncIterator[InboxEntry] = waiter.events("mention", after=after)
    first = asyncio.ensure_future(anext(stream))
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            while await asyncio.to_thread(open_waits, waiter_node) != "coral_waits_open 1.0":
                await asyncio.sleep(0.05)
            await sender.send(thread_id, text, mentions=[waiter.did])
            return text_of((await first).entry)
    finally:
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await stream.aclose()  # type: ignore[attr-defined]


async def test_two_replicas_share_agents_and_threads_and_wake_each_other(
    node_factory: Any, postgres_server: ThrowawayPostgres, tmp_path: Path
) -> None:
    dsn = await fresh_database(postgres_server, "replicas")
    one = node_factory("one", ["--database-url", dsn])
    shutil.copytree(one.data_dir / "keys", tmp_path / "two" / "keys")  # the same node key
    two = node_factory("two", ["--database-url", dsn])
    assert one.get_json("/v1/node")["node_id"] == two.get_json("/v1/node")["node_id"]

    alice = CoralClient(one.http, Identity.generate())
    bob = CoralClient(two.http, Identity.generate())
    try:
        await alice.register(AgentManifest(name="alice"))
        await bob.register(AgentManifest(name="bob"))
        assert (await bob.get_agent("alice")).agent == alice.did
        thread = await alice.create_thread("across", ["bob"])  # bob's name, from replica one
        tid = thread.id

        got = await next_mention_after_post(bob, two, alice, tid, "hello from one", 0)
        assert got == "hello from one"
        back = await next_mention_after_post(alice, one, bob, tid, "hello from two", 0)
        assert back == "hello from two"

        # Posts through both replicas land in one order, the same seen from either.
        for n in range(3):
            await alice.send(tid, f"a{n}")
            await bob.send(tid, f"b{n}")
        seen_from_one = (await alice.history(tid)).entries
        seen_from_two = (await bob.history(tid)).entries
        assert seen_from_one == seen_from_two
        texts = [text_of(e) for e in seen_from_two if not e.system]
        assert texts[-6:] == ["a0", "b0", "a1", "b1", "a2", "b2"]
        assert [e.seq for e in seen_from_two] == list(range(1, len(seen_from_two) + 1))
    finally:
        await alice.close()
        await bob.close()

    # Either replica's dashboard shows the same agents, threads, messages and ledger.
    first, second = [
        await asyncio.to_thread(n.get_json, "/v1/dashboard/snapshot") for n in (one, two)
    ]
    for panel in ("agents", "threads", "ledger"):
        assert first[panel] == second[panel], panel
    assert {a["name"] for a in first["agents"]["local"]} == {"alice", "bob"}
    [shown] = first["threads"]["recent"]
    assert [m["parts"][0]["text"] for m in shown["messages"]][-6:] == texts[-6:]
    assert first["threads"]["totals"]["entries"] == len(seen_from_two)
    assert "unavailable" not in first["ledger"]
