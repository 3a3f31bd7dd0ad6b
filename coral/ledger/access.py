"""Who may do what with the ledger: the rules both API adapters call.

- an agent's account id is its did; it opens on first use, owned by the
  agent, never overdrawn (``debits_must_not_exceed_credits``);
- only the owner of an agent account moves money out of it (transfer,
  reserve, post, void); either party of a hash-locked reservation may
  fulfil it with the preimage, since knowing the preimage is the authority;
  team escrow, operator and settlement accounts are moved by the node only;
- reads of an account, its history and its receipts are the owner's (or
  the operator's, with the admin token); dev-mode issuance is the operator's;
- client transfer ids are required and are the idempotency keys, so a
  replayed signed request can never move money twice. They use a restricted
  alphabet, which keeps the node's own ids (``award:...``) out of reach.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from coral.agents.directory import AgentDirectory
from coral.ledger import errors
from coral.ledger.model import Account, AccountKind, HistoryEntry, Transfer
from coral.ledger.ports import LedgerStore
from coral.ledger.receipts import Receipt
from coral.ledger.service import LedgerService, TransferOutcome
from coral.protocol.errors import Forbidden, InvalidMessage

#: Account definitions kept in memory for authorization (cleared when full).
MAX_CACHED_DEFINITIONS = 100_000
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
    """The ledger operations agents and operators may call, with their authorization.

    Each method checks the caller first, then calls ``LedgerService`` and
    raises its refusals unchanged (see its methods); any method may raise
    ``StorageUnavailable`` as the service does.

    Cancellation: as for ``LedgerService``: a write already submitted may
    still commit, and retrying with the same ``transfer_id`` (required of
    clients) returns its outcome instead of moving money twice. Opening an
    agent's account on first use commits separately and is idempotent.
    """

    def __init__(
        self,
        ledger: LedgerService,
        store: LedgerStore,
        directory: AgentDirectory,
        *,
        dev_mode: bool,
        count_transfer: Callable[[str], object] | None = None,
    ) -> None:
        self.ledger = ledger
        self._store = store
        self._directory = directory
        self._count_transfer = count_transfer
        self._dev_mode = dev_mode
        # Owner, kind and ledger of an account never change, so authorization reads
        # them from memory; balances are always read fresh.
        self._definitions: dict[str, Account] = {}

    # --- accounts -------------------------------------------------------------------

    async def agent_account(self, account_id: str) -> Account:
        """The account, opening it first when it is a registered agent's did.

        Raises:
            UnknownAccount: no such account, and ``account_id`` is not the did
                of an agent registered here.
        """
        try:
            return await self.ledger.balance(account_id)
        except errors.UnknownAccount:
            if account_id.startswith("did:") and await self._directory.is_registered(account_id):
                return await self.ledger.open_account(account_id, owner=account_id)
            raise

    async def _defined(self, account_id: str) -> Account:
        """The account for its definition only (owner, kind): balances may be stale."""
        known = self._definitions.get(account_id)
        if known is None:
            known = await self.agent_account(account_id)
            if len(self._definitions) >= MAX_CACHED_DEFINITIONS:
                self._definitions.clear()
            self._definitions[account_id] = known
        return known

    async def _owned(self, caller: Caller, account_id: str, *, spending: bool) -> Account:
        if spending:
            account = await self._defined(account_id)
        else:
            account = await self.agent_account(account_id)
        if caller.admin and not spending:
            return account
        if account.owner != caller.did or (spending and account.kind is not AccountKind.AGENT):
            verb = "spend from" if spending else "read"
            raise NotAccountOwner(f"you may not {verb} account {account_id}")
        return account

    async def balance(self, caller: Caller, account_id: str) -> Account:
        """An account's balances; its owner's (or the operator's) to read.

        Raises:
            UnknownAccount: no such account (see ``agent_account``).
            NotAccountOwner: the caller neither owns it nor is the operator.
        """
        return await self._owned(caller, account_id, spending=False)

    async def history(
        self, caller: Caller, account_id: str, after: int, limit: int
    ) -> list[HistoryEntry]:
        """A page of the account's transfers after sequence ``after``, oldest first.

        Raises:
            UnknownAccount: no such account (see ``agent_account``).
            NotAccountOwner: the caller neither owns it nor is the operator.
        """
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
        """Pay at once from the caller's account; a retry with the same id is a no-op.

        Raises:
            MissingTransferId: ``transfer_id`` is empty.
            InvalidTransferId: ``transfer_id`` breaks the client id alphabet.
            UnknownAccount: the debit account does not exist.
            NotAccountOwner: the caller does not own the debit account, or it
                is not an agent account.
            LedgerError: the refusals of ``LedgerService.transfer``.
        """
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
        """Hold funds in escrow (optionally hash-locked) from the caller's account.

        Raises:
            MissingTransferId: ``transfer_id`` is empty.
            InvalidTransferId: ``transfer_id`` breaks the client id alphabet.
            UnknownAccount: the debit account does not exist.
            NotAccountOwner: the caller does not own the debit account, or it
                is not an agent account.
            LedgerError: the refusals of ``LedgerService.reserve``.
        """
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
        """Settle a reservation the caller made (``amount`` 0 posts all of it).

        Raises:
            MissingTransferId: ``transfer_id`` is empty.
            InvalidTransferId: ``transfer_id`` breaks the client id alphabet.
            PendingNotFound: no transfer ``pending_id``.
            NotAccountOwner: the caller is not the reservation's payer.
            LedgerError: the refusals of ``LedgerService.post``.
        """
        check_client_transfer_id(transfer_id)
        await self._pending_of(caller, pending_id, payer_only=True)
        outcome = await self._counted(
            self.ledger.post(pending_id, amount=amount, transfer_id=transfer_id)
        )
        self._count("duplicate" if outcome.duplicate else "posted")
        return outcome

    async def void(self, caller: Caller, pending_id: str, *, transfer_id: str) -> Transfer:
        """Cancel a reservation the caller made, releasing all of it.

        Raises:
            MissingTransferId: ``transfer_id`` is empty.
            InvalidTransferId: ``transfer_id`` breaks the client id alphabet.
            PendingNotFound: no transfer ``pending_id``.
            NotAccountOwner: the caller is not the reservation's payer.
            LedgerError: the refusals of ``LedgerService.void``.
        """
        check_client_transfer_id(transfer_id)
        await self._pending_of(caller, pending_id, payer_only=True)
        transfer = await self._counted(self.ledger.void(pending_id, transfer_id=transfer_id))
        self._count("voided")
        return transfer

    async def fulfil(
        self, caller: Caller, pending_id: str, *, transfer_id: str, preimage: bytes
    ) -> TransferOutcome:
        """Post a hash-locked reservation by revealing its preimage (payer or payee).

        Raises:
            MissingTransferId: ``transfer_id`` is empty.
            InvalidTransferId: ``transfer_id`` breaks the client id alphabet.
            PendingNotFound: no transfer ``pending_id``.
            NotAccountOwner: the caller is neither payer nor payee.
            LedgerError: the refusals of ``LedgerService.fulfil_conditional``.
        """
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
        """Dev-mode funding by the operator from the ledger's operator account.

        Raises:
            Forbidden: the caller is not the operator (``admin_required``).
            DevModeOnly: the node does not run in dev mode.
            InvalidTransferId: a given ``transfer_id`` breaks the client id alphabet.
            UnknownAccount: no such account (see ``agent_account``).
            LedgerError: the refusals of ``LedgerService.issue``.
        """
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
        """The signed receipt of a posted transfer, for either party (or the operator).

        Raises:
            TransferNotFound: no transfer ``transfer_id``.
            NotAccountOwner: the caller is neither party nor the operator.
            NotPosted: the transfer posted no funds.
        """
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
            await self._defined(account_id)
        except errors.UnknownAccount:
            pass

    async def _pending_of(self, caller: Caller, pending_id: str, *, payer_only: bool) -> Transfer:
        pending = await self._store.get_transfer(pending_id)
        if pending is None:
            raise errors.PendingNotFound(f"no pending transfer {pending_id}")
        payer = await self._defined(pending.debit_account)
        if payer.owner == caller.did and payer.kind is AccountKind.AGENT:
            return pending
        if not payer_only and await self._is_party(caller, pending):
            return pending
        raise NotAccountOwner(f"only the payer may resolve reservation {pending_id}")

    async def _is_party(self, caller: Caller, transfer: Transfer) -> bool:
        for account_id in (transfer.debit_account, transfer.credit_account):
            try:
                if (await self._defined(account_id)).owner == caller.did:
                    return True
            except errors.UnknownAccount:
                continue
        return False

    async def _counted(self, operation: Awaitable[T]) -> T:
        try:
            return await operation
        except errors.LedgerError:
            self._count("refused")
            raise

    def _count(self, outcome: str) -> None:
        if self._count_transfer is not None:
            self._count_transfer(outcome)
