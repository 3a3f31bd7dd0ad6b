"""Node-held agents and the MCP tools in process: real SQLite, real keys, real engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coral.agents.directory import AgentDirectory
from coral.api.mcp.held_agents import MCP_KIND, AgentNameTaken, HeldAgents, WrongSecret
from coral.api.mcp.tool_specs import DEFAULTED
from coral.api.mcp.tools import TOOL_SPECS, CoralTools, ToolArgumentError, check_arguments
from coral.coordination.gateway import MessageGateway
from coral.coordination.service import CoordinationService
from coral.protocol.agent import AgentManifest, verify_record
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms
from coral.protocol.signing import sign_message
from coral.protocol.verify import MessageVerifier
from coral.store.agents_sqlite import SqliteAgentStore
from coral.store.coordination_sqlite import SqliteCoordinationStore
from coral.store.interop_sqlite import SqliteHeldAgentRecords
from coral.store.seen_sqlite import SqliteSeenStore
from coral.store.sqlite import SqliteDatabase


async def build(db: SqliteDatabase, keys: Path, node: Identity) -> tuple[HeldAgents, CoralTools]:
    agents = SqliteAgentStore(db)
    await agents.open()
    seen = SqliteSeenStore(db)
    await seen.open()
    store = SqliteCoordinationStore(db)
    await store.migrate()
    directory = AgentDirectory(agents, node, now_ms)
    engine = CoordinationService(
        store, node_id=node.did, clock=now_ms, sign_event=lambda m: sign_message(m, node)
    )
    gateway = MessageGateway(MessageVerifier(), seen, engine, directory)
    records = SqliteHeldAgentRecords(db)
    await records.open()
    held = HeldAgents(records, keys, node, directory, gateway)
    await held.open()
    return held, CoralTools(held, directory, engine)


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[HeldAgents, CoralTools]]:
    db = SqliteDatabase(tmp_path / "coral.db")
    await db.open()
    yield await build(db, tmp_path / "keys", Identity.generate())
    await db.close()


async def test_created_agents_are_registered_keyed_and_found_by_secret_only(
    parts: tuple[HeldAgents, CoralTools], tmp_path: Path
):
    held, _ = parts
    agent, secret = await held.create(AgentManifest(name="ann"), MCP_KIND, with_secret=True)
    assert secret is not None
    record = await held.directory.get(agent.did)
    verify_record(record)  # signed by the agent's held key, countersigned by the node
    key = tmp_path / "keys" / "mcp" / "ann.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert (await held.by_secret(secret)).did == agent.did
    assert isinstance(held.records, SqliteHeldAgentRecords)
    rows = await held.records.db.fetchall("SELECT secret_sha256 FROM interop_agents")
    assert secret not in str([tuple(r) for r in rows])  # only the hash is stored
    with pytest.raises(WrongSecret):
        await held.by_secret(secret + "x")
    with pytest.raises(AgentNameTaken):
        await held.create(AgentManifest(name="ann"), MCP_KIND)


async def test_held_agents_survive_a_restart_with_the_same_key(tmp_path: Path):
    node = Identity.generate()
    db = SqliteDatabase(tmp_path / "coral.db")
    await db.open()
    held, _ = await build(db, tmp_path / "keys", node)
    agent, secret = await held.create(AgentManifest(name="bo"), MCP_KIND, with_secret=True)
    await db.close()
    db = SqliteDatabase(tmp_path / "coral.db")
    await db.open()
    again, _ = await build(db, tmp_path / "keys", node)
    assert secret is not None and (await again.by_secret(secret)).did == agent.did
    await db.close()


async def test_wait_tools_deliver_each_message_once_and_respect_the_start_time(
    parts: tuple[HeldAgents, CoralTools],
):
    held, tools = parts
    ann, _ = await held.create(AgentManifest(name="ann"), MCP_KIND)
    bob, _ = await held.create(AgentManifest(name="bob"), MCP_KIND)
    created = await tools.call(
        ann, "coral_create_thread", {"threadName": "t", "participantNames": ["bob", "ann"]}
    )
    thread = created["thread"]
    assert thread["participants"] == ["ann", "bob"]
    before = now_ms()
    await tools.call(
        ann, "coral_send_message", {"threadId": thread["id"], "content": "old", "mentions": []}
    )
    old_sent_by = now_ms()  # "old" was recorded at or before this
    while now_ms() <= old_sent_by:  # until the clock has moved past it
        await asyncio.sleep(0.001)
    after_old = now_ms()
    await tools.call(
        ann, "coral_send_message", {"threadId": thread["id"], "content": "new", "mentions": ["bob"]}
    )
    got = await tools.call(
        bob, "coral_wait_for_message", {"currentUnixTime": after_old, "maxWaitMs": 1000}
    )
    assert got["message"]["text"] == "new"  # "old" predates currentUnixTime
    mention = await tools.call(
        bob, "coral_wait_for_mention", {"currentUnixTime": before, "maxWaitMs": 1000}
    )
    assert mention["message"]["text"] == "new"
    none = await tools.call(
        bob, "coral_wait_for_mention", {"currentUnixTime": before, "maxWaitMs": 50}
    )
    assert none["status"] == "Timeout reached" and "message" not in none
    # Seconds are accepted too (coral clients differ), and self-messages never count.
    mine = await tools.call(
        ann, "coral_wait_for_message", {"currentUnixTime": before // 1000, "maxWaitMs": 50}
    )
    assert mine["status"] == "Timeout reached" and "message" not in mine


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


@given(
    tool=st.sampled_from(sorted(TOOL_SPECS)),
    args=st.dictionaries(
        st.sampled_from(
            ["threadId", "content", "maxWaitMs", "currentUnixTime", "mentions", "bogus"]
        ),
        _VALUES,
        max_size=4,
    ),
)
def test_argument_checking_accepts_only_schema_conforming_calls(tool: str, args: dict) -> None:
    schema = TOOL_SPECS[tool][1]
    try:
        check_arguments(tool, args)
    except ToolArgumentError:
        return
    assert set(schema["required"]) - DEFAULTED <= set(args)
    assert set(args) <= set(schema["properties"])
    for key, value in args.items():
        kind = schema["properties"][key]["type"]
        expected = {"string": str, "integer": int, "boolean": bool, "array": list}[kind]
        assert isinstance(value, expected)
