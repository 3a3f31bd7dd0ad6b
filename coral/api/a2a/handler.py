"""The a2a-sdk request handler, with Coral's one change to blocking SendMessage.

A blocking ``SendMessage`` waits for a final or interrupted state, as the
spec says, unless the agent *accepted* the task for background work
(``a2a.accepted``: WORKING with the ``coral.accepted`` status marker). Then
the call returns the WORKING task at once and the agent completes it later,
while the client polls ``GetTask``, subscribes, or receives pushes. This is
what the SDK does when an executor returns early; here the agent says so
explicitly, in its thread.

With replicas (a ``TaskWatch`` given), ``SubscribeToTask`` for a task that
another replica runs streams that task's stored snapshots: each write the
running replica commits wakes the watch, and the task is re-read and sent
when it changed, until it is final or interrupted.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any, cast

from a2a.server.agent_execution.active_task import (
    INTERRUPTED_TASK_STATES,
    TERMINAL_TASK_STATES,
)
from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue import Event
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.request_handler import validate_request_params
from a2a.server.tasks import TaskStore
from a2a.types import a2a_pb2
from a2a.utils.errors import TaskNotFoundError, UnsupportedOperationError
from a2a.utils.task import apply_history_length
from google.protobuf import json_format

from coral.api.a2a.executor import ACCEPTED_METADATA
from coral.api.a2a.tasks import TaskWatch

log = logging.getLogger("coral.a2a")


def accepted(task: a2a_pb2.Task) -> bool:
    """True when the agent accepted ``task`` for background work."""
    if task.status.state != a2a_pb2.TaskState.TASK_STATE_WORKING:
        return False
    if not task.status.HasField("message"):
        return False
    metadata = json_format.MessageToDict(task.status.message.metadata)
    return bool(metadata.get(ACCEPTED_METADATA))


class CoralRequestHandler(DefaultRequestHandler):
    """``DefaultRequestHandler`` whose blocking SendMessage also returns on acceptance,
    and whose SubscribeToTask follows tasks other replicas run (``watch``)."""

    def __init__(self, *args: Any, watch: TaskWatch | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watch = watch

    async def on_subscribe_to_task(
        self, params: a2a_pb2.SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event, None]:
        """Stream a task: from its running executor here, else from another replica's writes.

        Raises:
            TaskNotFoundError: no such task in the caller's scope.
            UnsupportedOperationError: the task is already final.
        """
        local = await self._active_task_registry.get(params.id)
        if self.watch is None or local is not None:
            async for event in super().on_subscribe_to_task(params, context):
                yield event
            return
        async for event in self._follow_remote(params, context, self.watch):
            yield event

    @validate_request_params
    async def _follow_remote(
        self,
        params: a2a_pb2.SubscribeToTaskRequest,
        context: ServerCallContext,
        watch: TaskWatch,
    ) -> AsyncGenerator[Event, None]:
        store = self.task_store
        assert isinstance(store, TaskStore)  # the front door's ScopedTaskStore
        async with watch.watch(params.id) as changed:
            task = await store.get(params.id, context)
            if task is None:
                raise TaskNotFoundError
            if task.status.state in TERMINAL_TASK_STATES:
                state = a2a_pb2.TaskState.Name(task.status.state)
                raise UnsupportedOperationError(
                    message=f"Task {task.id} is in terminal state: {state}"
                )
            yield task
            while task.status.state not in TERMINAL_TASK_STATES | INTERRUPTED_TASK_STATES:
                await changed.wait()
                changed.clear()
                current = await store.get(params.id, context)
                if current is None:
                    return  # evicted or deleted
                if current != task:
                    task = current
                    yield task

    @validate_request_params
    async def on_message_send(
        self, params: a2a_pb2.SendMessageRequest, context: ServerCallContext
    ) -> a2a_pb2.Message | a2a_pb2.Task:
        """Run the message; return when final, interrupted, accepted, or at once if asked."""
        active_task, request_context = await self._setup_active_task(params, context)
        task_id = cast("str", request_context.task_id)
        result: a2a_pb2.Message | a2a_pb2.Task | None = None
        wait_for = TERMINAL_TASK_STATES | INTERRUPTED_TASK_STATES
        async for event in active_task.subscribe(
            request=request_context,
            include_initial_task=False,
            replace_status_update_with_task=True,
        ):
            if isinstance(event, a2a_pb2.Task) and (
                params.configuration.return_immediately
                or event.status.state in wait_for
                or accepted(event)
            ):
                self._validate_task_id_match(task_id, event.id)
                result = event
                # A FAILED task may be followed by the producer's exception.
                if (
                    params.configuration.return_immediately
                    or event.status.state != a2a_pb2.TaskState.TASK_STATE_FAILED
                ):
                    break
            if isinstance(event, a2a_pb2.Message):
                result = event
        if result is None:
            result = await active_task.get_task()
        if isinstance(result, a2a_pb2.Task):
            result = apply_history_length(result, params.configuration)
        return result
