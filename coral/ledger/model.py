"""Ledger value objects: accounts, transfers, pending resolutions, results.

All amounts are integers in minor units. Accounts and transfers are
immutable records (an account's four balance fields change by replacing the
record); corrections are new transfers, never edits.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from typing import Any

from coral.ledger.errors import LedgerError

#: Largest amount or balance: balances live in signed 64-bit database columns.
AMOUNT_MAX = 2**63 - 1


class AccountFlags(enum.IntFlag):
    """Balance limits, numbered as in TigerBeetle."""

    NONE = 0
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1 << 1
    CREDITS_MUST_NOT_EXCEED_DEBITS = 1 << 2


class TransferFlags(enum.IntFlag):
    """Transfer behaviour, numbered as in TigerBeetle."""

    NONE = 0
    LINKED = 1 << 0
    PENDING = 1 << 1
    POST_PENDING = 1 << 2
    VOID_PENDING = 1 << 3


def has_flag(flags: int, flag: int) -> bool:
    """True when ``flags`` has any bit of ``flag`` set.

    ``int.__and__`` skips IntFlag's operator, which builds a new enum value on
    every call and was a third of the state machine's time.
    """
    return int.__and__(flags, flag) != 0


class AccountKind(enum.StrEnum):
    """Who an account belongs to, which decides its default limits."""

    AGENT = "agent"
    NODE_SETTLEMENT = "node_settlement"
    TEAM_ESCROW = "team_escrow"
    OPERATOR = "operator"


class PendingStatus(enum.StrEnum):
    """How a pending transfer ended; a pending ends at most once."""

    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


_UNPOSTED = TransferFlags.PENDING | TransferFlags.VOID_PENDING


@dataclass(frozen=True, slots=True)
class Account:
    """A double-entry account on one ledger (currency) with its four balances."""

    id: str
    ledger: str
    owner: str = ""
    kind: AccountKind = AccountKind.AGENT
    flags: AccountFlags = AccountFlags.NONE
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0
    created_at: int = 0

    @property
    def balance(self) -> int:
        """Posted credits minus posted debits: what an agent account holds."""
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        """Balance less what is reserved by pending debits."""
        return self.credits_posted - self.debits_posted - self.debits_pending

    def definition(self) -> tuple[str, str, str, str, int]:
        """The client-chosen fields, compared when an account id is reused."""
        return (self.id, self.ledger, self.owner, str(self.kind), int(self.flags))

    def with_changes(
        self,
        *,
        debits_pending: int | None = None,
        debits_posted: int | None = None,
        credits_pending: int | None = None,
        credits_posted: int | None = None,
    ) -> Account:
        """Return a copy with the given balance fields replaced."""
        # Direct construction: dataclasses.replace is the hot spot of a busy ledger.
        return Account(
            self.id,
            self.ledger,
            self.owner,
            self.kind,
            self.flags,
            self.debits_pending if debits_pending is None else debits_pending,
            self.debits_posted if debits_posted is None else debits_posted,
            self.credits_pending if credits_pending is None else credits_pending,
            self.credits_posted if credits_posted is None else credits_posted,
            self.created_at,
        )


@dataclass(frozen=True, slots=True)
class Transfer:
    """A request to move ``amount`` from ``debit_account`` to ``credit_account``.

    For post/void, the accounts, ledger and (for post) amount may be left empty
    or zero and are then taken from the pending transfer. ``created_at``,
    ``expires_at`` and ``request_digest`` are set by the ledger when it stores
    the transfer.
    """

    id: str
    debit_account: str = ""
    credit_account: str = ""
    amount: int = 0
    ledger: str = ""
    flags: TransferFlags = TransferFlags.NONE
    pending_id: str = ""
    timeout_ms: int = 0
    condition: str = ""
    fulfillment: str = ""
    memo: str = ""
    created_at: int = 0
    expires_at: int = 0
    request_digest: str = ""

    @property
    def is_pending(self) -> bool:
        """True for a two-phase reservation."""
        return has_flag(self.flags, TransferFlags.PENDING)

    @property
    def is_post(self) -> bool:
        """True for a transfer that posts a reservation."""
        return has_flag(self.flags, TransferFlags.POST_PENDING)

    @property
    def is_void(self) -> bool:
        """True for a transfer that voids a reservation."""
        return has_flag(self.flags, TransferFlags.VOID_PENDING)

    @property
    def is_posted(self) -> bool:
        """True when this transfer moved posted balances (simple or post_pending)."""
        return not has_flag(self.flags, _UNPOSTED)

    def digest(self) -> str:
        """SHA-256 over the client-supplied fields: equal digests mean a true retry."""
        # Each field length-prefixed ("<len>:<value>", in this order), so no choice of
        # memo or id can make two requests collide. One f-string: this runs once per
        # transfer on the ledger's hot path, and stored digests must never change.
        i, d, c, le, p = (
            self.id,
            self.debit_account,
            self.credit_account,
            self.ledger,
            self.pending_id,
        )
        cd, fu, me = self.condition, self.fulfillment, self.memo
        a, f, t = str(self.amount), str(int(self.flags)), str(self.timeout_ms)
        encoded = (
            f"{len(i)}:{i}{len(d)}:{d}{len(c)}:{c}{len(a)}:{a}{len(le)}:{le}{len(f)}:{f}"
            f"{len(p)}:{p}{len(t)}:{t}{len(cd)}:{cd}{len(fu)}:{fu}{len(me)}:{me}"
        )
        return hashlib.sha256(encoded.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary of every field."""
        return {
            "id": self.id,
            "debit_account": self.debit_account,
            "credit_account": self.credit_account,
            "amount": self.amount,
            "ledger": self.ledger,
            "flags": int(self.flags),
            "pending_id": self.pending_id,
            "timeout_ms": self.timeout_ms,
            "condition": self.condition,
            "fulfillment": self.fulfillment,
            "memo": self.memo,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True, slots=True)
class Resolution:
    """The single event that ends a pending transfer."""

    pending_id: str
    status: PendingStatus
    resolved_at: int
    #: The post/void transfer's id; empty when the pending expired.
    by_transfer: str = ""


@dataclass(frozen=True, slots=True)
class TransferResult:
    """The outcome of one event of a create_transfers batch.

    Exactly one of ``transfer`` (the stored transfer, also for a retried id)
    and ``error`` is set.
    """

    id: str
    transfer: Transfer | None = None
    error: LedgerError | None = None
    #: True when the id already existed with the same fields (a safe retry).
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        """True when the event succeeded (or was an identical retry)."""
        return self.error is None

    def unwrap(self) -> Transfer:
        """Return the transfer or raise the typed error."""
        if self.error is not None:
            raise self.error
        assert self.transfer is not None
        return self.transfer


@dataclass(frozen=True, slots=True)
class AccountResult:
    """The outcome of creating one account."""

    id: str
    account: Account | None = None
    error: LedgerError | None = None
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        """True when the event succeeded (or was an identical retry)."""
        return self.error is None

    def unwrap(self) -> Account:
        """Return the account or raise the typed error."""
        if self.error is not None:
            raise self.error
        assert self.account is not None
        return self.account


@dataclass(slots=True)
class LedgerChanges:
    """What one run of the state machine created or touched, for a store to persist."""

    accounts_created: list[Account] = field(default_factory=list)
    accounts_updated: dict[str, Account] = field(default_factory=dict)
    transfers_created: list[Transfer] = field(default_factory=list)
    resolutions_created: list[Resolution] = field(default_factory=list)

    def is_empty(self) -> bool:
        """True when nothing needs persisting."""
        return not (
            self.accounts_created
            or self.accounts_updated
            or self.transfers_created
            or self.resolutions_created
        )


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A transfer as it appears in an account's history, with its store sequence number."""

    seq: int
    transfer: Transfer
