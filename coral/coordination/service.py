"""The coordination service: thread operations, strategies, and waiting.

It is async but holds no I/O of its own: storage is a ``CoordinationStore``,
time is an injected ``clock`` (Unix ms), and strategies come from a
``StrategyRegistry``. Every operation reads a thread, decides everything in
memory (rules, strategy, sequence numbers, inbox recipients) and hands the
store one ``ThreadWrite`` to apply atomically; waiters are woken after it lands.
Messages given to ``send_message`` must already be signature-verified.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Mapping
from typing import Any

from coral.coordination import events as ev
from coral.coordination import rules
from coral.coordination.errors import (
    ConcurrentUpdate,
    DuplicateMessage,
    InvalidStrategyOptions,
    InvalidWait,
    ThreadNotFound,
    ThreadRequired,
)
from coral.coordination.model import (
    WAIT_KINDS,
    HistoryPage,
    InboxEntry,
    Thread,
    ThreadEntry,
    WaitKind,
    WaitResult,
)
from coral.coordination.ports import CoordinationStore, HistoryGrant, PendingEntry, ThreadWrite
from coral.coordination.registry import DEFAULT_STRATEGY, StrategyRegistry
from coral.coordination.strategy import (
    Decision,
    EventHook,
    SystemEvent,
    ThreadView,
    TimedStrategy,
)
from coral.coordination.waiting import InboxListener, InboxSignals, KeyedLocks
from coral.protocol.canonical import canonical_json
from coral.protocol.errors import CoralError, Expired, InvalidMessage
from coral.protocol.message import Message, new_message_id

#: coral-server caps a wait at one minute; so do we.
MAX_WAIT_MS = 60_000
MAX_PAGE = 1000

#: How many times a post is decided and written before ConcurrentUpdate reaches the caller.
#: Only node processes sharing one database race for a thread, and each lost attempt means
#: another post landed in between, so a burst of N posts to a thread needs at most N attempts.
POST_ATTEMPTS = 32


class _Retry(Exception):
    """The thread moved between our read and our write: decide again."""


#: Told of each committed write: the thread as written and the entries appended.
CommitListener = Callable[[Thread, tuple[ThreadEntry, ...]], None]

log = logging.getLogger(__name__)


class CoordinationService:
    """Sessions of threads where agents post, take turns, and wait for each other.

    Every operation that changes a thread holds that thread's lock (a
    ``KeyedLocks`` entry) from its read to its write, so writes to one thread
    never interleave. Errors are typed ``CoralError`` subclasses; any call that
    reads or writes the store may also raise ``StorageUnavailable`` when the
    database cannot be reached or written (disk full, read-only, locked).

    Cancelling a changing call releases the thread's lock. Cancelled before
    the write reaches the store, nothing is written. Cancelled while the store
    applies it, the write may still commit (the SQLite store does not withdraw
    a write it has queued); if it does, waiting agents are not woken for it and
    commit listeners are not told, so waits find it only on a later read of the
    store. An event hook that already ran keeps its effect either way (the
    ledger's award hook reserves under the award's id, so a retry reserves once).
    """

    def __init__(
        self,
        store: CoordinationStore,
        *,
        node_id: str,
        clock: Callable[[], int],
        strategies: StrategyRegistry | None = None,
        max_waits_per_agent: int = 8,
        max_waits_total: int | None = None,
        sign_event: ev.EventSigner | None = None,
        event_hooks: Mapping[str, EventHook] | None = None,
    ) -> None:
        rules.check_agent_id(node_id)
        self.store = store
        self.node_id = node_id
        self.clock = clock
        self.strategies = strategies if strategies is not None else StrategyRegistry.default()
        self.signals = InboxSignals(max_waits_per_agent, max_waits_total=max_waits_total)
        self._sign_event = sign_event
        self._event_hooks = dict(event_hooks or {})
        self._locks = KeyedLocks()
        self._commit_listeners: list[CommitListener] = []
        # Set whenever some thread's wake time changes, so run_timers re-plans its sleep.
        self._wakes_changed = asyncio.Event()

    def add_event_hook(self, name: str, hook: EventHook) -> None:
        """Run ``hook`` on every ``name`` event from now on (replaces an earlier one)."""
        # Subsystems built after this service (the ledger) attach their hooks here.
        self._event_hooks[name] = hook

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener(thread, entries)`` after every write lands (sessions, live feeds).

        Listeners run synchronously in the writer's task, so they must be quick
        and must not raise; a failing listener is logged and skipped.
        """
        self._commit_listeners.append(listener)

    async def close_session(self, session_id: str, members: Iterable[str], summary: str) -> int:
        """Close every open thread of ``session_id`` that ``members`` are in; returns how many.

        A coral-server session ends its threads with it; this records that end
        in each thread's log, signed by the node. Threads closed before a
        failure stay closed.

        Raises:
            ThreadClosed: a thread was closed by someone else meanwhile.
            StorageUnavailable: the store could not be read or written.

        Cancellation: threads closed so far stay closed; see ``force_close``.
        """
        closed = 0
        seen: set[str] = set()
        for member in members:
            for thread in await self.store.list_threads(member, session_id):
                if thread.id in seen or not thread.is_open:
                    continue
                seen.add(thread.id)
                await self.force_close(thread.id, summary)
                closed += 1
        return closed

    # -- thread lifecycle -------------------------------------------------

    async def create_thread(
        self,
        creator: str,
        name: str,
        participants: Iterable[str],
        strategy: str = DEFAULT_STRATEGY,
        strategy_options: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        thread_id: str | None = None,
    ) -> Thread:
        """Create an open thread (the creator joins first) run by ``strategy``.

        Raises:
            UnknownStrategy: no strategy is registered under ``strategy``.
            InvalidStrategyOptions: the strategy refused ``strategy_options``, or
                they are not JSON.
            InvalidThread: a bad thread or session id, name, creator or
                participant id, or too many participants.
            ThreadExists: ``thread_id`` is taken.
            CoralError: the strategy's refusal of the new thread, or an event
                hook's (nothing is written).

        Cancellation: releases the new thread's lock; see the class docstring
        for a write the store already took.
        """
        now = self.clock()
        chosen = self.strategies.get(strategy)
        options = chosen.validate_options(dict(strategy_options or {}))
        try:
            canonical_json(options)
        except CoralError as exc:
            raise InvalidStrategyOptions(f"options must be JSON: {exc.detail}") from None
        thread = rules.new_thread(
            thread_id=thread_id or new_message_id(now),
            name=name,
            creator=creator,
            participants=participants,
            strategy=strategy,
            strategy_options=options,
            created_at=now,
            session_id=session_id,
        )
        decision = _accepted(chosen.on_thread_created(ThreadView.of(thread, now)))
        created = SystemEvent(
            ev.THREAD_CREATED,
            {
                "name": name,
                "creator": creator,
                "participants": list(thread.participants),
                "strategy": strategy,
                "strategy_options": options,
                "session_id": session_id,
            },
        )
        async with self._locks.hold(thread.id):
            return await self._commit(thread, None, now, [created], decision)

    async def add_participant(self, requester: str, thread_id: str, agent: str) -> Thread:
        """Add ``agent``; it receives the whole history so far in its inbox.

        Raises:
            ThreadNotFound: no thread ``thread_id``.
            NotParticipant: ``requester`` is not in the thread.
            ThreadClosed: the thread is closed.
            InvalidThread: ``agent`` is not a did:key, or the thread is full.
            AlreadyParticipant: ``agent`` is already in the thread.
            ConcurrentUpdate: the thread changed under the write; retry.

        Cancellation: releases the thread's lock; see the class docstring.
        """
        async with self._locks.hold(thread_id):
            thread = await self._load(thread_id)
            joined = rules.with_participant_added(thread, requester, agent)
            added = SystemEvent(ev.PARTICIPANT_ADDED, {"agent": agent, "by": requester})
            grant = HistoryGrant(agent, thread.last_seq)
            return await self._commit(joined, thread, self.clock(), [added], grants=(grant,))

    async def remove_participant(self, requester: str, thread_id: str, agent: str) -> Thread:
        """Remove ``agent`` (the requester must be a participant); it is told it left.

        Raises:
            ThreadNotFound: no thread ``thread_id``.
            NotParticipant: ``requester`` is not in the thread.
            ThreadClosed: the thread is closed.
            AgentNotFound: ``agent`` is not in the thread.
            ConcurrentUpdate: the thread changed under the write; retry.

        Cancellation: releases the thread's lock; see the class docstring.
        """
        async with self._locks.hold(thread_id):
            thread = await self._load(thread_id)
            left = rules.with_participant_removed(thread, requester, agent)
            removed = SystemEvent(ev.PARTICIPANT_REMOVED, {"agent": agent, "by": requester})
            return await self._commit(
                left, thread, self.clock(), [removed], audience=thread.participants
            )

    async def close_thread(self, requester: str, thread_id: str, summary: str) -> Thread:
        """Close the thread with a summary (its conclusion); nothing more may be posted.

        Raises:
            ThreadNotFound: no thread ``thread_id``.
            NotParticipant: ``requester`` is not in the thread.
            ThreadClosed: the thread is already closed.
            InvalidThread: the summary is too long.
            ConcurrentUpdate: the thread changed under the write; retry.

        Cancellation: releases the thread's lock; see the class docstring.
        """
        async with self._locks.hold(thread_id):
            thread = await self._load(thread_id)
            now = self.clock()
            done = dataclasses.replace(rules.closed(thread, requester, summary, now), wake_at=None)
            closed = SystemEvent(ev.THREAD_CLOSED, {"summary": summary, "by": requester})
            return await self._commit(done, thread, now, [closed])

    async def force_close(self, thread_id: str, summary: str) -> Thread:
        """Close a thread on the node operator's authority (recorded as by the node).

        Raises:
            ThreadNotFound: no thread ``thread_id``.
            ThreadClosed: the thread is already closed.
            InvalidThread: the summary is too long.
            ConcurrentUpdate: the thread changed under the write; retry.

        Cancellation: releases the thread's lock; see the class docstring.
        """
        async with self._locks.hold(thread_id):
            thread = await self._load(thread_id)
            now = self.clock()
            done = dataclasses.replace(
                rules.closed(thread, self.node_id, summary, now, by_node=True), wake_at=None
            )
            closed = SystemEvent(ev.THREAD_CLOSED, {"summary": summary, "by": self.node_id})
            return await self._commit(done, thread, now, [closed])

    # -- messages -----------------------------------------------------------

    async def send_message(self, message: Message) -> ThreadEntry:
        """Append a verified agent message to its thread; return the stored entry.

        Raises (and writes nothing) when the rules or the thread's strategy refuse it.

        Raises:
            InvalidMessage: the kind is reserved for node events (``reserved_kind``).
            ThreadRequired: the message names no thread.
            ThreadNotFound: no such thread.
            NotParticipant: the sender is not in the thread.
            ThreadClosed: the thread is closed.
            MentionSelf: the message mentions its sender.
            MentionNotParticipant: it mentions an agent outside the thread.
            Expired: the message expired before it was posted.
            DuplicateMessage: a message with this id is already stored.
            ConcurrentUpdate: the thread kept changing under the write (other node
                processes on a shared database; tried ``POST_ATTEMPTS`` times), or
                changed once after event hooks acted; retry.
            CoralError: the strategy's refusal (``OutOfTurn``, or the reason of
                vote, contract-net or planner rules), or an event hook's.

        Cancellation: releases the thread's lock; see the class docstring.
        """
        if message.kind.startswith(ev.EVENT_KIND_PREFIX):
            raise InvalidMessage(
                "kinds starting with 'coral.' are node events", reason="reserved_kind"
            )
        if message.thread is None:
            raise ThreadRequired("a thread message must name its thread")
        attempt = 1
        while True:
            try:
                return await self._post(message.thread, message)
            except _Retry:
                attempt += 1  # another process appended first: decide again on the new state
                if attempt > POST_ATTEMPTS:
                    raise ConcurrentUpdate(
                        f"thread {message.thread} kept changing; retry"
                    ) from None

    async def _post(self, thread_id: str, message: Message) -> ThreadEntry:
        async with self._locks.hold(thread_id):
            thread = await self._load(thread_id)
            rules.check_post(thread, message)
            now = self.clock()
            if message.expires_at is not None and message.expires_at <= now:
                raise Expired("the message expired before it was posted")
            strategy = self.strategies.get(thread.strategy)
            decision = _accepted(strategy.on_message(ThreadView.of(thread, now), message))
            # The store refuses a stored message id as it writes (DuplicateMessage,
            # nothing written); look first only when event hooks with effects
            # outside the write (the ledger's) would run before that.
            hooks = self._runs_hooks(decision)
            if hooks and await self.store.has_message(message.id):
                raise DuplicateMessage(f"message {message.id} is already stored")
            entry = ThreadEntry(thread.id, thread.last_seq + 1, message, now)
            recipients = tuple(p for p in thread.participants if p != message.sender)
            try:
                await self._commit(
                    thread, thread, now, [], decision, first=PendingEntry(entry, recipients)
                )
            except ConcurrentUpdate:
                # Only one process writes a thread on SQLite; on a shared database another
                # may have appended since our read. Deciding again is safe unless event
                # hooks already acted outside the write (the ledger's): then the caller retries.
                if hooks:
                    raise
                raise _Retry from None
            return entry

    async def tick(self, thread_id: str) -> tuple[ThreadEntry, ...]:
        """Let the thread's strategy react to time passing (e.g. an auction deadline).

        Returns the entries the tick appended (none when nothing changed).

        Raises:
            ThreadNotFound: no thread ``thread_id``.
            UnknownStrategy: the thread's strategy is no longer registered.
            ConcurrentUpdate: the thread changed under the write; retry.
            CoralError: an event hook's refusal (nothing is written).

        Cancellation: releases the thread's lock; see the class docstring.
        """
        async with self._locks.hold(thread_id):
            thread = await self._load(thread_id)
            if not thread.is_open:
                return ()
            now = self.clock()
            strategy = self.strategies.get(thread.strategy)
            if not isinstance(strategy, TimedStrategy):
                return ()
            decision = strategy.on_tick(ThreadView.of(thread, now))
            unchanged = not decision.events and not decision.next_agents and decision.state is None
            if not decision.allowed or (unchanged and decision.wake_at_ms == thread.wake_at):
                return ()
            before = thread.last_seq
            await self._commit(thread, thread, now, [], decision)
            page = await self.store.history(thread_id, before, MAX_PAGE)
            return tuple(page)

    async def tick_due(self) -> int:
        """Tick every thread whose strategy asked to be woken by now; return how many.

        Raises:
            CoralError: the first failing ``tick``'s error; threads ticked
                before it stay ticked, later ones are not ticked.
        """
        due = await self.store.due_threads(self.clock())
        for thread_id in due:
            await self.tick(thread_id)
        return len(due)

    async def run_timers(
        self, retry_after_ms: int = 1000, *, max_sleep_ms: int | None = None
    ) -> None:
        """Tick threads as their wake times come due, until cancelled (run it as a task).

        Sleeps until the earliest wake time and is re-planned by any change to
        one, so nothing polls. A tick that fails is logged and retried later.
        With ``max_sleep_ms`` it also looks again at least that often (wake
        times written by other processes on a shared database do not re-plan it).

        Raises:
            StorageUnavailable: listing due threads or the next wake time
                failed; the loop ends (a failing tick does not end it).

        Cancellation: the only way it ends normally; a tick in progress is
        cancelled with it (see the class docstring).
        """
        while True:
            self._wakes_changed.clear()
            delay_ms: int | None = None
            for thread_id in await self.store.due_threads(self.clock()):
                try:
                    await self.tick(thread_id)
                except CoralError as exc:
                    log.warning("tick of thread %s failed: %s", thread_id, exc.detail)
                    delay_ms = retry_after_ms
            next_wake = await self.store.next_wake_at()
            if delay_ms is None and next_wake is not None:
                delay_ms = max(0, next_wake - self.clock())
            if max_sleep_ms is not None:
                delay_ms = max_sleep_ms if delay_ms is None else min(delay_ms, max_sleep_ms)
            try:
                timeout = None if delay_ms is None else delay_ms / 1000
                await asyncio.wait_for(self._wakes_changed.wait(), timeout)
            except TimeoutError:
                pass

    # -- reading ------------------------------------------------------------

    async def get_thread(self, requester: str, thread_id: str) -> Thread:
        """The thread, if ``requester`` is one of its participants.

        Raises:
            ThreadNotFound: no thread ``thread_id``.
            NotParticipant: ``requester`` is not in the thread.
        """
        thread = await self._load(thread_id)
        rules.require_participant(thread, requester)
        return thread

    async def list_threads(self, agent: str, session_id: str | None = None) -> list[Thread]:
        """Threads ``agent`` participates in (optionally within one session), oldest first."""
        return await self.store.list_threads(agent, session_id)

    async def history(
        self, requester: str, thread_id: str, after_seq: int = 0, limit: int = 100
    ) -> HistoryPage:
        """One page of the thread's log after ``after_seq``; participants only.

        Raises:
            InvalidMessage: ``limit`` is outside 1..MAX_PAGE or ``after_seq`` is
                negative (``invalid_page``).
            ThreadNotFound: no thread ``thread_id``.
            NotParticipant: ``requester`` is not in the thread.
        """
        if not 0 < limit <= MAX_PAGE or after_seq < 0:
            raise InvalidMessage(f"limit is 1..{MAX_PAGE}, after_seq >= 0", reason="invalid_page")
        await self.get_thread(requester, thread_id)
        entries = await self.store.history(thread_id, after_seq, limit + 1)
        more = len(entries) > limit
        page = tuple(entries[:limit])
        return HistoryPage(page, page[-1].seq if more else None)

    # -- waiting ------------------------------------------------------------

    @contextlib.contextmanager
    def wait_slot(self, agent: str) -> Iterator[InboxListener]:
        """Reserve one of ``agent``'s wait slots for a stream of ``wait`` calls.

        A streaming front door takes the slot before it starts its response,
        so a refusal (TooManyWaits, WaitBudgetExhausted) is still a plain
        error; it passes the slot to each ``wait``. Leaving the block frees it.

        Raises:
            TooManyWaits: ``agent`` already holds as many waits as allowed.
            WaitBudgetExhausted: the node holds its budget of waits (retryable).
        """
        with self.signals.listen(agent) as slot:
            yield slot

    @staticmethod
    def check_wait(
        kind: str, from_agent: str | None, after: int, limit: int, timeout_ms: int
    ) -> None:
        """Check ``wait`` arguments.

        Raises:
            InvalidWait: a bad kind, ``from_agent`` given for a kind other
                than ``agent`` (or missing for it), a timeout outside
                (0, MAX_WAIT_MS], a negative cursor or a bad limit.
        """
        if kind not in WAIT_KINDS:
            raise InvalidWait(f"kind is one of {', '.join(WAIT_KINDS)}")
        if (kind == "agent") != (from_agent is not None):
            raise InvalidWait("from_agent is required for, and only for, kind 'agent'")
        if not 0 < timeout_ms <= MAX_WAIT_MS:
            raise InvalidWait(f"timeout_ms must be in (0, {MAX_WAIT_MS}]")
        if after < 0 or not 0 < limit <= MAX_PAGE:
            raise InvalidWait(f"after >= 0 and limit in 1..{MAX_PAGE}")

    async def wait(
        self,
        agent: str,
        kind: WaitKind = "message",
        *,
        from_agent: str | None = None,
        after: int = 0,
        timeout_ms: int = 30_000,
        limit: int = 100,
        slot: InboxListener | None = None,
    ) -> WaitResult:
        """Inbox entries for ``agent`` past cursor ``after`` that match ``kind``.

        Returns at once when some exist, otherwise blocks until one arrives or
        ``timeout_ms`` passes (then returns none and the same cursor). Resuming
        with the returned cursor never skips or repeats a matching entry, also
        across restarts. ``slot`` is one reserved with ``wait_slot``; without
        it the wait takes its own.

        Raises:
            InvalidWait: the arguments are invalid (see ``check_wait``).
            TooManyWaits: without ``slot``, ``agent`` already holds as many
                waits as allowed.
            WaitBudgetExhausted: without ``slot``, the node holds its budget of
                waits (retryable).
            StorageUnavailable: the inbox could not be read.

        Cancellation: frees the slot the wait took, without parking it for a
        next wait to take over (a reserved ``slot`` stays with its
        ``wait_slot`` block). Nothing is consumed: resuming from the caller's
        cursor loses no entry.
        """
        self.check_wait(kind, from_agent, after, limit, timeout_ms)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        # A reserved slot is one listener kept across calls; without one, the next
        # wait of a loop (long-poll, SSE, fan-out) resumes a parked listener.
        reserved = (
            contextlib.nullcontext(slot)
            if slot is not None
            else self.signals.listen(agent, resume=(kind, from_agent, limit, after))
        )
        with reserved as listener:
            while True:
                found = await self._look(listener, agent, after, limit, kind, from_agent)
                if found:
                    cursor = found[-1].cursor
                    listener.park_as = (kind, from_agent, limit, cursor)
                    return WaitResult(tuple(found), cursor)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    listener.park_as = (kind, from_agent, limit, after)
                    return WaitResult((), after)
                try:
                    await asyncio.wait_for(listener.event.wait(), remaining)
                except TimeoutError:
                    pass  # look once more, then report the timeout

    async def subscribe(
        self,
        agent: str,
        kind: WaitKind = "message",
        *,
        from_agent: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> AsyncGenerator[WaitResult, None]:
        """Yield batches of matching inbox entries past ``after``, forever (streams).

        Like repeated ``wait`` calls resumed from each returned cursor, but the
        wait stays registered between batches, so rows committed meanwhile are
        taken from memory rather than read back from the store.

        Errors surface from the first ``__anext__``, where the body starts.

        Raises:
            InvalidWait: the arguments are invalid (see ``check_wait``).
            TooManyWaits: ``agent`` already holds as many waits as allowed.
            WaitBudgetExhausted: the node holds its budget of waits (retryable).
            StorageUnavailable: the inbox could not be read.

        Cancellation: holds one of the agent's wait slots from the first
        ``__anext__`` until the iterator is closed (``aclose``) or a pending
        ``__anext__`` is cancelled; either frees it. Batches already yielded
        stay delivered: resume from the last cursor received.
        """
        self.check_wait(kind, from_agent, after, limit, 1)
        with self.signals.listen(agent) as listener:
            while True:
                found = await self._look(listener, agent, after, limit, kind, from_agent)
                if found:
                    after = found[-1].cursor
                    yield WaitResult(tuple(found), after)
                    continue
                await listener.event.wait()

    async def _look(
        self,
        listener: InboxListener,
        agent: str,
        after: int,
        limit: int,
        kind: WaitKind,
        from_agent: str | None,
    ) -> list[InboxEntry]:
        """Matching entries past ``after``: from what was delivered, else from the store."""
        listener.event.clear()
        delivered = listener.take()
        if delivered is not None:
            found = [e for e in delivered if e.cursor > after and _matches(e, kind, from_agent)]
            if len(found) <= limit:
                return found
        listener.reset()
        found, head = await self.store.inbox_page(agent, after, limit, kind, from_agent)
        if len(found) < limit:
            listener.known(head)  # nothing else matches up to head
        return found

    async def inbox_cursor(self, agent: str) -> int:
        """The newest cursor of ``agent``'s inbox: wait ``after`` it for new entries only."""
        return await self.store.inbox_cursor(agent)

    # -- internals ----------------------------------------------------------

    async def _load(self, thread_id: str) -> Thread:
        thread = await self.store.get_thread(thread_id)
        if thread is None:
            raise ThreadNotFound(f"no thread {thread_id}")
        return thread

    async def _commit(
        self,
        thread: Thread,
        stored: Thread | None,
        now: int,
        leading: list[SystemEvent],
        decision: Decision | None = None,
        *,
        first: PendingEntry | None = None,
        grants: tuple[HistoryGrant, ...] = (),
        audience: tuple[str, ...] | None = None,
    ) -> Thread:
        """Turn events and a decision into log entries and write them in one go.

        Without a ``decision`` (membership changes, closing) the strategy's state
        and wake time are kept as they were.
        """
        wake_at = thread.wake_at if decision is None else decision.wake_at_ms
        decision = decision or Decision()
        events = [*leading, *decision.events]
        if decision.next_agents:
            events.append(
                SystemEvent(ev.TURN, {"agents": list(decision.next_agents)}, decision.next_agents)
            )
        events = [await self._run_hook(thread, event) for event in events]
        audience = audience if audience is not None else thread.participants
        pending: list[PendingEntry] = [first] if first is not None else []
        seq = (stored.last_seq if stored is not None else 0) + len(pending)
        for event in events:
            seq += 1
            message = ev.event_message(self.node_id, thread.id, event, now, self._sign_event)
            pending.append(PendingEntry(ThreadEntry(thread.id, seq, message, now, True), audience))
        new_thread = dataclasses.replace(
            thread,
            last_seq=seq,
            strategy_state=decision.state if decision.state is not None else thread.strategy_state,
            wake_at=wake_at if thread.is_open else None,
        )
        expected = stored.last_seq if stored is not None else None
        membership_changed = stored is None or stored.participants != thread.participants
        delivered = await self.store.apply(
            ThreadWrite(new_thread, expected, tuple(pending), grants, membership_changed)
        )
        # Waits get the new rows from memory; grants were not handed over, so
        # joiners (and anyone else) look in the store.
        self.signals.deliver(delivered)
        self.signals.notify(g.agent for g in grants)
        for listener in self._commit_listeners:
            try:
                listener(new_thread, tuple(p.entry for p in pending))
            except Exception:
                log.exception("commit listener failed")
        if new_thread.wake_at != (stored.wake_at if stored is not None else None):
            self._wakes_changed.set()
        return new_thread

    def _runs_hooks(self, decision: Decision) -> bool:
        names = {event.name for event in decision.events}
        if decision.next_agents:
            names.add(ev.TURN)
        return not names.isdisjoint(self._event_hooks)

    async def _run_hook(self, thread: Thread, event: SystemEvent) -> SystemEvent:
        hook = self._event_hooks.get(event.name)
        if hook is None:
            return event
        extra = await hook(thread, event)
        return dataclasses.replace(event, data={**event.data, **extra}) if extra else event


def _matches(item: InboxEntry, kind: WaitKind, from_agent: str | None) -> bool:
    if kind == "mention":
        return item.mentioned
    if kind == "agent":
        return item.entry.sender == from_agent
    return True


def _accepted(decision: Decision) -> Decision:
    if decision.refusal is not None:
        raise decision.refusal
    return decision
