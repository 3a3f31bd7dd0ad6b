"""Agent: the base class for writing a Coral agent in a few lines.

```python
class Echo(Agent):
    manifest = AgentManifest(name="echo", capabilities=("chat",))

    async def on_mention(self, message: Incoming) -> str:
        return f"echo: {message.text}"

asyncio.run(Echo("http://127.0.0.1:7421", key_file="echo.key").run())
```

``run()`` registers the agent, then waits for mentions and answers each in
its thread, mentioning the sender. The inbox cursor is saved next to the key
file after each handled entry, so a restarted agent resumes where it stopped
and never handles an entry twice or misses one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coral.keys import load_or_create_identity
from coral.protocol.agent import AgentManifest, AgentRecord
from coral.protocol.identity import Identity
from coral.protocol.message import Message, from_wire
from coral_sdk.client import CoralApiError, CoralClient

log = logging.getLogger("coral_sdk.agent")

Reply = str | dict[str, Any] | list[Any] | None


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
    def from_inbox(cls, item: dict[str, Any]) -> Incoming:
        entry = item["entry"]
        return cls(
            message=from_wire(entry["message"]),
            thread_id=entry["thread_id"],
            seq=entry["seq"],
            cursor=item["cursor"],
            mentioned=item["mentioned"],
            system=entry["system"],
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

    async def on_mention(self, message: Incoming) -> Reply:
        """Answer a message that mentions this agent; the return value is the reply."""
        return None

    async def on_message(self, message: Incoming) -> Reply:
        """Called for every delivered entry when ``listen == "message"``."""
        if message.mentioned:
            return await self.on_mention(message)
        return None

    # -- life cycle ----------------------------------------------------------

    async def register(self) -> AgentRecord:
        """Register (or refresh) this agent's signed manifest with its node."""
        self.record = await self.client.register(self.manifest)
        return self.record

    async def reply(self, to: Incoming, reply: Reply) -> dict[str, Any]:
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
                for item in result["entries"]:
                    await semaphore.acquire()
                    self._dispatched.append(item["cursor"])
                    task = asyncio.create_task(self._handle(Incoming.from_inbox(item), semaphore))
                    self._handlers.add(task)
                    task.add_done_callback(self._handlers.discard)
                self.wait_cursor = result["cursor"]
        finally:
            if self._handlers:
                await asyncio.gather(*self._handlers, return_exceptions=True)
            await self.client.close()

    async def _wait_or_stop(self) -> dict[str, Any] | None:
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
            handler: Callable[[Incoming], Awaitable[Reply]] = (
                self.on_message if self.listen == "message" else self.on_mention
            )
            reply = await handler(incoming)
            if reply is not None:
                await self.reply(incoming, reply)
        except Exception:
            log.exception("%s: handler failed for %s", self.manifest.name, incoming.message.id)
        finally:
            semaphore.release()
            self._finish(incoming.cursor)

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
