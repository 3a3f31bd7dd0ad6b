"""The payment ledger in the running node: store, services, awards, metrics.

``LedgerSubsystem`` opens the ledger's own database (``<data_dir>/ledger.db``
with ``synchronous=FULL`` and group commit, or PostgreSQL, on the node's
shared pool, when ``database_url`` is a ``postgresql://`` URL), opens the operator (issuance)
and node settlement accounts, builds a ``LedgerService`` signed by the node
key (``need(ctx.ledger, "ledger")``) and the ``LedgerAccess`` rules both APIs
call (``need(ctx.ledger_access, "ledger_access")``, see ``coral.ledger.access``), wires
contract-net awards (``coral.ledger.awards``), expires overdue reservations
every second and exports ``coral_ledger_transfers`` by outcome and the
``coral_ledger_escrow_held`` gauge. The teams subsystem finds the service in
``need(ctx.ledger, "ledger")`` and moves team budgets through it.

A late subsystem (``coral.node.subsystems.base``): set up after the servers
listen. Until then ledger calls (HTTP and gRPC) wait, and its award check
holds its place in the gateway's order.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc
from prometheus_client import Gauge

from coral.api.context import NodeContext, need
from coral.api.lazy import LazyServicer
from coral.config import Config
from coral.node.subsystems import Subsystem
from coral.v1 import ledger_pb2, ledger_pb2_grpc

if TYPE_CHECKING:
    import asyncpg

    from coral.ledger.awards import AwardEscrow
    from coral.ledger.ports import LedgerStore
    from coral.ledger.service import LedgerService
    from coral.node.daemon import Node
    from coral.protocol.message import Message

#: How often overdue reservations are expired (their funds return to the payer).
EXPIRY_SWEEP_S = 1.0
#: How often the escrow gauge is refreshed.
ESCROW_GAUGE_S = 10.0


async def open_ledger_store(config: Config, pool: asyncpg.Pool | None = None) -> LedgerStore:
    """The configured ledger store, started: PostgreSQL for a URL, else ``ledger.db``.

    On PostgreSQL it uses ``pool`` (the node's shared pool, which it never
    closes) when given, else a pool of its own.

    Raises:
        OSError, asyncpg.PostgresError, sqlite3.Error: the database could not open or migrate.
    """
    if is_postgres_url(config.database_url):
        from coral.store.ledger_postgres import PostgresLedgerStore

        if pool is None:
            return await PostgresLedgerStore.open(config.database_url)
        store = PostgresLedgerStore(pool)
        await store.start()
        return store
    from coral.store.ledger_sqlite import SqliteLedgerStore

    return await SqliteLedgerStore.open(ledger_db_path(config))


def is_postgres_url(url: str) -> bool:
    """True for ``postgresql://`` (or ``postgres://``) database URLs."""
    return url.startswith(("postgresql://", "postgres://"))


def ledger_db_path(config: Config) -> Path:
    """The ledger's own SQLite file: apart from the node database, so its fsyncs are its own."""
    return config.data_dir / "ledger.db"


async def open_node_accounts(service: LedgerService, node_did: str) -> None:
    """Open the operator (issuance) and node settlement accounts; no-op when they exist."""
    from coral.ledger.model import AccountKind
    from coral.ledger.relay import settlement_account_id
    from coral.ledger.service import operator_account_id

    ledger = service.default_ledger
    await service.open_account(operator_account_id(ledger), kind=AccountKind.OPERATOR)
    await service.open_account(
        settlement_account_id(node_did), owner=node_did, kind=AccountKind.NODE_SETTLEMENT
    )


class LedgerSubsystem(Subsystem):
    """Payments: ``need(ctx.ledger, "ledger")`` and ``["ledger_access"]``, routes, award escrow."""

    name = "ledger"
    late = True
    late_paths = ("/v1/ledger", "/v1/admin/ledger")
    late_modules = (
        "coral.api.grpc.ledger",
        "coral.api.http.ledger",
        "coral.coordination.strategies.contract_net",
        "coral.ledger.access",
        "coral.ledger.awards",
        "coral.ledger.service",
        "coral.store.ledger_sqlite",
    )

    def __init__(self) -> None:
        super().__init__()
        self._store: LedgerStore | None = None
        self._gauge: Gauge | None = None
        self._awards: AwardEscrow | None = None

    def prepare(self, node: Node, ctx: NodeContext) -> None:
        """Serve ledger gRPC calls through a servicer that waits; hold the award check's place."""
        self._ctx = ctx
        self.servicer = LazyServicer(ctx.wired)
        need(ctx.gateway, "gateway").checks.append(self._admit)
        self.grpc_installers.append(self._install_grpc)

    def _install_grpc(self, server: grpc.aio.Server, ctx: NodeContext) -> list[str]:
        ledger_pb2_grpc.add_LedgerServiceServicer_to_server(cast(Any, self.servicer), server)
        return [ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name]

    async def _admit(self, message: Message) -> None:
        await self._ctx.wired()  # the gateway waits for it already; other callers too
        assert self._awards is not None
        await self._awards.admit(message)

    async def setup(self, node: Node, ctx: NodeContext) -> None:
        from coral.api.grpc.ledger import LedgerServicer
        from coral.api.http import ledger as http_ledger
        from coral.coordination.strategies.contract_net import award_hook
        from coral.ledger.access import LedgerAccess
        from coral.ledger.awards import AwardEscrow
        from coral.ledger.service import LedgerService
        from coral.protocol.message import now_ms

        pool = await node.postgres_pool() if is_postgres_url(ctx.config.database_url) else None
        store = self._store = await open_ledger_store(ctx.config, pool)
        service = LedgerService(store, ctx.identity, now_ms)
        access = LedgerAccess(
            service,
            store,
            need(ctx.directory, "directory"),
            dev_mode=ctx.config.dev_mode,
            count_transfer=lambda outcome: ctx.metrics.ledger_transfers.labels(outcome).inc(),
        )
        await open_node_accounts(service, ctx.identity.did)
        ctx.ledger = service
        ctx.ledger_access = access
        awards = self._awards = AwardEscrow(access, store)
        need(ctx.coordination, "coordination").add_event_hook("award", award_hook(awards.on_award))
        self._gauge = Gauge(
            "coral_ledger_escrow_held",
            "Funds reserved in pending transfers (escrow), in minor units",
            registry=ctx.metrics.registry,
        )
        self.servicer.load(LedgerServicer(ctx))
        self.http_installers.append(http_ledger.install)

    async def started(self, node: Node, ctx: NodeContext) -> None:
        service: LedgerService = need(ctx.ledger, "ledger")

        async def expire() -> None:
            expired = await service.expire_due()
            if expired:
                ctx.metrics.ledger_transfers.labels("expired").inc(len(expired))

        async def refresh_gauge() -> None:
            if self._gauge is not None and self._store is not None:
                self._gauge.set(await self._store.escrow_held())

        await refresh_gauge()
        self.every(EXPIRY_SWEEP_S, expire, lease=node.lease)
        self.every(ESCROW_GAUGE_S, refresh_gauge)

    async def close(self, node: Node, ctx: NodeContext) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None
