"""A2A tasks carried out by Coral agents: an a2a-sdk AgentExecutor over Coral threads.

An A2A message for agent X becomes a Coral thread (one per A2A context) made by
the node-held ``a2a-gateway`` agent with X, and the text is posted as a signed
message mentioning X. X's reply becomes the task's artifact and completes it;
a reply of kind ``a2a.input_required`` (or ``a2a.failed``) moves the task to
that state instead; closing the thread completes it; cancelling closes it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from a2a.helpers.proto_helpers import new_task
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types import a2a_pb2
from a2a.utils.errors import ContentTypeNotSupportedError, InvalidParamsError
from google.protobuf import json_format, struct_pb2

from coral.agents.directory import AgentDirectory
from coral.api.a2a.replies import InboxFanout
from coral.api.mcp.held_agents import GATEWAY_KIND, HeldAgent, HeldAgents
from coral.coordination import events as ev
from coral.coordination.model import InboxEntry
from coral.coordination.service import CoordinationService
from coral.protocol.agent import AgentManifest, AgentRecord
from coral.protocol.errors import CoralError
from coral.protocol.message import DataPart, Message, Part, TextPart

log = logging.getLogger("coral.a2a")

INPUT_REQUIRED_KIND = "a2a.input_required"
FAILED_KIND = "a2a.failed"
#: State key where the HTTP adapters put the agent named by the URL.
AGENT_STATE_KEY = "coral.agent_name"
GATEWAY_NAME = "a2a-gateway"


def coral_parts(message: a2a_pb2.Message, max_bytes: int) -> list[Part]:
    """The A2A message's parts as Coral parts; refuses raw bytes and oversized content."""
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
        elif content == "url":
            parts.append(TextPart(text=part.url))
            size += len(part.url)
        else:
            raise ContentTypeNotSupportedError(message="only text, data and url parts are accepted")
    if not parts:
        raise InvalidParamsError(message="the message has no parts")
    if size > max_bytes:
        raise InvalidParamsError(message=f"message content exceeds {max_bytes} bytes")
    return parts


def a2a_parts(message: Message) -> list[a2a_pb2.Part]:
    """A Coral message's text and data parts as A2A parts."""
    parts: list[a2a_pb2.Part] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            parts.append(a2a_pb2.Part(text=part.text))
        elif isinstance(part, DataPart):
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
        *,
        max_content_bytes: int,
        reply_timeout_s: float = 120.0,
    ) -> None:
        self.held = held
        self.gateway = gateway
        self.directory = directory
        self.max_content_bytes = max_content_bytes
        self.reply_timeout_s = reply_timeout_s
        self._threads: dict[str, str] = {}  # A2A context id -> Coral thread id

    async def target(self, context: RequestContext) -> AgentRecord:
        """The Coral agent this request is for: tenant, URL, or the router's choice."""
        name = context.tenant or context.call_context.state.get(AGENT_STATE_KEY, "")
        if not name and context.message is not None:
            name = self._routed_name(context.message)
        if not name:
            raise InvalidParamsError(
                message="name the agent: use its card, metadata.agent, or start with @name"
            )
        try:
            record = await self.directory.resolve(name)
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
        assert context.message is not None and context.task_id and context.context_id
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
        thread_id = await self._thread_for(agent, context.context_id, record)
        with fanout.listen(thread_id) as replies:
            message = self.held.sign(agent, thread=thread_id, parts=parts, mentions=[record.agent])
            await self.held.submit_message(message)
            await updater.start_work()
            await self._follow(replies, record, updater)

    async def _thread_for(self, agent: HeldAgent, context_id: str, record: AgentRecord) -> str:
        known = self._threads.get(context_id)
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
        self._threads[context_id] = create.id
        return create.id

    async def _follow(
        self, replies: asyncio.Queue[InboxEntry], record: AgentRecord, updater: TaskUpdater
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reply_timeout_s
        while True:
            try:
                item = await asyncio.wait_for(replies.get(), max(0.0, deadline - loop.time()))
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
            if message.sender != record.agent:
                continue
            parts = a2a_parts(message)
            if message.kind == INPUT_REQUIRED_KIND:
                await updater.requires_input(updater.new_agent_message(parts))
                return
            if message.kind == FAILED_KIND:
                await updater.failed(updater.new_agent_message(parts))
                return
            await updater.add_artifact(parts, name="response")
            await updater.complete()
            return

    @staticmethod
    def _status_text(updater: TaskUpdater, text: str) -> a2a_pb2.Message:
        return updater.new_agent_message([a2a_pb2.Part(text=text)])

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Close the context's thread and mark the task canceled."""
        thread_id = self._threads.pop(context.context_id or "", None)
        if thread_id is not None:
            try:
                agent, _ = await self.gateway.get()
                await self.held.submit(
                    agent,
                    kind="thread.close",
                    thread=thread_id,
                    data={"summary": "canceled by the A2A client"},
                )
            except CoralError as exc:
                log.info("closing thread %s on cancel failed: %s", thread_id, exc.detail)
        assert context.task_id and context.context_id
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()
