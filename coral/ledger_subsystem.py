"""The payment ledger in the running node: store, access rules, awards, metrics.

``LedgerSubsystem`` opens the ledger's own database (``<data_dir>/ledger.db``
with ``synchronous=FULL`` and group commit, or PostgreSQL when
``database_url`` is a ``postgresql://`` URL), builds a ``LedgerService``
signed by the node key (``ctx.services["ledger"]``) and the ``LedgerAccess``
rules both APIs call (``ctx.services["ledger_access"]``).

Access rules, for every front door alike:
- an agent's account id is its did; it opens on first use, owned by the
  agent, never overdrawn (``debits_must_not_exceed_credits``);
- only the owner of an agent account moves money out of it (transfer,
  reserve, post, void); either party of a hash-locked reservation may
  fulfil it with the preimage, since knowing the preimage is the authority;
- reads of an account, its history and its receipts are the owner's (or
  the operator's, with the admin token); dev-mode issuance is the operator's;
- client transfer ids are required and are the idempotency keys, so a
  replayed signed request can never move money twice. They use a restricted
  alphabet, which keeps the node's own ids (``award:...``) out of reach.

Contract-net awards are wired in ``coral.ledger_awards``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import Gauge

from coral.agents.directory import AgentDirectory
from coral.config import Config
from coral.context import NodeContext
from coral.ledger import errors
from coral.ledger.model import Account, AccountKind, HistoryEntry, Transfer
from coral.ledger.ports import LedgerStore
from coral.ledger.receipts import Receipt
from coral.ledger.service import LedgerService, TransferOutcome
from coral.metrics import NodeMetrics
from coral.protocol.errors import Forbidden, InvalidMessage
from coral.protocol.message import now_ms
from coral.subsystems import Subsystem

#: How often overdue reservations are expired (their funds return to the payer).
EXPIRY_SWEEP_S = 1.0
#: How often the escrow gauge is refreshed.
ESCROW_GAUGE_S = 10.0
T = TypeVar("T")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class MissingTransferId(InvalidMessage):
    """Writes need a client-chosen transfer id: it is what makes a retry safe."""

    reason = "transfer_id_required"


class InvalidTransferId(InvalidMessage):
    """A client transfer id is 1-100 characters of letters, digits, ``.``, ``_``, ``-``."""

    reason = "invalid_transfer_id"


class NotAccountOwner(Forbidden):
    """Only an account's owner may move money out of it or read it."""

    reason = "not_account_owner"


class DevModeOnly(Forbidden):
    """Issuing funds from nothing is a development convenience, off in production."""

    reason = "dev_mode_only"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: an agent did (signed request) or the operator (admin token)."""

    did: str = ""
    admin: bool = False


def check_client_transfer_id(transfer_id: str) -> str:
    """Return ``transfer_id`` if a client may use it; a typed error otherwise."""
    if not transfer_id:
        raise MissingTransferId("give a transfer_id (your idempotency key)")
    if not _CLIENT_ID.match(transfer_id):
        raise InvalidTransferId("transfer_id: 1-100 of A-Z a-z 0-9 . _ -")
    return transfer_id


class LedgerAccess:
    """The ledger operations agents and operators may call, with their authorization."""

    def __init__(
        self,
        ledger: LedgerService,
        store: LedgerStore,
        directory: AgentDirectory,
        metrics: NodeMetrics,
        *,
        dev_mode: bool,
    ) -> None:
        self.ledger = ledger
        self._store = store
        self._directory = directory
        self._metrics = metrics
        self._dev_mode = dev_mode

    # --- accounts -------------------------------------------------------------------

    async def agent_account(self, account_id: str) -> Account:
        """The account, opening it first when it is a registered agent's did."""
        try:
            return await self.ledger.balance(account_id)
        except errors.UnknownAccount:
            if account_id.startswith("did:") and await self._directory.is_registered(account_id):
                return await self.ledger.open_account(account_id, owner=account_id)
            raise

    async def _owned(self, caller: Caller, account_id: str, *, spending: bool) -> Account:
        account = await self.agent_account(account_id)
        if caller.admin and not spending:
            return account
        if account.owner != caller.did or (spending and account.kind is not AccountKind.AGENT):
            verb = "spend from" if spending else "read"
            raise NotAccountOwner(f"you may not {verb} account {account_id}")
        return account

    async def balance(self, caller: Caller, account_id: str) -> Account:
        """An account's balances; its owner's (or the operator's) to read."""
        return await self._owned(caller, account_id, spending=False)

    async def history(
        self, caller: Caller, account_id: str, after: int, limit: int
    ) -> list[HistoryEntry]:
        """A page of the account's transfers after sequence ``after``, oldest first."""
        await self._owned(caller, account_id, spending=False)
        return await self.ledger.history(account_id, after=after, limit=limit)

    # --- moving money ---------------------------------------------------------------

    async def transfer(
        self,
        caller: Caller,
        *,
        transfer_id: str,
        debit_account: str,
        credit_account: str,
        amount: int,
        memo: str = "",
    ) -> TransferOutcome:
        """Pay at once from the caller's account; a retry with the same id is a no-op."""
        check_client_transfer_id(transfer_id)
        await self._owned(caller, debit_account, spending=True)
        await self._credit_side(credit_account)
        outcome = await self._counted(
            self.ledger.transfer(
                debit_account, credit_account, amount, transfer_id=transfer_id, memo=memo
            )
        )
        self._count("duplicate" if outcome.duplicate else "posted")
        return outcome

    async def reserve(
        self,
        caller: Caller,
        *,
        transfer_id: str,
        debit_account: str,
        credit_account: str,
        amount: int,
        timeout_ms: int = 0,
        condition: str = "",
        memo: str = "",
    ) -> Transfer:
        """Hold funds in escrow (optionally hash-locked) from the caller's account."""
        check_client_transfer_id(transfer_id)
        await self._owned(caller, debit_account, spending=True)
        await self._credit_side(credit_account)
        transfer = await self._counted(
            self.ledger.reserve(
                debit_account,
                credit_account,
                amount,
                timeout_ms=timeout_ms,
                condition=condition,
                transfer_id=transfer_id,
                memo=memo,
            )
        )
        self._count("reserved")
        return transfer

    async def post(
        self, caller: Caller, pending_id: str, *, transfer_id: str, amount: int = 0
    ) -> TransferOutcome:
        """Settle a reservation the caller made (``amount`` 0 posts all of it)."""
        check_client_transfer_id(transfer_id)
        await self._pending_of(caller, pending_id, payer_only=True)
        outcome = await self._counted(
            self.ledger.post(pending_id, amount=amount, transfer_id=transfer_id)
        )
        self._count("duplicate" if outcome.duplicate else "posted")
        return outcome

    async def void(self, caller: Caller, pending_id: str, *, transfer_id: str) -> Transfer:
        """Cancel a reservation the caller made, releasing all of it."""
        check_client_transfer_id(transfer_id)
        await self._pending_of(caller, pending_id, payer_only=True)
        transfer = await self._counted(self.ledger.void(pending_id, transfer_id=transfer_id))
        self._count("voided")
        return transfer

    async def fulfil(
        self, caller: Caller, pending_id: str, *, transfer_id: str, preimage: bytes
    ) -> TransferOutcome:
        """Post a hash-locked reservation by revealing its preimage (payer or payee)."""
        check_client_transfer_id(transfer_id)
        await self._pending_of(caller, pending_id, payer_only=False)
        outcome = await self._counted(
            self.ledger.fulfil_conditional(pending_id, preimage, transfer_id=transfer_id)
        )
        self._count("duplicate" if outcome.duplicate else "posted")
        return outcome

    async def issue(
        self, caller: Caller, account_id: str, amount: int, *, transfer_id: str | None = None
    ) -> TransferOutcome:
        """Dev-mode funding by the operator from the ledger's operator account."""
        if not caller.admin:
            raise Forbidden("issuing funds needs the admin token", reason="admin_required")
        if not self._dev_mode:
            raise DevModeOnly("issuing funds is only allowed when the node runs in dev mode")
        if transfer_id is not None:
            check_client_transfer_id(transfer_id)
        await self.agent_account(account_id)
        outcome = await self._counted(
            self.ledger.issue(account_id, amount, transfer_id=transfer_id)
        )
        self._count("issued")
        return outcome

    # --- receipts -------------------------------------------------------------------

    async def receipt(self, caller: Caller, transfer_id: str) -> Receipt:
        """The signed receipt of a posted transfer, for either party (or the operator)."""
        transfer = await self._store.get_transfer(transfer_id)
        if transfer is None:
            raise errors.TransferNotFound(f"no transfer {transfer_id}")
        if not caller.admin and not await self._is_party(caller, transfer):
            raise NotAccountOwner("only the parties to a transfer may read its receipt")
        return await self.ledger.receipt(transfer_id)

    # --- internals ------------------------------------------------------------------

    async def _credit_side(self, account_id: str) -> None:
        # Opens a registered agent's account on its first payment; anything else
        # unknown is left for the ledger to refuse with unknown_account.
        try:
            await self.agent_account(account_id)
        except errors.UnknownAccount:
            pass

    async def _pending_of(self, caller: Caller, pending_id: str, *, payer_only: bool) -> Transfer:
        pending = await self._store.get_transfer(pending_id)
        if pending is None:
            raise errors.PendingNotFound(f"no pending transfer {pending_id}")
        payer = await self.ledger.balance(pending.debit_account)
        if payer.owner == caller.did and payer.kind is AccountKind.AGENT:
            return pending
        if not payer_only and await self._is_party(caller, pending):
            return pending
        raise NotAccountOwner(f"only the payer may resolve reservation {pending_id}")

    async def _is_party(self, caller: Caller, transfer: Transfer) -> bool:
        for account_id in (transfer.debit_account, transfer.credit_account):
            account = await self._store.get_account(account_id)
            if account is not None and account.owner == caller.did:
                return True
        return False

    async def _counted(self, operation: Awaitable[T]) -> T:
        try:
            return await operation
        except errors.LedgerError:
            self._count("refused")
            raise

    def _count(self, outcome: str) -> None:
        self._metrics.ledger_transfers.labels(outcome).inc()


async def open_ledger_store(config: Config) -> LedgerStore:
    """The configured ledger store, started: PostgreSQL for a URL, else ``ledger.db``."""
    if is_postgres_url(config.database_url):
        from coral.store.ledger_postgres import PostgresLedgerStore

        return await PostgresLedgerStore.open(config.database_url)
    from coral.store.ledger_sqlite import SqliteLedgerStore

    return await SqliteLedgerStore.open(ledger_db_path(config))


def is_postgres_url(url: str) -> bool:
    """True for ``postgresql://`` (or ``postgres://``) database URLs."""
    return url.startswith(("postgresql://", "postgres://"))


def ledger_db_path(config: Config) -> Path:
    """The ledger's own SQLite file: apart from the node database, so its fsyncs are its own."""
    return config.data_dir / "ledger.db"


async def escrow_held(config: Config) -> int:
    """Sum of all reserved (pending) debits: what escrow holds right now.

    A read-only side connection, so the gauge never queues behind the writer.
    """
    sql = "SELECT COALESCE(SUM(debits_pending), 0) FROM ledger_accounts"
    if is_postgres_url(config.database_url):
        import asyncpg

        conn = await asyncpg.connect(config.database_url)
        try:
            return int(await conn.fetchval(sql))
        finally:
            await conn.close()
    import aiosqlite

    uri = ledger_db_path(config).resolve().as_uri() + "?mode=ro"
    async with aiosqlite.connect(uri, uri=True) as conn:
        async with conn.execute(sql) as cursor:
            row = await cursor.fetchone()
    return int(row[0]) if row is not None else 0


class LedgerSubsystem(Subsystem):
    """Payments: ``ctx.services["ledger"]`` and ``["ledger_access"]``, routes, award escrow."""

    name = "ledger"

    def __init__(self) -> None:
        super().__init__()
        self._store: LedgerStore | None = None
        self._gauge: Gauge | None = None

    async def setup(self, node: Any, ctx: NodeContext) -> None:
        from coral.api.grpc import ledger as grpc_ledger
        from coral.api.http import ledger as http_ledger
        from coral.coordination.strategies.contract_net import award_hook
        from coral.ledger_awards import AwardEscrow

        store = self._store = await open_ledger_store(ctx.config)
        service = LedgerService(store, ctx.identity, now_ms)
        access = LedgerAccess(
            service, store, ctx.require("directory"), ctx.metrics, dev_mode=ctx.config.dev_mode
        )
        ctx.services["ledger"] = service
        ctx.services["ledger_access"] = access
        awards = AwardEscrow(access, store)
        ctx.require("coordination").add_event_hook("award", award_hook(awards.on_award))
        ctx.require("gateway").checks.append(awards.admit)
        self._gauge = Gauge(
            "coral_ledger_escrow_held",
            "Funds reserved in pending transfers (escrow), in minor units",
            registry=ctx.metrics.registry,
        )
        self.http_installers.append(http_ledger.install)
        self.grpc_installers.append(grpc_ledger.install)

    async def started(self, node: Any, ctx: NodeContext) -> None:
        service: LedgerService = ctx.services["ledger"]

        async def expire() -> None:
            expired = await service.expire_due()
            if expired:
                ctx.metrics.ledger_transfers.labels("expired").inc(len(expired))

        async def refresh_gauge() -> None:
            if self._gauge is not None:
                self._gauge.set(await escrow_held(ctx.config))

        await refresh_gauge()
        self.every(EXPIRY_SWEEP_S, expire)
        self.every(ESCROW_GAUGE_S, refresh_gauge)

    async def close(self, node: Any, ctx: NodeContext) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None
