"""The a2a-sdk request handler, with Coral's one change to blocking SendMessage.

A blocking ``SendMessage`` waits for a final or interrupted state, as the
spec says, unless the agent *accepted* the task for background work
(``a2a.accepted``: WORKING with the ``coral.accepted`` status marker). Then
the call returns the WORKING task at once and the agent completes it later,
while the client polls ``GetTask``, subscribes, or receives pushes. This is
what the SDK does when an executor returns early; here the agent says so
explicitly, in its thread.
"""

from __future__ import annotations

import logging
from typing import cast

from a2a.server.agent_execution.active_task import (
    INTERRUPTED_TASK_STATES,
    TERMINAL_TASK_STATES,
)
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.request_handler import validate_request_params
from a2a.types import a2a_pb2
from a2a.utils.task import apply_history_length
from google.protobuf import json_format

from coral.api.a2a.executor import ACCEPTED_METADATA

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
    """``DefaultRequestHandler`` whose blocking SendMessage also returns on acceptance."""

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
