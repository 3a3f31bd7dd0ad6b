"""Agent directory, coordination engine and the message gateway.

Their stores (agents, seen ids, threads and inboxes) live in the node's SQLite
file, or, when ``database_url`` is a ``postgresql://`` URL (and the operator
did not opt out with ``database_stores = "ledger"``), in PostgreSQL on the node's
shared connection pool (``Node.postgres_pool``); there a LISTEN task wakes
local waits for messages other node processes commit.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from coral.agents.ports import AgentStore
from coral.api.context import NodeContext
from coral.config import Config
from coral.coordination.ports import CoordinationStore, SeenIds
from coral.node.subsystems.base import Subsystem, wait_budget

if TYPE_CHECKING:
    from coral.node.daemon import Node

#: How often seen ids past their window are deleted.
SEEN_PRUNE_S = 60.0
#: On PostgreSQL, the longest the leading replica's timer loop sleeps between looks at due threads.
TIMER_POLL_MS = 1000


def on_postgres(config: Config) -> bool:
    """True when the stores live in PostgreSQL: a postgresql:// ``database_url``.

    ``database_stores = "ledger"`` opts out: then only the ledger is there.
    """
    return config.stores_on_postgres


class CoordinationSubsystem(Subsystem):
    """Agent directory, coordination engine and the message gateway.

    Their stores live in SQLite, or in PostgreSQL (see the module docstring).
    """

    name = "coordination"

    def __init__(self) -> None:
        super().__init__()
        self._wake_writer: str | None = None  # the PostgreSQL store's token in NOTIFYs

    async def setup(self, node: Node, ctx: NodeContext) -> None:
        from coral.agents.directory import AgentDirectory
        from coral.api.grpc import coordination as grpc_coordination
        from coral.api.http import agents as http_agents
        from coral.api.http import coordination as http_coordination
        from coral.coordination.gateway import MessageGateway
        from coral.coordination.ratelimit import RateLimiter
        from coral.coordination.service import CoordinationService
        from coral.protocol.message import now_ms
        from coral.protocol.signing import sign_message

        agents, seen, store = await self._open_stores(node, ctx)
        self.seen = seen
        identity = ctx.identity
        ctx.directory = AgentDirectory(
            agents, identity, now_ms, ctx.verifier.limits.max_future_skew_ms
        )
        ctx.coordination = CoordinationService(
            store,
            node_id=identity.did,
            clock=now_ms,
            max_waits_total=wait_budget(node.config.max_open_waits),
            sign_event=lambda message: sign_message(message, identity),
        )
        rate = node.config.agent_message_rate
        limiter = RateLimiter(rate, 2 * rate, time.monotonic)
        ctx.gateway = MessageGateway(
            ctx.verifier,
            seen,
            ctx.coordination,
            ctx.directory,
            limiter=limiter,
            on_routed=ctx.metrics.messages_routed.inc,
        )
        directory = ctx.directory

        async def count_local_agents() -> None:
            # One count at a time; records stored meanwhile ask for one more pass,
            # so a burst of registrations costs a few counts, not one each.
            try:
                while counting["again"]:
                    counting["again"] = False
                    count = len(await directory.search(local_only=True))
                    ctx.metrics.agents_registered.set(count)
            finally:
                counting["running"] = False

        counting = {"again": True, "running": True}
        await count_local_agents()

        def on_record(record: Any) -> None:
            if record.home_node == identity.did:
                counting["again"] = True
                if not counting["running"]:
                    counting["running"] = True
                    task = asyncio.get_running_loop().create_task(count_local_agents())
                    self._counting.add(task)
                    task.add_done_callback(self._counting.discard)

        self._counting: set[asyncio.Task[None]] = set()
        directory.listeners.append(on_record)
        self.grpc_installers.append(grpc_coordination.install)
        self.http_installers += [http_agents.install, http_coordination.install]

    async def _open_stores(
        self, node: Node, ctx: NodeContext
    ) -> tuple[AgentStore, SeenIds, CoordinationStore]:
        """The three stores, migrated: on PostgreSQL for a postgresql:// URL, else SQLite."""
        if on_postgres(node.config):
            from coral.store.agents_postgres import PostgresAgentStore
            from coral.store.coordination_postgres import PostgresCoordinationStore
            from coral.store.seen_postgres import PostgresSeenStore

            pool = await node.postgres_pool()
            pg_agents, pg_seen = PostgresAgentStore(pool), PostgresSeenStore(pool)
            pg_store = PostgresCoordinationStore(pool)
            self._wake_writer = pg_store.writer
            await pg_agents.open()
            await pg_seen.open()
            await pg_store.migrate()
            ctx.coordination_store = pg_store  # federation replicates threads through it
            return pg_agents, pg_seen, pg_store
        from coral.store.agents_sqlite import SqliteAgentStore
        from coral.store.coordination_sqlite import SqliteCoordinationStore
        from coral.store.seen_sqlite import SqliteSeenStore

        sqlite_agents, sqlite_seen = SqliteAgentStore(node.db), SqliteSeenStore(node.db)
        await sqlite_agents.open()
        await sqlite_seen.open()
        sqlite_store = SqliteCoordinationStore(node.db)
        await sqlite_store.migrate()
        ctx.coordination_store = sqlite_store  # federation replicates threads through it
        return sqlite_agents, sqlite_seen, sqlite_store

    async def started(self, node: Node, ctx: NodeContext) -> None:
        from coral.protocol.message import now_ms

        engine = ctx.coordination
        assert engine is not None
        # Strategy plug-ins are found by scanning every installed package's metadata:
        # done here, off the event loop, after the node serves (a lookup waits for it).
        await asyncio.to_thread(engine.strategies.load_pending)
        if self._wake_writer is not None:
            # Other processes on the same database wake this one's waits.
            from coral.store.wakeups_postgres import PostgresWakeups

            wakeups = PostgresWakeups(
                listener=node.postgres_listener(),
                own_writer=self._wake_writer,
                wake=engine.signals.notify,
                wake_all=engine.signals.notify_all,
            )
            self.background(wakeups.run())
        if self._wake_writer is None:
            self.background(engine.run_timers())
        else:
            # One replica ticks; wake times other replicas write reach it by a
            # bounded sleep (their commits do not wake this process's timer loop).
            self.leading(node.lease, lambda: engine.run_timers(max_sleep_ms=TIMER_POLL_MS))
        self.every(SEEN_PRUNE_S, lambda: self.seen.prune(now_ms()), lease=node.lease)
