"""A2A tasks carried out by Coral agents: an a2a-sdk AgentExecutor over Coral threads.

An A2A message for agent X becomes a Coral thread (one per A2A context,
remembered in the task store) made by the node-held ``a2a-gateway`` agent with
X, and the text is posted as a signed message mentioning X. X's messages in
that thread drive the task (see ``REPLY_KINDS``): ``a2a.working`` and
``a2a.artifact`` keep it WORKING (status updates, partial artifacts),
``a2a.accepted`` keeps it WORKING and releases a blocking SendMessage (the
agent finishes in the background; the client polls, subscribes or gets
pushes),
``a2a.input_required``, ``a2a.auth_required``, ``a2a.failed`` and
``a2a.rejected`` move it to that state, and ``a2a.completed`` or a plain reply
completes it with the reply as its artifact. Closing the thread completes it;
cancelling closes it. The task runs on after a blocking call returns
(``returnImmediately``, client timeouts): the executor follows the thread
until a final or interrupted state, or until the agent is silent for
``reply_timeout_s``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from typing import Any

from a2a.helpers.proto_helpers import new_task
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types import a2a_pb2
from a2a.utils.errors import ContentTypeNotSupportedError, InvalidParamsError
from google.protobuf import json_format, struct_pb2

from coral.agents.directory import AgentDirectory
from coral.api.a2a.names import AgentNames
from coral.api.a2a.replies import InboxFanout
from coral.api.a2a.tasks import FRESH_CONTEXT_STATE_KEY, A2ATaskRecords, agent_of, scope_of
from coral.api.mcp.held_agents import GATEWAY_KIND, HeldAgent, HeldAgents
from coral.coordination import events as ev
from coral.coordination.model import InboxEntry
from coral.coordination.service import CoordinationService
from coral.protocol.agent import AgentManifest, AgentRecord
from coral.protocol.errors import CoralError
from coral.protocol.message import DataPart, FilePart, Message, Part, TextPart

log = logging.getLogger("coral.a2a")

WORKING_KIND = "a2a.working"
#: WORKING, and the agent finishes in the background: a blocking SendMessage returns now.
ACCEPTED_KIND = "a2a.accepted"
#: Status-message metadata key that marks an accepted (background) task.
ACCEPTED_METADATA = "coral.accepted"
ARTIFACT_KIND = "a2a.artifact"
INPUT_REQUIRED_KIND = "a2a.input_required"
AUTH_REQUIRED_KIND = "a2a.auth_required"
FAILED_KIND = "a2a.failed"
REJECTED_KIND = "a2a.rejected"
COMPLETED_KIND = "a2a.completed"
#: Data-part key that ties an agent's update to the message it answers (the
#: SDK adds it); updates without it go to the context's newest task.
REPLY_TO_KEY = "a2a.reply_to"
#: What the gateway posts (mentioning the agent) when the A2A client cancels.
CANCELED_KIND = "a2a.canceled"
#: Reply kinds an agent uses to drive its A2A task (any other kind completes it).
REPLY_KINDS = (
    WORKING_KIND,
    ACCEPTED_KIND,
    ARTIFACT_KIND,
    INPUT_REQUIRED_KIND,
    AUTH_REQUIRED_KIND,
    FAILED_KIND,
    REJECTED_KIND,
    COMPLETED_KIND,
)
GATEWAY_NAME = "a2a-gateway"


#: Largest inline ``raw`` part accepted (carried as a ``data:`` URI file part).
MAX_RAW_BYTES = 1024


def coral_parts(message: a2a_pb2.Message, max_bytes: int) -> list[Part]:
    """The A2A message's parts as Coral parts; refuses big raw bytes and oversized content.

    Text stays text, ``data`` becomes a data part, a ``url`` becomes a file
    reference (with its media type and file name) and a small ``raw`` part a
    file reference with a ``data:`` URI.
    """
    parts: list[Part] = []
    size = 0
    for part in message.parts:
        content = part.WhichOneof("content")
        if content == "text":
            parts.append(TextPart(text=part.text))
            size += len(part.text.encode())
        elif content == "data":
            value = json_format.MessageToDict(part.data)
            parts.append(DataPart(data=value))
            size += len(str(value))
        elif content in ("url", "raw"):
            if content == "raw" and len(part.raw) > MAX_RAW_BYTES:
                raise ContentTypeNotSupportedError(
                    message=f"raw parts over {MAX_RAW_BYTES} bytes are not accepted; send a url"
                )
            media_type = part.media_type or "application/octet-stream"
            uri = (
                part.url
                if content == "url"
                else f"data:{media_type};base64,{base64.b64encode(part.raw).decode()}"
            )
            if not uri or len(uri) > 2048:
                raise InvalidParamsError(message="a url part must be 1 to 2048 characters")
            parts.append(FilePart(uri=uri, media_type=media_type, name=part.filename or None))
            size += len(uri)
        else:
            raise ContentTypeNotSupportedError(message="a part needs text, data, url or raw")
    if not parts:
        raise InvalidParamsError(message="the message has no parts")
    if size > max_bytes:
        raise InvalidParamsError(message=f"message content exceeds {max_bytes} bytes")
    return parts


def reply_to(message: Message) -> str | None:
    """The id of the message this update answers, when the agent said so."""
    for part in message.parts:
        if isinstance(part, DataPart) and isinstance(part.data, dict) and REPLY_TO_KEY in part.data:
            return str(part.data[REPLY_TO_KEY])
    return None


def a2a_parts(message: Message) -> list[a2a_pb2.Part]:
    """A Coral message's text and data parts as A2A parts (without the reply marker)."""
    parts: list[a2a_pb2.Part] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            parts.append(a2a_pb2.Part(text=part.text))
        elif isinstance(part, FilePart):
            parts.append(
                a2a_pb2.Part(url=part.uri, media_type=part.media_type, filename=part.name or "")
            )
        elif isinstance(part, DataPart):
            if isinstance(part.data, dict) and set(part.data) == {REPLY_TO_KEY}:
                continue
            value = struct_pb2.Value()
            json_format.ParseDict(part.data, value)
            parts.append(a2a_pb2.Part(data=value))
    return parts


class LazyGateway:
    """The ``a2a-gateway`` agent and its inbox reader, made on first use.

    Registering it lazily keeps nodes that never serve A2A free of an extra
    directory entry.
    """

    def __init__(self, held: HeldAgents, engine: CoordinationService) -> None:
        self.held = held
        self.engine = engine
        self._lock = asyncio.Lock()
        self._ready: tuple[HeldAgent, InboxFanout] | None = None

    async def get(self) -> tuple[HeldAgent, InboxFanout]:
        """The gateway agent and its running inbox reader."""
        async with self._lock:
            if self._ready is None:
                manifest = AgentManifest(
                    name=GATEWAY_NAME,
                    description="Carries A2A requests into Coral threads.",
                    capabilities=(GATEWAY_KIND,),
                    endpoints=("a2a",),
                )
                agent = await self.held.ensure(manifest, GATEWAY_KIND)
                fanout = InboxFanout(self.engine, agent.did)
                await fanout.start()
                self._ready = (agent, fanout)
            return self._ready

    async def stop(self) -> None:
        """Stop the inbox reader, if it was started."""
        if self._ready is not None:
            await self._ready[1].stop()


class CoralAgentExecutor(AgentExecutor):
    """Runs each A2A task as a conversation with one Coral agent."""

    def __init__(
        self,
        held: HeldAgents,
        gateway: LazyGateway,
        directory: AgentDirectory,
        records: A2ATaskRecords,
        *,
        max_content_bytes: int,
        reply_timeout_s: float = 300.0,
    ) -> None:
        self.held = held
        self.gateway = gateway
        self.directory = directory
        self.names = AgentNames(directory)
        self.records = records
        self.max_content_bytes = max_content_bytes
        self.reply_timeout_s = reply_timeout_s

    async def target(self, context: RequestContext) -> AgentRecord:
        """The Coral agent this request is for: URL name, tenant, default agent, or routed."""
        name = agent_of(context.call_context)
        if not name and context.message is not None:
            name = self._routed_name(context.message)
        if not name:
            raise InvalidParamsError(
                message="name the agent: use its card, metadata.agent, or start with @name"
            )
        try:
            record = await self.names.resolve(name)
        except CoralError:
            raise InvalidParamsError(message=f"no agent named {name!r}") from None
        if GATEWAY_KIND in record.manifest.capabilities:
            raise InvalidParamsError(message="the gateway does not talk to itself")
        return record

    @staticmethod
    def _routed_name(message: a2a_pb2.Message) -> str:
        fields: dict[str, Any] = json_format.MessageToDict(message.metadata)
        if isinstance(fields.get("agent"), str):
            return str(fields["agent"])
        for part in message.parts:
            if part.WhichOneof("content") == "text" and part.text.startswith("@"):
                return part.text[1:].split(maxsplit=1)[0] if len(part.text) > 1 else ""
        return ""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Post the message into the context's thread and follow the agent's replies."""
        if context.message is None or not context.task_id or not context.context_id:
            raise InvalidParamsError(message="a message is required")
        record = await self.target(context)
        parts = coral_parts(context.message, self.max_content_bytes)
        agent, fanout = await self.gateway.get()
        if context.current_task is None:
            task = new_task(
                context.task_id,
                context.context_id,
                a2a_pb2.TaskState.TASK_STATE_SUBMITTED,
                history=[context.message],
            )
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        scope = scope_of(context.call_context)
        fresh = context.call_context.state.get(FRESH_CONTEXT_STATE_KEY) == context.context_id
        thread_id = await self._thread_for(agent, scope, context.context_id, record, fresh=fresh)
        with fanout.listen(thread_id) as replies:
            message = self.held.sign(agent, thread=thread_id, parts=parts, mentions=[record.agent])
            await self.held.submit_message(message)
            await updater.start_work()

            def mine(reply: Message) -> bool:
                marker = reply_to(reply)
                if marker is not None:
                    return marker == message.id
                return fanout.is_newest(thread_id, replies)

            await self._follow(replies, record, updater, mine)

    async def _thread_for(
        self, agent: HeldAgent, scope: str, context_id: str, record: AgentRecord, *, fresh: bool
    ) -> str:
        known = None if fresh else await self.records.thread_of(scope, context_id)
        if known is not None:
            try:
                thread = await self.held.gateway.engine.get_thread(agent.did, known)
                if thread.is_open and thread.has_participant(record.agent):
                    return known
            except CoralError:
                pass
        create = self.held.sign(
            agent,
            kind="thread.create",
            parts=[DataPart(data={"name": f"a2a {context_id}", "participants": [record.agent]})],
        )
        await self.held.submit_message(create)
        await self.records.bind_thread(scope, context_id, create.id)
        return create.id

    async def _follow(
        self,
        replies: asyncio.Queue[InboxEntry],
        record: AgentRecord,
        updater: TaskUpdater,
        mine: Callable[[Message], bool],
    ) -> None:
        """Apply the agent's messages to the task until a final or interrupted state.

        The silence deadline restarts with every update, so an agent that keeps
        reporting progress may work for as long as it needs.
        """
        while True:
            try:
                item = await asyncio.wait_for(replies.get(), self.reply_timeout_s)
            except TimeoutError:
                await updater.failed(self._status_text(updater, "the agent did not reply in time"))
                return
            message = item.entry.message
            if item.entry.system:
                if ev.event_name(message) == ev.THREAD_CLOSED:
                    summary = str(ev.event_data(message).get("summary") or "")
                    if summary:
                        await updater.add_artifact([a2a_pb2.Part(text=summary)], name="summary")
                    await updater.complete()
                    return
                continue
            if message.sender != record.agent or not mine(message):
                continue
            if await self._apply(message, updater):
                return

    async def _apply(self, message: Message, updater: TaskUpdater) -> bool:
        """Apply one agent message to the task; True when the task left WORKING."""
        parts = a2a_parts(message)
        kind = message.kind
        if kind == WORKING_KIND:
            status = updater.new_agent_message(parts) if parts else None
            await updater.update_status(a2a_pb2.TaskState.TASK_STATE_WORKING, status)
            return False
        if kind == ACCEPTED_KIND:
            status = updater.new_agent_message(parts, metadata={ACCEPTED_METADATA: True})
            await updater.update_status(a2a_pb2.TaskState.TASK_STATE_WORKING, status)
            return False
        if kind == ARTIFACT_KIND:
            if parts:
                await updater.add_artifact(parts, artifact_id=message.id, name="partial")
            return False
        if kind == INPUT_REQUIRED_KIND:
            await updater.requires_input(updater.new_agent_message(parts))
        elif kind == AUTH_REQUIRED_KIND:
            await updater.requires_auth(updater.new_agent_message(parts))
        elif kind == FAILED_KIND:
            await updater.failed(updater.new_agent_message(parts))
        elif kind == REJECTED_KIND:
            await updater.reject(updater.new_agent_message(parts))
        else:
            if parts:
                await updater.add_artifact(parts, artifact_id=message.id, name="response")
            await updater.complete()
        return True

    @staticmethod
    def _status_text(updater: TaskUpdater, text: str) -> a2a_pb2.Message:
        return updater.new_agent_message([a2a_pb2.Part(text=text)])

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Mark the task canceled and tell the agent in its thread (the thread stays open)."""
        if not context.task_id or not context.context_id:
            raise InvalidParamsError(message="the task to cancel is unknown")
        scope = scope_of(context.call_context)
        thread_id = await self.records.thread_of(scope, context.context_id)
        if thread_id is not None:
            try:
                agent, _ = await self.gateway.get()
                record = await self.target(context)
                await self.held.submit(
                    agent,
                    kind=CANCELED_KIND,
                    thread=thread_id,
                    data={"task_id": context.task_id, "reason": "canceled by the A2A client"},
                    mentions=[record.agent],
                )
            except (CoralError, InvalidParamsError) as exc:
                log.info("telling thread %s of the cancel failed: %s", thread_id, exc)
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()
