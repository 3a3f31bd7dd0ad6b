"""The A2A task port: SQLite, PostgreSQL and the in-memory twin behave alike (scope,
filters, pages, retention, interrupted tasks), and the a2a-sdk adapter scopes by agent
and authenticated caller.

Every test runs once per implementation (the ``records`` fixture's params); the
PostgreSQL cases skip with a reason when no server binaries are installed (and fail
under CI=true). The last tests are PostgreSQL's own: replicas share one database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from a2a.auth.user import User
from a2a.server.context import ServerCallContext
from a2a.types import a2a_pb2
from a2a.utils.errors import InvalidParamsError
from google.protobuf.timestamp_pb2 import Timestamp

from coral.api.a2a.tasks import (
    AGENT_STATE_KEY,
    DEFAULT_AGENT_STATE_KEY,
    INTERRUPTED_TEXT,
    A2ATaskRecords,
    ContextBinding,
    InMemoryTaskRecords,
    RetentionPolicy,
    ScopedPushConfigs,
    ScopedTaskStore,
    TaskRow,
    fail_interrupted,
    scope_of,
)
from coral.store.a2a_postgres import PostgresA2ATaskRecords
from coral.store.a2a_sqlite import SqliteA2ATaskRecords
from coral.store.sqlite import SqliteDatabase

S = a2a_pb2.TaskState

#: Gives the test the store as the node has it after a restart (the same store
#: where nothing but the process is lost; a new runner on PostgreSQL).
Restart = Callable[[], Awaitable[A2ATaskRecords]]


class Stores:
    """The store under test and how to restart it."""

    def __init__(self) -> None:
        self.records: A2ATaskRecords = InMemoryTaskRecords()
        self.restart: Restart = self._same
        self.opened: list[PostgresA2ATaskRecords] = []

    async def _same(self) -> A2ATaskRecords:
        return self.records


@pytest.fixture
async def memory_stores() -> Stores:
    return Stores()


@pytest.fixture
async def sqlite_stores(tmp_path: Path) -> AsyncIterator[Stores]:
    stores = Stores()
    db = SqliteDatabase(tmp_path / "a2a.db")
    await db.open()
    stores.records = sqlite = SqliteA2ATaskRecords(db)
    await sqlite.open()
    yield stores
    await db.close()


@pytest.fixture
async def postgres_stores(postgres_pool: asyncpg.Pool) -> AsyncIterator[Stores]:
    stores = Stores()

    async def replica() -> PostgresA2ATaskRecords:
        store = PostgresA2ATaskRecords(postgres_pool)
        await store.open()
        stores.opened.append(store)
        return store

    async def restart() -> A2ATaskRecords:
        await stores.opened[0].close()  # the old process is gone: its runner lock is free
        return await replica()

    stores.records = await replica()
    stores.restart = restart
    yield stores
    for store in stores.opened:
        await store.close()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def stores(request: pytest.FixtureRequest) -> Stores:
    """Each A2ATaskRecords in turn (PostgreSQL on a fresh schema of the session's server)."""
    chosen: Stores = request.getfixturevalue(f"{request.param}_stores")
    return chosen


@pytest.fixture
def records(stores: Stores) -> A2ATaskRecords:
    return stores.records


class Caller(User):
    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self.name


def context(agent: str = "", tenant: str = "", caller: str = "") -> ServerCallContext:
    ctx = ServerCallContext(state={AGENT_STATE_KEY: agent, DEFAULT_AGENT_STATE_KEY: ""})
    ctx.tenant = tenant
    if caller:
        ctx.user = Caller(caller)
    return ctx


def task(task_id: str, state: int, seconds: int, context_id: str = "c1") -> a2a_pb2.Task:
    stamp = Timestamp(seconds=seconds)
    return a2a_pb2.Task(
        id=task_id,
        context_id=context_id,
        status=a2a_pb2.TaskStatus(state=state, timestamp=stamp),  # type: ignore[arg-type]
    )


async def test_tasks_are_scoped_by_agent_and_authenticated_caller(records: A2ATaskRecords) -> None:
    store = ScopedTaskStore(records)
    await store.save(task("t1", S.TASK_STATE_WORKING, 1), context(agent="echo"))
    assert await store.get("t1", context(agent="echo")) is not None
    assert await store.get("t1", context(tenant="echo")) is not None  # gRPC: same agent
    assert await store.get("t1", context(agent="other")) is None
    assert await store.get("t1", context(agent="echo", caller="alice")) is None
    await store.save(task("t2", S.TASK_STATE_WORKING, 2), context(agent="echo", caller="alice"))
    assert await store.get("t2", context(agent="echo", caller="bob")) is None
    assert await store.get("t2", context(agent="echo", caller="alice")) is not None
    with pytest.raises(InvalidParamsError):
        scope_of(context(agent="echo", tenant="other"))


async def test_list_filters_pages_newest_first_and_validates_status(
    records: A2ATaskRecords,
) -> None:
    store = ScopedTaskStore(records)
    ctx = context(agent="echo")
    for i in range(5):
        state = S.TASK_STATE_COMPLETED if i % 2 else S.TASK_STATE_WORKING
        await store.save(task(f"t{i}", state, 10 + i, context_id=f"c{i % 2}"), ctx)
    page = await store.list(a2a_pb2.ListTasksRequest(page_size=2), ctx)
    assert [t.id for t in page.tasks] == ["t4", "t3"] and page.total_size == 5
    assert page.page_size == 2
    rest = await store.list(a2a_pb2.ListTasksRequest(page_token=page.next_page_token), ctx)
    assert [t.id for t in rest.tasks] == ["t2", "t1", "t0"] and not rest.next_page_token
    done = await store.list(a2a_pb2.ListTasksRequest(status=S.TASK_STATE_COMPLETED), ctx)
    assert {t.id for t in done.tasks} == {"t1", "t3"}
    in_c0 = await store.list(a2a_pb2.ListTasksRequest(context_id="c0"), ctx)
    assert {t.id for t in in_c0.tasks} == {"t0", "t2", "t4"}
    since = a2a_pb2.ListTasksRequest(status_timestamp_after=Timestamp(seconds=13))
    assert {t.id for t in (await store.list(since, ctx)).tasks} == {"t3", "t4"}
    with pytest.raises(InvalidParamsError):
        await store.list(a2a_pb2.ListTasksRequest(status=42), ctx)  # type: ignore[arg-type]
    with pytest.raises(InvalidParamsError):
        await store.list(a2a_pb2.ListTasksRequest(page_token="garbage"), ctx)


async def test_retention_evicts_old_finished_tasks_then_the_oldest_past_the_cap(
    records: A2ATaskRecords,
) -> None:
    store = ScopedTaskStore(records)
    ctx = context(agent="echo")
    await store.save(task("old-done", S.TASK_STATE_COMPLETED, 100), ctx)
    await store.save(task("old-working", S.TASK_STATE_WORKING, 100), ctx)
    for i in range(3):
        await store.save(task(f"new{i}", S.TASK_STATE_COMPLETED, 1000 + i), ctx)
    await records.bind_thread("echo", "c1", "thread-1")
    configs = ScopedPushConfigs(records)
    push = a2a_pb2.TaskPushNotificationConfig(url="https://example.org/h")
    await configs.set_info("old-done", push, ctx)
    policy = RetentionPolicy(finished_for_s=500, max_tasks=3)
    gone = await policy.apply(records, now_ns=1200 * 10**9)
    # old-done is past retention; then 4 remain and the oldest (old-working) goes.
    assert gone == 2
    left = await store.list(a2a_pb2.ListTasksRequest(), ctx)
    assert {t.id for t in left.tasks} == {"new0", "new1", "new2"}
    assert await configs.get_info_for_dispatch("old-done") == []
    assert await records.thread_of("echo", "c1") == "thread-1"  # context still has tasks


async def test_push_configs_are_scoped_and_dispatch_sees_every_owner(
    records: A2ATaskRecords,
) -> None:
    configs = ScopedPushConfigs(records)
    alice, bob = context(agent="echo", caller="alice"), context(agent="echo", caller="bob")
    stored = await configs.set_info(
        "t1", a2a_pb2.TaskPushNotificationConfig(url="https://a.example/h"), alice
    )
    assert stored.id == "t1" and stored.task_id == "t1"
    await configs.set_info(
        "t1", a2a_pb2.TaskPushNotificationConfig(id="b", url="https://b.example/h"), bob
    )
    assert [c.url for c in await configs.get_info("t1", alice)] == ["https://a.example/h"]
    assert len(await configs.get_info_for_dispatch("t1")) == 2
    await configs.delete_info("t1", bob, "b")
    assert await configs.get_info("t1", bob) == []


async def test_tasks_running_when_the_node_stopped_are_failed_with_a_reason(
    stores: Stores,
) -> None:
    store = ScopedTaskStore(stores.records)
    ctx = context(agent="echo")
    await store.save(task("running", S.TASK_STATE_WORKING, 1), ctx)
    await store.save(task("asking", S.TASK_STATE_INPUT_REQUIRED, 1), ctx)
    await store.save(task("done", S.TASK_STATE_COMPLETED, 1), ctx)
    records = await stores.restart()
    store = ScopedTaskStore(records)
    assert await fail_interrupted(records, now_ns=5 * 10**9) == 1
    failed = await store.get("running", ctx)
    assert failed is not None and failed.status.state == S.TASK_STATE_FAILED
    assert failed.status.message.parts[0].text == INTERRUPTED_TEXT
    asking = await store.get("asking", ctx)
    assert asking is not None and asking.status.state == S.TASK_STATE_INPUT_REQUIRED
    assert await fail_interrupted(records) == 0


@pytest.mark.postgres
async def test_a_replica_never_fails_the_running_tasks_of_a_live_one(
    postgres_pool: asyncpg.Pool,
) -> None:
    one, two = PostgresA2ATaskRecords(postgres_pool), PostgresA2ATaskRecords(postgres_pool)
    await one.open()
    await two.open()
    try:
        ctx = context(agent="echo", caller="alice")
        await ScopedTaskStore(one).save(task("t1", S.TASK_STATE_WORKING, 1), ctx)
        # Replica two starts (or runs its periodic check) while one still follows t1.
        assert await fail_interrupted(two) == 0
        seen_from_two = await ScopedTaskStore(two).get("t1", ctx)
        assert seen_from_two is not None and seen_from_two.status.state == S.TASK_STATE_WORKING
        assert await ScopedTaskStore(two).get("t1", context(agent="echo", caller="bob")) is None
        await one.close()  # replica one dies: now t1 is interrupted
        assert await fail_interrupted(two) == 1
        failed = await ScopedTaskStore(two).get("t1", ctx)
        assert failed is not None and failed.status.state == S.TASK_STATE_FAILED
    finally:
        await one.close()
        await two.close()


@pytest.mark.postgres
async def test_a_replica_whose_lock_connection_broke_takes_it_again_before_writing(
    postgres_pool: asyncpg.Pool,
) -> None:
    one = PostgresA2ATaskRecords(postgres_pool, runner_check_s=0)
    two = PostgresA2ATaskRecords(postgres_pool)
    await one.open()
    await two.open()
    try:
        ctx = context(agent="echo")
        await ScopedTaskStore(one).save(task("t1", S.TASK_STATE_WORKING, 1), ctx)
        async with postgres_pool.acquire() as conn:  # as a database restart would
            holder = await conn.fetchval(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND objid::text::bigint = $1::bigint % 4294967296",
                one.runner,
            )
            await conn.execute("SELECT pg_terminate_backend($1)", holder)
            while await conn.fetchval("SELECT 1 FROM pg_stat_activity WHERE pid = $1", holder):
                await asyncio.sleep(0.01)  # until the backend is gone, its lock with it
        assert len(await two.unfinished()) == 1  # for now, one looks dead
        await ScopedTaskStore(one).save(task("t1", S.TASK_STATE_WORKING, 2), ctx)
        assert await fail_interrupted(two) == 0
    finally:
        await one.close()
        await two.close()


async def test_a_batch_writes_its_tasks_in_order_and_its_context_bindings(
    records: A2ATaskRecords,
) -> None:
    def row(task_id: str, state: int, seconds: int) -> TaskRow:
        body = task(task_id, state, seconds).SerializeToString()
        return TaskRow("echo", task_id, "c1", state, seconds * 1_000_000_000, body)

    await records.save_batch(
        [
            row("t1", S.TASK_STATE_SUBMITTED, 1),
            row("t2", S.TASK_STATE_WORKING, 2),
            row("t1", S.TASK_STATE_COMPLETED, 3),
        ],
        [ContextBinding("echo", "c1", "thread-1"), ContextBinding("echo", "c2", "thread-2")],
    )

    t1 = a2a_pb2.Task()
    t1.ParseFromString(await records.get_task("echo", "t1") or b"")
    assert t1.status.state == S.TASK_STATE_COMPLETED
    assert await records.get_task("echo", "t2") is not None
    assert await records.thread_of("echo", "c1") == "thread-1"
    assert await records.thread_of("echo", "c2") == "thread-2"
    await records.save_batch([], [])
