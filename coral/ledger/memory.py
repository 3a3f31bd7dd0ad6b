"""In-memory twin of the ledger's storage port, for fast domain tests.

``MemoryLedgerStore`` applies every batch to one ``LedgerState`` (the same
state machine the database adapters run inside each group commit), numbers
transfers in creation order like the stores' sequence column, and refuses work
once closed. It passes the same tests as the SQLite and PostgreSQL stores
(the ``any_store`` fixture in ``tests/ledger``).
"""

from __future__ import annotations

from collections.abc import Sequence

from coral.ledger.model import (
    Account,
    AccountResult,
    HistoryEntry,
    Resolution,
    Transfer,
    TransferResult,
)
from coral.ledger.state import LedgerState
from coral.protocol.errors import StorageUnavailable


class MemoryLedgerStore:
    """``LedgerStore`` over one in-process ``LedgerState``; nothing survives the process."""

    def __init__(self) -> None:
        self._state = LedgerState()
        self._log: list[Transfer] = []
        self._closed = False

    def _open_state(self) -> LedgerState:
        if self._closed:
            raise StorageUnavailable("the ledger store is closed")
        return self._state

    def _record_changes(self) -> None:
        self._log.extend(self._state.take_changes().transfers_created)

    async def create_accounts(self, batch: Sequence[Account], now_ms: int) -> list[AccountResult]:
        """See LedgerStore.create_accounts.

        Raises:
            StorageUnavailable: the store is closed.
        """
        results = self._open_state().create_accounts(batch, now_ms)
        self._record_changes()
        return results

    async def create_transfers(
        self, batch: Sequence[Transfer], now_ms: int
    ) -> list[TransferResult]:
        """See LedgerStore.create_transfers.

        Raises:
            StorageUnavailable: the store is closed.
        """
        results = self._open_state().create_transfers(batch, now_ms)
        self._record_changes()
        return results

    async def expire_due(self, now_ms: int) -> list[Resolution]:
        """See LedgerStore.expire_due.

        Raises:
            StorageUnavailable: the store is closed.
        """
        expired = self._open_state().expire_pending(now_ms)
        self._record_changes()
        return expired

    async def get_account(self, account_id: str) -> Account | None:
        """See LedgerStore.get_account."""
        return self._state.accounts.get(account_id)

    async def get_transfer(self, transfer_id: str) -> Transfer | None:
        """See LedgerStore.get_transfer."""
        return self._state.transfers.get(transfer_id)

    async def get_resolution(self, pending_id: str) -> Resolution | None:
        """See LedgerStore.get_resolution."""
        return self._state.resolutions.get(pending_id)

    async def history(self, account_id: str, after: int, limit: int) -> list[HistoryEntry]:
        """See LedgerStore.history (sequence numbers start at 1)."""
        entries: list[HistoryEntry] = []
        for seq in range(max(after, 0) + 1, len(self._log) + 1):
            if len(entries) >= limit:
                break
            transfer = self._log[seq - 1]
            if account_id in (transfer.debit_account, transfer.credit_account):
                entries.append(HistoryEntry(seq, transfer))
        return entries

    async def load_snapshot(self) -> LedgerState:
        """See LedgerStore.load_snapshot (a copy: changing it changes nothing here)."""
        state = self._state
        return LedgerState(state.accounts.values(), self._log, state.resolutions.values())

    async def escrow_held(self) -> int:
        """See LedgerStore.escrow_held."""
        return sum(a.debits_pending for a in self._state.accounts.values())

    async def close(self) -> None:
        """Refuse further writes (reads keep answering from memory)."""
        self._closed = True
