"""What the A2A front door does to spare the database, proven on real SQLite: running task
states and context bindings written late but read at once and in order, push-config reads
skipped only for tasks that have none (also after a restart), and agent names remembered
only until the directory changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from a2a.types import a2a_pb2

from coral.agents.directory import AgentDirectory, AgentNotRegistered
from coral.api.a2a.names import AgentNames
from coral.api.a2a.tasks import TaskQuery, TaskRow
from coral.api.a2a.write_behind import DeferredRunningWrites
from coral.protocol.agent import AgentManifest, AgentRecord, sign_record_as_agent
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms
from coral.store.a2a_sqlite import SqliteA2ATaskRecords
from coral.store.agents_sqlite import SqliteAgentStore
from coral.store.sqlite import SqliteDatabase

S = a2a_pb2.TaskState


@dataclass
class Stores:
    db: SqliteDatabase
    stored: SqliteA2ATaskRecords


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[Stores]:
    db = SqliteDatabase(tmp_path / "node.db")
    await db.open()
    stored = SqliteA2ATaskRecords(db)
    await stored.open()
    yield Stores(db, stored)
    await db.close()


def row(task_id: str, state: int, scope: str = "echo", context_id: str = "c1") -> TaskRow:
    body = a2a_pb2.Task(
        id=task_id, context_id=context_id, status=a2a_pb2.TaskStatus(state=state)
    ).SerializeToString()
    return TaskRow(scope, task_id, context_id, state, now_ms() * 1_000_000, body)


def state_of(body: bytes | None) -> int:
    assert body is not None
    task = a2a_pb2.Task()
    task.ParseFromString(body)
    return int(task.status.state)


async def test_running_states_are_read_at_once_and_written_with_the_final_state(
    stores: Stores,
) -> None:
    records = DeferredRunningWrites(stores.stored, delay_s=3600)
    await records.save_task(row("t1", S.TASK_STATE_SUBMITTED))
    await records.save_task(row("t1", S.TASK_STATE_WORKING))
    await records.save_task(row("t2", S.TASK_STATE_WORKING))
    await records.bind_thread("echo", "c1", "thread-1")

    assert state_of(await records.get_task("echo", "t1")) == S.TASK_STATE_WORKING
    assert await records.thread_of("echo", "c1") == "thread-1"
    assert await stores.stored.get_task("echo", "t1") is None
    assert await stores.stored.thread_of("echo", "c1") is None

    groups_before = stores.db.group_commit_stats.groups
    await records.save_task(row("t1", S.TASK_STATE_COMPLETED))

    assert stores.db.group_commit_stats.groups == groups_before + 1
    assert state_of(await stores.stored.get_task("echo", "t1")) == S.TASK_STATE_COMPLETED
    assert state_of(await stores.stored.get_task("echo", "t2")) == S.TASK_STATE_WORKING
    assert await stores.stored.thread_of("echo", "c1") == "thread-1"
    assert state_of(await records.get_task("echo", "t1")) == S.TASK_STATE_COMPLETED


async def test_a_running_task_reaches_the_database_without_a_final_save(stores: Stores) -> None:
    records = DeferredRunningWrites(stores.stored, delay_s=0.01)
    await records.save_task(row("t1", S.TASK_STATE_WORKING))

    for _ in range(500):
        if await stores.stored.get_task("echo", "t1") is not None:
            break
        await asyncio.sleep(0.01)
    assert state_of(await stores.stored.get_task("echo", "t1")) == S.TASK_STATE_WORKING
    await records.close()


async def test_a_final_state_is_never_overwritten_by_an_earlier_running_one(
    stores: Stores,
) -> None:
    records = DeferredRunningWrites(stores.stored, delay_s=0.001)
    for i in range(50):
        await records.save_task(row(f"t{i}", S.TASK_STATE_WORKING))
        if i % 7 == 0:
            await asyncio.sleep(0.002)  # let timed flushes interleave with final saves
        await records.save_task(row(f"t{i}", S.TASK_STATE_COMPLETED))
    await records.close()

    for i in range(50):
        assert state_of(await stores.stored.get_task("echo", f"t{i}")) == S.TASK_STATE_COMPLETED


async def test_listing_unfinished_and_closing_see_pending_rows(stores: Stores) -> None:
    records = DeferredRunningWrites(stores.stored, delay_s=3600)
    await records.save_task(row("t1", S.TASK_STATE_WORKING))

    bodies, total = await records.list_tasks("echo", TaskQuery())
    assert total == 1 and [state_of(b) for b in bodies] == [S.TASK_STATE_WORKING]

    await records.save_task(row("t2", S.TASK_STATE_SUBMITTED))
    assert {r.task_id for r in await records.unfinished()} == {"t1", "t2"}

    await records.save_task(row("t3", S.TASK_STATE_WORKING))
    await records.bind_thread("echo", "c9", "thread-9")
    await records.close()
    assert state_of(await stores.stored.get_task("echo", "t3")) == S.TASK_STATE_WORKING
    assert await stores.stored.thread_of("echo", "c9") == "thread-9"


async def test_push_configs_are_read_only_for_tasks_that_have_some_also_after_a_restart(
    stores: Stores,
) -> None:
    await stores.stored.save_push("echo", "t1", "cfg", b"config-1")
    assert await stores.stored.push_configs(None, "t1") == [b"config-1"]
    assert await stores.stored.push_configs("echo", "t2") == []

    reopened = SqliteA2ATaskRecords(stores.db)
    await reopened.open()
    assert await reopened.push_configs(None, "t1") == [b"config-1"]
    assert await reopened.push_configs("echo", "t1") == [b"config-1"]
    assert await reopened.push_configs(None, "t2") == []

    await reopened.delete_push("echo", "t1", None)
    assert await reopened.push_configs(None, "t1") == []


async def _register(directory: AgentDirectory, node: Identity, who: Identity, name: str) -> None:
    record = AgentRecord(
        agent=who.did,
        home_node=node.did,
        manifest=AgentManifest(name=name),
        version=now_ms(),
        updated_at=now_ms(),
    )
    await directory.register(sign_record_as_agent(record, who))


async def test_agent_names_follow_registrations_and_expire(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "node.db")
    await db.open()
    agents = SqliteAgentStore(db)
    await agents.open()
    node = Identity.generate()
    directory = AgentDirectory(agents, node, now_ms)
    clock = [0.0]
    names = AgentNames(directory, ttl_s=1.0, clock=lambda: clock[0])
    echo = Identity.generate()
    try:
        with pytest.raises(AgentNotRegistered):
            await names.resolve("echo")
        await _register(directory, node, echo, "echo")
        first = await names.resolve("echo")
        assert first.agent == echo.did and first.manifest.description == ""

        # A change stored through this directory is seen at once.
        updated = AgentRecord(
            agent=echo.did,
            home_node=node.did,
            manifest=AgentManifest(name="echo", description="v2"),
            version=first.version + 1,
            updated_at=now_ms(),
        )
        await directory.register(sign_record_as_agent(updated, echo))
        assert (await names.resolve("echo")).manifest.description == "v2"

        # One made behind its back (another replica) is seen once the answer expires.
        await agents.put(first.model_copy(update={"version": first.version + 2}))
        assert (await names.resolve("echo")).manifest.description == "v2"
        clock[0] = 1.5
        assert (await names.resolve("echo")).manifest.description == ""
    finally:
        await db.close()


async def test_no_delay_writes_every_state_and_binding_at_once(stores: Stores) -> None:
    records = DeferredRunningWrites(stores.stored, delay_s=0)
    await records.save_task(row("t1", S.TASK_STATE_WORKING))
    await records.bind_thread("echo", "c1", "thread-1")

    assert state_of(await stores.stored.get_task("echo", "t1")) == S.TASK_STATE_WORKING
    assert await stores.stored.thread_of("echo", "c1") == "thread-1"
