"""Agent: the base class for writing a Coral agent in a few lines.

```python
class Echo(Agent):
    manifest = AgentManifest(name="echo", capabilities=("chat",))

    async def on_mention(self, message: Incoming) -> str:
        return f"echo: {message.text}"

asyncio.run(Echo("http://127.0.0.1:7421", key_file="echo.key").run())
```

``run()`` registers the agent, then waits for mentions and answers each in
its thread, mentioning the sender.

Long-running work (an A2A task that stays ``WORKING``): make ``on_mention``
an async generator of ``TaskUpdate`` values. Each update is a message in the
thread (kinds ``a2a.working``, ``a2a.artifact``, ``a2a.input_required``, ...)
that the node's A2A front door maps to the task's state; when the generator
ends without a final update the task completes. ``self.task_for(message)`` gives
the same calls as a handle, to finish the work later from anywhere::

    async def on_mention(self, message: Incoming) -> Updates:
        yield TaskUpdate.working("fetching")
        yield TaskUpdate.artifact("first half")
        yield TaskUpdate.complete("all done") The inbox cursor is saved next to the key
file after each handled entry, so a restarted agent resumes where it stopped
and never handles an entry twice or misses one.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coral.agents.keyfile import load_or_create_identity
from coral.coordination.model import InboxEntry, ThreadEntry, WaitResult
from coral.protocol.agent import AgentManifest, AgentRecord
from coral.protocol.identity import Identity
from coral.protocol.message import DataPart, Message, Part, TextPart
from coral_sdk.client import CoralApiError, CoralClient
from coral_sdk.types import Forwarded

log = logging.getLogger("coral_sdk.agent")

Reply = str | dict[str, Any] | list[Any] | None


@dataclass(frozen=True)
class TaskUpdate:
    """One step of a long-running task, posted to the thread as a message of ``kind``.

    ``working`` and ``artifact`` keep the A2A task working; ``complete``,
    ``failed``, ``rejected``, ``input_required`` and ``auth_required`` end or
    interrupt it.
    """

    kind: str
    text: str | None = None
    data: Any = None

    @property
    def final(self) -> bool:
        """True when this update ends or interrupts the task."""
        return self.kind not in ("a2a.working", "a2a.accepted", "a2a.artifact")

    @classmethod
    def working(cls, text: str | None = None, data: Any = None) -> TaskUpdate:
        """Progress: the task stays WORKING with this status message."""
        return cls("a2a.working", text, data)

    @classmethod
    def accepted(cls, text: str | None = None, data: Any = None) -> TaskUpdate:
        """Accept the task for background work: it stays WORKING, a blocking call returns now."""
        return cls("a2a.accepted", text, data)

    @classmethod
    def artifact(cls, text: str | None = None, data: Any = None) -> TaskUpdate:
        """A partial result: added to the task's artifacts, the task stays WORKING."""
        return cls("a2a.artifact", text, data)

    @classmethod
    def complete(cls, text: str | None = None, data: Any = None) -> TaskUpdate:
        """The final result: the task is COMPLETED (with this as its last artifact)."""
        return cls("a2a.completed", text, data)

    @classmethod
    def input_required(cls, text: str, data: Any = None) -> TaskUpdate:
        """Ask back: the task waits in INPUT_REQUIRED for the client's next message."""
        return cls("a2a.input_required", text, data)

    @classmethod
    def auth_required(cls, text: str, data: Any = None) -> TaskUpdate:
        """The task waits in AUTH_REQUIRED."""
        return cls("a2a.auth_required", text, data)

    @classmethod
    def failed(cls, text: str, data: Any = None) -> TaskUpdate:
        """The task FAILED, with this reason."""
        return cls("a2a.failed", text, data)

    @classmethod
    def rejected(cls, text: str, data: Any = None) -> TaskUpdate:
        """The agent REJECTED the task."""
        return cls("a2a.rejected", text, data)


#: What a long-running ``on_mention`` yields: updates, or plain values (partial artifacts).
Updates = AsyncIterator[TaskUpdate | str | dict[str, Any] | list[Any]]
Handled = Awaitable[Reply] | Updates


class TaskHandle:
    """Posts task updates for one incoming message into its thread, mentioning the sender."""

    def __init__(self, client: CoralClient, incoming: Incoming) -> None:
        self.client = client
        self.incoming = incoming

    async def post(self, update: TaskUpdate) -> ThreadEntry | Forwarded:
        """Post one update (tied to the message it answers); returns the stored entry."""
        parts: list[Part] = []
        if update.text is not None:
            parts.append(TextPart(text=update.text))
        if update.data is not None:
            parts.append(DataPart(data=update.data))
        parts.append(DataPart(data={"a2a.reply_to": self.incoming.message.id}))
        return await self.client.send(
            self.incoming.thread_id,
            kind=update.kind,
            parts=parts,
            mentions=[self.incoming.sender],
        )

    async def working(self, text: str | None = None, data: Any = None) -> None:
        """Report progress (task stays WORKING)."""
        await self.post(TaskUpdate.working(text, data))

    async def accepted(self, text: str | None = None, data: Any = None) -> None:
        """Accept for background work (task stays WORKING; a blocking call returns)."""
        await self.post(TaskUpdate.accepted(text, data))

    async def artifact(self, text: str | None = None, data: Any = None) -> None:
        """Add a partial result (task stays WORKING)."""
        await self.post(TaskUpdate.artifact(text, data))

    async def complete(self, text: str | None = None, data: Any = None) -> None:
        """Complete the task."""
        await self.post(TaskUpdate.complete(text, data))

    async def input_required(self, text: str, data: Any = None) -> None:
        """Ask the client for more input."""
        await self.post(TaskUpdate.input_required(text, data))

    async def failed(self, text: str, data: Any = None) -> None:
        """Fail the task."""
        await self.post(TaskUpdate.failed(text, data))


@dataclass(frozen=True)
class Incoming:
    """A message delivered to this agent, with its thread position and inbox cursor."""

    message: Message
    thread_id: str
    seq: int
    cursor: int
    mentioned: bool
    system: bool

    @property
    def text(self) -> str:
        return self.message.text()

    @property
    def data(self) -> list[Any]:
        return self.message.data()

    @property
    def sender(self) -> str:
        return self.message.sender

    @classmethod
    def from_inbox(cls, item: InboxEntry) -> Incoming:
        """The delivered entry ``item`` as the agent's handler sees it."""
        entry = item.entry
        return cls(
            message=entry.message,
            thread_id=entry.thread_id,
            seq=entry.seq,
            cursor=item.cursor,
            mentioned=item.mentioned,
            system=entry.system,
        )


class Agent:
    """Subclass and override ``on_mention`` (and optionally ``on_message``)."""

    manifest: AgentManifest = AgentManifest(name="agent")
    #: What to wait for: "mention" (default) or "message" (every thread message).
    listen: str = "mention"
    #: How many messages may be handled at once.
    concurrency: int = 8

    def __init__(
        self,
        node_url: str,
        *,
        key_file: str | Path | None = None,
        identity: Identity | None = None,
        manifest: AgentManifest | None = None,
    ) -> None:
        if identity is None:
            if key_file is None:
                raise ValueError("give the agent a key_file (kept by you) or an identity")
            identity, _ = load_or_create_identity(Path(key_file))
        self.identity = identity
        self.key_file = Path(key_file) if key_file is not None else None
        if manifest is not None:
            self.manifest = manifest
        self.client = CoralClient(node_url, identity)
        self.record: AgentRecord | None = None
        self.cursor = self._load_cursor()
        self.wait_cursor = self.cursor
        self._stopping = asyncio.Event()
        #: Set once ``run()`` has registered the agent with its node.
        self.ready = asyncio.Event()
        self._handlers: set[asyncio.Task[None]] = set()
        # Cursors handed to handlers, in order, and those finished: the saved
        # cursor only moves past an entry once it and all before it are done.
        self._dispatched: list[int] = []
        self._finished: set[int] = set()

    @property
    def did(self) -> str:
        return self.identity.did

    # -- override these ----------------------------------------------------

    def on_mention(self, message: Incoming) -> Handled:
        """Answer a message that mentions this agent.

        Write it as ``async def`` returning the reply (posted for you), or as
        an async generator of ``TaskUpdate`` values for long-running work.
        """
        return _no_reply()

    def on_message(self, message: Incoming) -> Handled:
        """Called for every delivered entry when ``listen == "message"``."""
        if message.mentioned:
            return self.on_mention(message)
        return _no_reply()

    def task_for(self, message: Incoming) -> TaskHandle:
        """A handle that posts task updates for ``message`` (also after the handler returned)."""
        return TaskHandle(self.client, message)

    # -- life cycle ----------------------------------------------------------

    async def register(self) -> AgentRecord:
        """Register (or refresh) this agent's signed manifest with its node."""
        self.record = await self.client.register(self.manifest)
        return self.record

    async def reply(self, to: Incoming, reply: Reply) -> ThreadEntry | Forwarded:
        """Post ``reply`` to the sender's thread, mentioning the sender."""
        text = reply if isinstance(reply, str) else None
        data = None if isinstance(reply, str) else reply
        return await self.client.send(to.thread_id, text, data=data, mentions=[to.sender])

    async def run(self) -> None:
        """Register, then handle inbox entries until ``stop()``; resumes from the saved cursor.

        Raises:
            NodeUnreachable: no node answers at ``node_url`` when registering (later
                outages are retried).
            CoralApiError: the node refused the registration.
        """
        try:
            await self.register()
        except BaseException:
            await self.client.close()
            raise
        self.ready.set()
        semaphore = asyncio.Semaphore(self.concurrency)
        try:
            while not self._stopping.is_set():
                try:
                    result = await self._wait_or_stop()
                except (CoralApiError, OSError) as exc:
                    log.warning("%s: wait failed (%s); retrying", self.manifest.name, exc)
                    await asyncio.sleep(0.5)
                    continue
                if result is None:
                    break
                for item in result.entries:
                    await semaphore.acquire()
                    self._dispatched.append(item.cursor)
                    task = asyncio.create_task(self._handle(Incoming.from_inbox(item), semaphore))
                    self._handlers.add(task)
                    task.add_done_callback(self._handlers.discard)
                self.wait_cursor = result.cursor
        finally:
            if self._handlers:
                await asyncio.gather(*self._handlers, return_exceptions=True)
            await self.client.close()

    async def _wait_or_stop(self) -> WaitResult | None:
        wait = asyncio.create_task(
            self.client.wait(self.listen, after=self.wait_cursor, timeout_ms=20_000)
        )
        stop = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({wait, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Also when run() itself is cancelled: no child task outlives this
            # call, and each one's outcome is retrieved (no "Task exception
            # was never retrieved" once the client closes under it).
            for task in (wait, stop):
                task.cancel()
            await asyncio.gather(wait, stop, return_exceptions=True)
        if wait.cancelled():
            return None  # stop() was called first
        return wait.result()

    async def _handle(self, incoming: Incoming, semaphore: asyncio.Semaphore) -> None:
        try:
            if incoming.system or incoming.sender == self.did:
                return
            handler: Callable[[Incoming], Handled] = (
                self.on_message if self.listen == "message" else self.on_mention
            )
            handled = handler(incoming)
            if inspect.isasyncgen(handled) or isinstance(handled, AsyncIterator):
                await self._post_updates(incoming, handled)
            else:
                reply = await handled
                if reply is not None:
                    await self.reply(incoming, reply)
        except Exception:
            log.exception("%s: handler failed for %s", self.manifest.name, incoming.message.id)
        finally:
            semaphore.release()
            self._finish(incoming.cursor)

    async def _post_updates(self, incoming: Incoming, updates: Updates) -> None:
        """Post each yielded update; a generator that ends unfinished completes the task."""
        handle = self.task_for(incoming)
        final = False
        try:
            async for item in updates:
                update = item if isinstance(item, TaskUpdate) else _as_artifact(item)
                await handle.post(update)
                if update.final:
                    final = True
                    break
        except Exception as exc:
            log.exception("%s: task updates failed for %s", self.manifest.name, incoming.message.id)
            await handle.post(TaskUpdate.failed(f"the agent failed: {type(exc).__name__}"))
            return
        finally:
            aclose = getattr(updates, "aclose", None)
            if aclose is not None:
                await aclose()
        if not final:
            await handle.post(TaskUpdate.complete())

    def _finish(self, cursor: int) -> None:
        self._finished.add(cursor)
        advanced = False
        while self._dispatched and self._dispatched[0] in self._finished:
            self.cursor = self._dispatched.pop(0)
            self._finished.discard(self.cursor)
            advanced = True
        if advanced:
            self._save_cursor()

    def stop(self) -> None:
        """Ask ``run()`` to finish after in-flight handlers complete."""
        self._stopping.set()

    # -- cursor persistence ------------------------------------------------

    def _cursor_path(self) -> Path | None:
        return (
            self.key_file.with_suffix(self.key_file.suffix + ".cursor") if self.key_file else None
        )

    def _load_cursor(self) -> int:
        path = self._cursor_path()
        try:
            return int(path.read_text()) if path else 0
        except (FileNotFoundError, ValueError):
            return 0

    def _save_cursor(self) -> None:
        path = self._cursor_path()
        if path is not None:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(str(self.cursor))
            tmp.replace(path)


async def _no_reply() -> Reply:
    return None


def _as_artifact(value: str | dict[str, Any] | list[Any]) -> TaskUpdate:
    if isinstance(value, str):
        return TaskUpdate.artifact(value)
    return TaskUpdate.artifact(data=value)
