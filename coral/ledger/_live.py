"""An account whose balances a batch is changing, held as plain integers.

``LedgerState`` changes balances here and builds one new frozen ``Account``
per changed account when the batch (or group) ends, instead of a new
``Account`` per balance change.
"""

from __future__ import annotations

from coral.ledger.model import Account

Balances = tuple[int, int, int, int]


class LiveBalances:
    """An account whose balances are being changed: plain mutable integers."""

    __slots__ = (
        "account",
        "credits_pending",
        "credits_posted",
        "debits_pending",
        "debits_posted",
        "flags",
        "id",
        "ledger",
    )

    def __init__(self, account: Account) -> None:
        self.account = account
        self.id = account.id
        self.ledger = account.ledger
        self.flags = int(account.flags)
        self.debits_pending = account.debits_pending
        self.debits_posted = account.debits_posted
        self.credits_pending = account.credits_pending
        self.credits_posted = account.credits_posted

    def balances(self) -> Balances:
        """The four balances now (what a linked chain's savepoint keeps)."""
        return (self.debits_pending, self.debits_posted, self.credits_pending, self.credits_posted)

    def restore(self, balances: Balances) -> None:
        """Put back balances taken by ``balances()`` (a failed chain's undo)."""
        (self.debits_pending, self.debits_posted, self.credits_pending, self.credits_posted) = (
            balances
        )

    def settled(self) -> Account | None:
        """The account with the new balances, or None when they ended where they began."""
        a = self.account
        if (
            self.debits_pending == a.debits_pending
            and self.debits_posted == a.debits_posted
            and self.credits_pending == a.credits_pending
            and self.credits_posted == a.credits_posted
        ):
            return None
        return Account(
            a.id,
            a.ledger,
            a.owner,
            a.kind,
            a.flags,
            self.debits_pending,
            self.debits_posted,
            self.credits_pending,
            self.credits_posted,
            a.created_at,
        )
