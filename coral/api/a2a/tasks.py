"""Where A2A tasks live: a storage port, its in-memory twin, and the a2a-sdk adapters.

Every task belongs to a *scope*: the agent it was sent to (the name in the
URL, the gRPC ``tenant``, or the node's default agent; ``""`` is the router)
plus, when the caller is authenticated, the caller. Reads, lists, cancels and
subscriptions only ever see their own scope, so a task sent to ``echo``
cannot be read through another agent's URL.

``A2ATaskRecords`` is the port (``coral.store.a2a_sqlite``, and
``coral.store.a2a_postgres`` for replicas of one node sharing PostgreSQL);
``ScopedTaskStore`` and ``ScopedPushConfigs`` adapt it to the a2a-sdk's
``TaskStore`` and ``PushNotificationConfigStore``. ``TaskWatch`` tells a
replica that a task another replica runs was written.
Finished tasks are evicted by ``RetentionPolicy``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from a2a.server.context import ServerCallContext
from a2a.server.tasks import PushNotificationConfigStore, TaskStore
from a2a.server.tasks.push_notification_config_store import (
    normalize_push_notification_config,
)
from a2a.types import a2a_pb2
from a2a.utils.constants import DEFAULT_LIST_TASKS_PAGE_SIZE
from a2a.utils.errors import InvalidParamsError
from a2a.utils.task import ListTasksCursor, decode_list_tasks_cursor, encode_list_tasks_cursor

#: State key where the HTTP adapters put the agent named by the URL.
AGENT_STATE_KEY = "coral.agent_name"
#: State key for the node's default agent (requests that name no agent).
DEFAULT_AGENT_STATE_KEY = "coral.default_agent"
#: State key for a context id this node just made up (no thread can be bound to it yet).
FRESH_CONTEXT_STATE_KEY = "coral.fresh_context"

TERMINAL_STATES = frozenset(
    {
        a2a_pb2.TaskState.TASK_STATE_COMPLETED,
        a2a_pb2.TaskState.TASK_STATE_FAILED,
        a2a_pb2.TaskState.TASK_STATE_CANCELED,
        a2a_pb2.TaskState.TASK_STATE_REJECTED,
    }
)


RUNNING_STATES = frozenset(
    {a2a_pb2.TaskState.TASK_STATE_SUBMITTED, a2a_pb2.TaskState.TASK_STATE_WORKING}
)
#: The status text of a task that was running when the node stopped.
INTERRUPTED_TEXT = "the node restarted while this task was running; send it again"


def agent_of(context: ServerCallContext) -> str:
    """The agent a request is addressed to: URL name, else tenant, else the default agent.

    Raises:
        InvalidParamsError: the URL names one agent and the ``tenant`` another.
    """
    from_url = str(context.state.get(AGENT_STATE_KEY, "") or "")
    tenant = context.tenant
    if from_url and tenant and tenant != from_url:
        raise InvalidParamsError(
            message=f"tenant {tenant!r} does not match the agent {from_url!r} in the URL"
        )
    return from_url or tenant or str(context.state.get(DEFAULT_AGENT_STATE_KEY, "") or "")


def scope_of(context: ServerCallContext) -> str:
    """The owner scope of a request: the agent, plus the caller when authenticated."""
    agent = agent_of(context)
    if context.user.is_authenticated:
        return f"{agent}\n{context.user.user_name}"
    return agent


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One stored task: the serialized ``Task`` and the columns it is found by."""

    scope: str
    task_id: str
    context_id: str
    state: int
    updated_ns: int
    body: bytes


@dataclass(frozen=True, slots=True)
class ContextBinding:
    """The Coral thread that carries one A2A context of a scope."""

    scope: str
    context_id: str
    thread_id: str


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """A ListTasks filter and page position (``after``: last seen ``(updated_ns, id)``)."""

    context_id: str = ""
    state: int = 0
    updated_after_ns: int | None = None
    after: tuple[int, str] | None = None
    limit: int = DEFAULT_LIST_TASKS_PAGE_SIZE


class A2ATaskRecords(Protocol):
    """Storage port for A2A tasks, context threads and push configs (per scope)."""

    async def save_task(self, row: TaskRow) -> None:
        """Insert or replace a task."""

    async def save_batch(
        self, tasks: Sequence[TaskRow], contexts: Sequence[ContextBinding]
    ) -> None:
        """Insert or replace several tasks and context bindings in one transaction, in order."""

    async def get_task(self, scope: str, task_id: str) -> bytes | None:
        """One task of a scope, serialized; ``None`` when absent."""

    async def list_tasks(self, scope: str, query: TaskQuery) -> tuple[list[bytes], int]:
        """A page of tasks (newest update first) and the total matching the filter."""

    async def delete_task(self, scope: str, task_id: str) -> None:
        """Forget a task and its push configs."""

    async def evict(self, finished_before_ns: int, keep: int) -> int:
        """Drop finished tasks older than the cut-off, then the oldest past ``keep`` tasks."""

    async def unfinished(self) -> list[TaskRow]:
        """Every task still SUBMITTED or WORKING whose executor is gone.

        With one node process that is every such task (read at start); with
        replicas, only those of replicas that died.
        """

    async def bind_thread(self, scope: str, context_id: str, thread_id: str) -> None:
        """Remember the Coral thread that carries an A2A context."""

    async def thread_of(self, scope: str, context_id: str) -> str | None:
        """The Coral thread of a context, if one was bound."""

    async def save_push(self, scope: str, task_id: str, config_id: str, body: bytes) -> None:
        """Insert or replace a push-notification config."""

    async def push_configs(self, scope: str | None, task_id: str) -> list[bytes]:
        """A task's push configs (``scope=None``: every owner's, for delivery)."""

    async def delete_push(self, scope: str, task_id: str, config_id: str | None) -> None:
        """Delete one push config (or all of a task's when ``config_id`` is None)."""


class TaskWatch(Protocol):
    """Tells a replica that a task another replica runs may have changed."""

    def watch(self, task_id: str) -> AbstractAsyncContextManager[asyncio.Event]:
        """An event set whenever ``task_id`` may have changed, while the block runs.

        Enter it before reading the task, so no change after the read is missed.
        """
        ...


@dataclass
class InMemoryTaskRecords:
    """The port in memory: the twin used by fast tests."""

    tasks: dict[tuple[str, str], TaskRow] = field(default_factory=dict)
    threads: dict[tuple[str, str], str] = field(default_factory=dict)
    pushes: dict[tuple[str, str, str], bytes] = field(default_factory=dict)

    async def save_task(self, row: TaskRow) -> None:
        """Insert or replace a task."""
        self.tasks[(row.scope, row.task_id)] = row

    async def save_batch(
        self, tasks: Sequence[TaskRow], contexts: Sequence[ContextBinding]
    ) -> None:
        """Insert or replace several tasks and context bindings."""
        for row in tasks:
            self.tasks[(row.scope, row.task_id)] = row
        for binding in contexts:
            self.threads[(binding.scope, binding.context_id)] = binding.thread_id

    async def get_task(self, scope: str, task_id: str) -> bytes | None:
        """One task of a scope, serialized."""
        row = self.tasks.get((scope, task_id))
        return row.body if row else None

    async def list_tasks(self, scope: str, query: TaskQuery) -> tuple[list[bytes], int]:
        """A page of tasks, newest update first, and the filtered total."""
        rows = [r for r in self.tasks.values() if r.scope == scope]
        if query.context_id:
            rows = [r for r in rows if r.context_id == query.context_id]
        if query.state:
            rows = [r for r in rows if r.state == query.state]
        if query.updated_after_ns is not None:
            rows = [r for r in rows if r.updated_ns >= query.updated_after_ns]
        rows.sort(key=lambda r: (r.updated_ns, r.task_id), reverse=True)
        total = len(rows)
        if query.after is not None:
            rows = [r for r in rows if (r.updated_ns, r.task_id) < query.after]
        return [r.body for r in rows[: query.limit]], total

    async def delete_task(self, scope: str, task_id: str) -> None:
        """Forget a task and its push configs."""
        self.tasks.pop((scope, task_id), None)
        for key in [k for k in self.pushes if k[:2] == (scope, task_id)]:
            del self.pushes[key]

    async def evict(self, finished_before_ns: int, keep: int) -> int:
        """Drop old finished tasks, then the oldest beyond ``keep``."""
        doomed = {
            key
            for key, row in self.tasks.items()
            if row.state in TERMINAL_STATES and row.updated_ns < finished_before_ns
        }
        rest = sorted(
            (k for k in self.tasks if k not in doomed), key=lambda k: self.tasks[k].updated_ns
        )
        doomed.update(rest[: max(0, len(rest) - keep)])
        for scope, task_id in doomed:
            await self.delete_task(scope, task_id)
        return len(doomed)

    async def unfinished(self) -> list[TaskRow]:
        """Tasks still SUBMITTED or WORKING."""
        return [r for r in self.tasks.values() if r.state in RUNNING_STATES]

    async def bind_thread(self, scope: str, context_id: str, thread_id: str) -> None:
        """Remember a context's thread."""
        self.threads[(scope, context_id)] = thread_id

    async def thread_of(self, scope: str, context_id: str) -> str | None:
        """A context's thread."""
        return self.threads.get((scope, context_id))

    async def save_push(self, scope: str, task_id: str, config_id: str, body: bytes) -> None:
        """Insert or replace a push config."""
        self.pushes[(scope, task_id, config_id)] = body

    async def push_configs(self, scope: str | None, task_id: str) -> list[bytes]:
        """A task's push configs."""
        return [
            body
            for (s, t, _), body in sorted(self.pushes.items())
            if t == task_id and (scope is None or s == scope)
        ]

    async def delete_push(self, scope: str, task_id: str, config_id: str | None) -> None:
        """Delete push configs."""
        for key in [k for k in self.pushes if k[:2] == (scope, task_id)]:
            if config_id is None or key[2] == config_id:
                del self.pushes[key]


def _updated_ns(task: a2a_pb2.Task) -> int:
    if task.HasField("status") and task.status.HasField("timestamp"):
        return int(task.status.timestamp.ToNanoseconds())
    return time.time_ns()


class ScopedTaskStore(TaskStore):
    """The a2a-sdk ``TaskStore`` over the port, scoped by ``scope_of(context)``."""

    def __init__(self, records: A2ATaskRecords) -> None:
        self.records = records

    async def save(self, task: a2a_pb2.Task, context: ServerCallContext) -> None:
        """Save (or replace) a task in the caller's scope."""
        await self.records.save_task(
            TaskRow(
                scope=scope_of(context),
                task_id=task.id,
                context_id=task.context_id,
                state=int(task.status.state),
                updated_ns=_updated_ns(task),
                body=task.SerializeToString(),
            )
        )

    async def get(self, task_id: str, context: ServerCallContext) -> a2a_pb2.Task | None:
        """The task, if it exists in the caller's scope."""
        body = await self.records.get_task(scope_of(context), task_id)
        if body is None:
            return None
        task = a2a_pb2.Task()
        task.ParseFromString(body)
        return task

    async def list(
        self, params: a2a_pb2.ListTasksRequest, context: ServerCallContext
    ) -> a2a_pb2.ListTasksResponse:
        """A page of the caller's tasks, newest update first.

        Raises:
            InvalidParamsError: unknown status filter or malformed page token.
        """
        if params.status and params.status not in a2a_pb2.TaskState.values():
            raise InvalidParamsError(message=f"unknown task state {params.status}")
        after: tuple[int, str] | None = None
        if params.page_token:
            cursor = decode_list_tasks_cursor(params.page_token)
            if cursor is None:
                raise InvalidParamsError(message="invalid page token")
            after = (cursor.timestamp_ns or 0, cursor.task_id)
        page_size = params.page_size or DEFAULT_LIST_TASKS_PAGE_SIZE
        query = TaskQuery(
            context_id=params.context_id,
            state=int(params.status),
            updated_after_ns=(
                int(params.status_timestamp_after.ToNanoseconds())
                if params.HasField("status_timestamp_after")
                else None
            ),
            after=after,
            limit=page_size + 1,
        )
        bodies, total = await self.records.list_tasks(scope_of(context), query)
        tasks = []
        for body in bodies:
            task = a2a_pb2.Task()
            task.ParseFromString(body)
            tasks.append(task)
        next_token = ""
        if len(tasks) > page_size:
            tasks = tasks[:page_size]
            last = tasks[-1]
            next_token = encode_list_tasks_cursor(
                ListTasksCursor(timestamp_ns=_updated_ns(last), task_id=last.id)
            )
        # page_size is the size of this page (what the TCK checks), at most the asked size.
        return a2a_pb2.ListTasksResponse(
            tasks=tasks, next_page_token=next_token, page_size=len(tasks), total_size=total
        )

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        """Forget a task of the caller's scope."""
        await self.records.delete_task(scope_of(context), task_id)


class ScopedPushConfigs(PushNotificationConfigStore):
    """The a2a-sdk push-config store over the port, scoped like the tasks."""

    def __init__(self, records: A2ATaskRecords) -> None:
        self.records = records

    async def set_info(
        self,
        task_id: str,
        notification_config: a2a_pb2.TaskPushNotificationConfig,
        context: ServerCallContext,
    ) -> a2a_pb2.TaskPushNotificationConfig:
        """Store a normalized copy (id defaults to the task id) and return it."""
        config = normalize_push_notification_config(task_id, notification_config)
        config.tenant = ""
        await self.records.save_push(
            scope_of(context), task_id, config.id, config.SerializeToString()
        )
        return config

    async def get_info(
        self, task_id: str, context: ServerCallContext
    ) -> list[a2a_pb2.TaskPushNotificationConfig]:
        """The caller's configs for a task."""
        return _configs(await self.records.push_configs(scope_of(context), task_id))

    async def get_info_for_dispatch(self, task_id: str) -> list[a2a_pb2.TaskPushNotificationConfig]:
        """Every owner's configs for a task (delivery path)."""
        return _configs(await self.records.push_configs(None, task_id))

    async def delete_info(
        self, task_id: str, context: ServerCallContext, config_id: str | None = None
    ) -> None:
        """Delete one of the caller's configs, or all of them for the task."""
        await self.records.delete_push(scope_of(context), task_id, config_id)


def _configs(bodies: list[bytes]) -> list[a2a_pb2.TaskPushNotificationConfig]:
    configs = []
    for body in bodies:
        config = a2a_pb2.TaskPushNotificationConfig()
        config.ParseFromString(body)
        configs.append(config)
    return configs


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long finished tasks stay readable, and how many tasks are kept at most."""

    finished_for_s: float = 7 * 24 * 3600.0
    max_tasks: int = 100_000

    async def apply(self, records: A2ATaskRecords, now_ns: int | None = None) -> int:
        """Evict what the policy no longer keeps; returns how many tasks went."""
        now = time.time_ns() if now_ns is None else now_ns
        return await records.evict(now - int(self.finished_for_s * 1e9), self.max_tasks)


async def fail_interrupted(records: A2ATaskRecords, now_ns: int | None = None) -> int:
    """Fail every task that was running when the node stopped; returns how many.

    Nothing follows such a task any more (its executor was in the old
    process), so without this a client would poll a WORKING task forever.
    """
    now = time.time_ns() if now_ns is None else now_ns
    count = 0
    for row in await records.unfinished():
        task = a2a_pb2.Task()
        task.ParseFromString(row.body)
        task.status.state = a2a_pb2.TaskState.TASK_STATE_FAILED
        task.status.message.CopyFrom(
            a2a_pb2.Message(
                message_id=f"{task.id}-interrupted",
                role=a2a_pb2.Role.ROLE_AGENT,
                task_id=task.id,
                context_id=task.context_id,
                parts=[a2a_pb2.Part(text=INTERRUPTED_TEXT)],
            )
        )
        task.status.timestamp.FromNanoseconds(now)
        await records.save_task(
            TaskRow(
                scope=row.scope,
                task_id=row.task_id,
                context_id=row.context_id,
                state=int(task.status.state),
                updated_ns=now,
                body=task.SerializeToString(),
            )
        )
        count += 1
    return count
