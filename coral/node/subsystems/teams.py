"""Wires team formation into the node: the teams service, its admission check, escrow, routes.

How team traffic flows is described in ``coral.teams.service``. A late
subsystem (``coral.node.subsystems.base``): set up after the servers listen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coral.api.context import NodeContext, need
from coral.node.subsystems import Subsystem

if TYPE_CHECKING:
    from coral.node.daemon import Node
    from coral.protocol.message import Message
    from coral.teams.service import TeamsService


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

    def prepare(self, node: Node, ctx: NodeContext) -> None:
        """Put the team admission check in the gateway's order now; it runs once set up."""
        self._ctx = ctx
        self.service: TeamsService | None = None
        need(ctx.gateway, "gateway").checks.append(self._admit)

    async def _admit(self, message: Message) -> None:
        await self._ctx.wired()  # the gateway waits for it already; other callers too
        assert self.service is not None
        await self.service.admit(message)

    async def setup(self, node: Node, ctx: NodeContext) -> None:
        from coral.api.http import teams as http_teams
        from coral.store.teams_sqlite import SqliteTeamIndex, SqliteTeamStore
        from coral.teams.service import TeamsService

        store = SqliteTeamStore(node.db)
        await store.migrate()
        index = SqliteTeamIndex(node.db)
        await index.migrate()
        service = TeamsService(
            store, index, need(ctx.directory, "directory"), need(ctx.coordination, "coordination")
        )
        self.service = service
        ctx.teams = service
        self.http_installers.append(http_teams.install)

    async def started(self, node: Node, ctx: NodeContext) -> None:
        from coral.ledger.team_escrow import LedgerTeamEscrow

        # Looked up now, not in setup, so the ledger subsystem may come in any order.
        assert self.service is not None
        if ctx.ledger is not None:
            self.service.attach_escrow(LedgerTeamEscrow(ctx.ledger))
            self.every(30.0, self.service.settle_due)
