"""The storage port: what the ledger service needs from a database adapter.

Adapters (``coral.store.ledger_sqlite``, ``coral.store.ledger_postgres``)
implement ``LedgerStore``; the service depends on nothing else. Writes go
through the store's single writer, which applies ``LedgerState`` semantics
and commits each group of concurrent submissions in one durable transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from coral.ledger.model import (
    Account,
    AccountResult,
    HistoryEntry,
    LedgerChanges,
    Resolution,
    Transfer,
    TransferResult,
)
from coral.ledger.state import LedgerState


class LedgerStore(Protocol):
    """Durable ledger storage with the exact semantics of ``LedgerState``."""

    async def create_accounts(self, batch: Sequence[Account], now_ms: int) -> list[AccountResult]:
        """Create accounts; per-account results; committed durably before returning."""
        ...

    async def create_transfers(
        self, batch: Sequence[Transfer], now_ms: int
    ) -> list[TransferResult]:
        """Apply a transfer batch; per-event results; committed durably before returning."""
        ...

    async def expire_due(self, now_ms: int) -> list[Resolution]:
        """Expire pending transfers whose deadline has passed; return what expired."""
        ...

    async def get_account(self, account_id: str) -> Account | None:
        """One account with its current balances, or None."""
        ...

    async def get_transfer(self, transfer_id: str) -> Transfer | None:
        """One stored transfer, or None."""
        ...

    async def get_resolution(self, pending_id: str) -> Resolution | None:
        """How a pending transfer ended, or None while it is open (or unknown)."""
        ...

    async def history(self, account_id: str, after: int, limit: int) -> list[HistoryEntry]:
        """Transfers touching the account with sequence number > ``after``, oldest first."""
        ...

    async def load_snapshot(self) -> LedgerState:
        """Everything, as a LedgerState (audits and tests; not for hot paths)."""
        ...

    async def escrow_held(self) -> int:
        """Sum of all reserved (pending) debits: what escrow holds right now.

        Reads committed state without queueing behind the writer (for the gauge).
        """
        ...

    async def close(self) -> None:
        """Finish queued writes and release the database."""
        ...


class LedgerTransaction(Protocol):
    """One open write transaction, as the shared group-commit writer uses it."""

    async def load_working_set(
        self, transfer_ids: Collection[str], account_ids: Collection[str]
    ) -> LedgerState:
        """What a group needs, in one round trip where the database allows it.

        The transfers with ``transfer_ids`` (unknown ids skipped), the
        resolutions of those that are pending, and the accounts with
        ``account_ids`` plus every account those transfers name (locked for
        update where the database needs it).
        """
        ...

    async def load_due_pendings(self, now_ms: int, limit: int) -> list[Transfer]:
        """Open pending transfers with a deadline at or before ``now_ms``."""
        ...

    async def persist(self, changes: LedgerChanges) -> None:
        """Write new accounts, balance changes, new transfers and resolutions."""
        ...


class SyncLedgerTransaction(Protocol):
    """``LedgerTransaction`` for a database driven from its own thread (SQLite).

    The whole group (loads, state machine, persist) runs in one call on that
    thread, so a group costs one hand-off instead of one per statement.
    """

    def load_accounts(self, ids: Collection[str]) -> list[Account]:
        """Accounts by id."""
        ...

    def load_transfers(self, ids: Collection[str]) -> list[Transfer]:
        """Transfers by id; unknown ids are skipped."""
        ...

    def load_resolutions(self, pending_ids: Collection[str]) -> list[Resolution]:
        """Resolutions of the given pending transfers."""
        ...

    def load_due_pendings(self, now_ms: int, limit: int) -> list[Transfer]:
        """Open pending transfers with a deadline at or before ``now_ms``."""
        ...

    def persist(self, changes: LedgerChanges) -> None:
        """Write new accounts, balance changes, new transfers and resolutions."""
        ...


class TransactionFactory(Protocol):
    """Opens a write transaction that commits on clean exit and rolls back on error."""

    def __call__(self) -> AbstractAsyncContextManager[LedgerTransaction]:
        """Begin a write transaction."""
        ...


#: ``handler(origin_node, envelope_id, payload) -> duplicate``.
EnvelopeHandler = Callable[[str, str, dict[str, Any]], Awaitable[bool]]


class FederationOutbox(Protocol):
    """What cross-node payments need from federation: agents' homes and a durable outbox."""

    def home_of(self, agent: str) -> str | None:
        """The node ``agent`` is homed on, or None when unknown."""
        ...

    async def send_envelope(self, kind: str, key: str, destination: str, payload: Any) -> None:
        """Durably queue ``payload`` for ``destination`` (idempotent by kind and key)."""
        ...

    def on_envelope(self, kind: str, handler: EnvelopeHandler) -> None:
        """Let ``handler`` apply envelopes of ``kind`` that peers deliver."""
        ...
