"""Stateless checks on a single account or transfer request.

These run before the state machine looks at balances, in a fixed order, so
the same bad request always yields the same (first applicable) error.
"""

from __future__ import annotations

import hashlib

from coral.ledger import errors
from coral.ledger.model import AMOUNT_MAX, Account, AccountFlags, Transfer, TransferFlags

MAX_ID_LENGTH = 128
MAX_MEMO_LENGTH = 512
_PHASE_FLAGS = TransferFlags.PENDING | TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING
_BOTH_LIMITS = (
    AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
)
_ALLOWED_PHASES = frozenset(
    int(flag)
    for flag in (
        TransferFlags.NONE,
        TransferFlags.PENDING,
        TransferFlags.POST_PENDING,
        TransferFlags.VOID_PENDING,
    )
)
_RESOLVING = int(TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING)


def check_id(value: str, what: str) -> None:
    """Reject an empty or oversized id."""
    if not value:
        raise errors.IdMustNotBeEmpty(f"{what} id must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise errors.IdTooLong(f"{what} id is longer than {MAX_ID_LENGTH} characters")


def check_storable(text: str) -> None:
    """Refuse text a database cannot store: NUL (PostgreSQL) or a lone surrogate (UTF-8).

    Checked per request, so such a request fails alone instead of failing the
    commit of every request grouped with it.
    """
    if "\x00" in text:
        raise errors.TextNotStorable("text fields must not contain NUL characters")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise errors.TextNotStorable("a lone surrogate is not valid Unicode") from None


def check_account(account: Account) -> None:
    """Raise the first error that makes ``account`` unacceptable as a new account."""
    check_id(account.id, "account")
    check_storable(account.id + account.ledger + account.owner)
    if not account.ledger:
        raise errors.InvalidAccount("an account needs a ledger (currency)")
    if (account.flags & _BOTH_LIMITS) == _BOTH_LIMITS:
        raise errors.FlagsAreMutuallyExclusive("an account may limit debits or credits, not both")
    if account.debits_pending or account.debits_posted or account.credits_pending:
        raise errors.InvalidAccount("a new account starts with zero balances")
    if account.credits_posted:
        raise errors.InvalidAccount("a new account starts with zero balances")


def is_hex32(value: str) -> bool:
    """True for exactly 64 lowercase or uppercase hex digits."""
    if len(value) != 64:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


def condition_met(condition: str, fulfillment: str) -> bool:
    """True when SHA-256 of the fulfillment preimage equals the condition."""
    digest = hashlib.sha256(bytes.fromhex(fulfillment)).hexdigest()
    return digest == condition.lower()


def check_transfer_shape(transfer: Transfer) -> None:
    """Raise the first structural error of a transfer request (no state consulted)."""
    check_id(transfer.id, "transfer")
    t = transfer
    check_storable(
        t.id + t.debit_account + t.credit_account + t.ledger + t.pending_id
        + t.condition + t.fulfillment + t.memo
    )  # fmt: skip
    phases = int.__and__(transfer.flags, _PHASE_FLAGS)
    if phases not in _ALLOWED_PHASES:
        raise errors.FlagsAreMutuallyExclusive(
            "pending, post_pending and void_pending exclude each other"
        )
    if len(transfer.memo) > MAX_MEMO_LENGTH:
        raise errors.MemoTooLong(f"memo is longer than {MAX_MEMO_LENGTH} characters")
    resolving = phases & _RESOLVING
    amount = transfer.amount
    if amount < 0 or (amount == 0 and not resolving):
        raise errors.AmountMustBePositive("amount must be a positive number of minor units")
    if amount > AMOUNT_MAX:
        raise errors.AmountOverflow("amount exceeds 2**63 - 1")
    if transfer.timeout_ms < 0:
        raise errors.InvalidTimeout("timeout_ms must not be negative")
    if resolving:
        _check_resolving_shape(transfer)
    else:
        _check_new_shape(transfer)


def _check_new_shape(transfer: Transfer) -> None:
    if transfer.pending_id:
        raise errors.PendingIdMustBeEmpty("only post/void transfers name a pending_id")
    if transfer.timeout_ms and not transfer.is_pending:
        raise errors.TimeoutRequiresPending("only a pending transfer can time out")
    if transfer.fulfillment:
        raise errors.InvalidCondition("a fulfillment belongs on a post_pending transfer")
    if transfer.condition:
        if not transfer.is_pending:
            raise errors.InvalidCondition("only a pending transfer can carry a condition")
        if not is_hex32(transfer.condition):
            raise errors.InvalidCondition("a condition is 32 bytes written as 64 hex digits")
        if not transfer.timeout_ms:
            raise errors.ConditionRequiresTimeout("a hash-locked transfer must have a timeout")
    if not transfer.debit_account or not transfer.credit_account:
        raise errors.UnknownAccount("both debit_account and credit_account are required")
    if transfer.debit_account == transfer.credit_account:
        raise errors.AccountsMustDiffer("debit and credit account must differ")


def _check_resolving_shape(transfer: Transfer) -> None:
    if not transfer.pending_id:
        raise errors.PendingIdRequired("post/void transfers must name a pending_id")
    if transfer.timeout_ms:
        raise errors.TimeoutRequiresPending("only a pending transfer can time out")
    if transfer.condition:
        raise errors.InvalidCondition("only a pending transfer can carry a condition")
    if transfer.fulfillment and (transfer.is_void or not is_hex32(transfer.fulfillment)):
        raise errors.InvalidCondition("a fulfillment is 32 bytes (64 hex digits) on a post")
