"""Wires team formation into the node: the teams service, its admission check, escrow, routes.

How team traffic flows is described in ``coral.teams.service``. The team
records and the team index live in the node's SQLite file, or, when the node
keeps every store in PostgreSQL (``database_stores = "all"``), in PostgreSQL
on the node's shared connection pool (``Node.postgres_pool``). There several replicas
share them: the service checks its cached team states against the stored
document count, and a LISTEN task on the ``teams`` channel wakes this
process's team long-polls for changes other replicas commit.

A late subsystem (``coral.node.subsystems.base``): set up after the servers
listen; its admission check holds its place in the gateway from the start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coral.api.context import NodeContext, need
from coral.node.subsystems import Subsystem
from coral.node.subsystems.coordination import on_postgres

if TYPE_CHECKING:
    from coral.node.daemon import Node
    from coral.protocol.message import Message
    from coral.teams.ports import TeamIndex, TeamStore
    from coral.teams.service import TeamsService

#: How often team budgets past their deadline are released (on one replica at a time).
SETTLE_S = 30.0


class TeamsSubsystem(Subsystem):
    """Team formation in the node: service in ``need(ctx.teams, "teams")``, routes, admission."""

    name = "teams"
    late = True
    late_paths = ("/v1/teams",)
    late_modules = (
        "coral.api.http.teams",
        "coral.ledger.team_escrow",
        "coral.store.teams_sqlite",
        "coral.teams.service",
    )

    def __init__(self) -> None:
        super().__init__()
        self._writer: str | None = None  # this process's token in ``teams`` notices
        self.service: TeamsService | None = None

    def prepare(self, node: Node, ctx: NodeContext) -> None:
        """Put the team admission check in the gateway's order now; it runs once set up."""
        self._ctx = ctx
        need(ctx.gateway, "gateway").checks.append(self._admit)

    async def _admit(self, message: Message) -> None:
        await self._ctx.wired()  # the gateway waits for it already; other callers too
        assert self.service is not None
        await self.service.admit(message)

    async def setup(self, node: Node, ctx: NodeContext) -> None:
        from coral.api.http import teams as http_teams
        from coral.teams.service import TeamsService

        store, index = await self._open_stores(node, ctx)
        service = TeamsService(
            store,
            index,
            need(ctx.directory, "directory"),
            need(ctx.coordination, "coordination"),
            shared=self._writer is not None,
        )
        self.service = service
        ctx.teams = service
        self.http_installers.append(http_teams.install)

    async def _open_stores(self, node: Node, ctx: NodeContext) -> tuple[TeamStore, TeamIndex]:
        """The team store and index, migrated: PostgreSQL with every store there, else SQLite."""
        if on_postgres(node.config):
            from coral.store.teams_postgres import PostgresTeamIndex, PostgresTeamStore

            threads = need(ctx.coordination, "coordination").store

            async def thread_exists(thread_id: str) -> bool:
                return await threads.get_thread(thread_id) is not None

            pool = await node.postgres_pool()
            pg_store = PostgresTeamStore(pool)
            self._writer = pg_store.writer
            pg_index = PostgresTeamIndex(pool, writer=pg_store.writer, thread_exists=thread_exists)
            await pg_store.migrate()
            await pg_index.migrate()
            return pg_store, pg_index
        from coral.store.teams_sqlite import SqliteTeamIndex, SqliteTeamStore

        sqlite_store = SqliteTeamStore(node.db)
        await sqlite_store.migrate()
        sqlite_index = SqliteTeamIndex(node.db)
        await sqlite_index.migrate()
        return sqlite_store, sqlite_index

    async def started(self, node: Node, ctx: NodeContext) -> None:
        from coral.ledger.team_escrow import LedgerTeamEscrow

        service = self.service
        assert service is not None
        if self._writer is not None:
            # Other replicas' team changes wake this one's long-polls.
            from coral.store.teams_postgres import CHANNEL
            from coral.store.wakeups_postgres import PostgresWakeups

            wakeups = PostgresWakeups(
                listener=node.postgres_listener(),
                own_writer=self._writer,
                wake=service.changed,
                wake_all=service.changed_all,
                channel=CHANNEL,
            )
            self.background(wakeups.run())
        # Looked up now, not in setup, so the ledger subsystem may come in any order.
        if ctx.ledger is not None:
            service.attach_escrow(LedgerTeamEscrow(ctx.ledger))
            self.every(SETTLE_S, service.settle_due, lease=node.lease)
