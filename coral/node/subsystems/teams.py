"""Wires team formation into the node: the teams service, its admission check, escrow, routes.

How team traffic flows is described in ``coral.teams.service``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coral.api.context import NodeContext, need
from coral.ledger.team_escrow import LedgerTeamEscrow
from coral.node.subsystems import Subsystem
from coral.store.teams_sqlite import SqliteTeamIndex, SqliteTeamStore
from coral.teams.service import TeamsService

if TYPE_CHECKING:
    from coral.node.daemon import Node


class TeamsSubsystem(Subsystem):
    """Team formation in the node: service in ``need(ctx.teams, "teams")``, routes, admission."""

    name = "teams"

    async def setup(self, node: Node, ctx: NodeContext) -> None:
        from coral.api.http import teams as http_teams

        store = SqliteTeamStore(node.db)
        await store.migrate()
        index = SqliteTeamIndex(node.db)
        await index.migrate()
        service = TeamsService(
            store, index, need(ctx.directory, "directory"), need(ctx.coordination, "coordination")
        )
        self.service = service
        ctx.teams = service
        need(ctx.gateway, "gateway").checks.append(service.admit)
        self.http_installers.append(http_teams.install)

    async def started(self, node: Node, ctx: NodeContext) -> None:
        # Looked up now, not in setup, so the ledger subsystem may come in any order.
        if ctx.ledger is not None:
            self.service.attach_escrow(LedgerTeamEscrow(ctx.ledger))
            self.every(30.0, self.service.settle_due)
