"""Typed ledger errors, one class per TigerBeetle-style result reason.

Every class also derives from the protocol family that tells adapters how to
answer (invalid input, not found, conflict with state, forbidden), so the
node maps them to gRPC/HTTP codes without knowing the ledger.
"""

from __future__ import annotations

from coral.protocol.errors import Conflict, CoralError, Forbidden, InvalidMessage, NotFound


class LedgerError(CoralError):
    """Base for every ledger rejection; catch this to handle any of them."""


# --- malformed requests -------------------------------------------------------------


class IdMustNotBeEmpty(LedgerError, InvalidMessage):
    """An account or transfer id is empty."""

    reason = "id_must_not_be_empty"


class IdTooLong(LedgerError, InvalidMessage):
    """An id is longer than the ledger stores (128 characters)."""

    reason = "id_too_long"


class AmountMustBePositive(LedgerError, InvalidMessage):
    """A new transfer moves a positive amount; post/void amounts are never negative."""

    reason = "amount_must_be_positive"


class AmountOverflow(LedgerError, InvalidMessage):
    """An amount or a resulting balance would pass 2**63 - 1."""

    reason = "amount_overflow"


class AccountsMustDiffer(LedgerError, InvalidMessage):
    """A transfer cannot debit and credit the same account."""

    reason = "accounts_must_differ"


class LedgerMismatch(LedgerError, InvalidMessage):
    """Debit account, credit account and transfer must share one ledger (currency)."""

    reason = "ledger_mismatch"


class FlagsAreMutuallyExclusive(LedgerError, InvalidMessage):
    """Flags that cannot be combined (pending/post/void, or both account limits)."""

    reason = "flags_are_mutually_exclusive"


class PendingIdRequired(LedgerError, InvalidMessage):
    """A post or void transfer must name the pending transfer it resolves."""

    reason = "pending_id_required"


class PendingIdMustBeEmpty(LedgerError, InvalidMessage):
    """Only post and void transfers may name a pending_id."""

    reason = "pending_id_must_be_empty"


class TimeoutRequiresPending(LedgerError, InvalidMessage):
    """Only a pending transfer can carry a timeout."""

    reason = "timeout_requires_pending"


class InvalidTimeout(LedgerError, InvalidMessage):
    """A timeout is a non-negative number of milliseconds."""

    reason = "invalid_timeout"


class ConditionRequiresTimeout(LedgerError, InvalidMessage):
    """A hash-locked transfer must expire, or its funds could be locked forever."""

    reason = "condition_requires_timeout"


class InvalidCondition(LedgerError, InvalidMessage):
    """A condition is 32 bytes (64 hex digits); a fulfillment likewise."""

    reason = "invalid_condition"


class FulfillmentRequired(LedgerError, InvalidMessage):
    """Posting a hash-locked pending transfer needs the preimage."""

    reason = "fulfillment_required"


class MemoTooLong(LedgerError, InvalidMessage):
    """The memo is longer than 512 characters."""

    reason = "memo_too_long"


class TextNotStorable(LedgerError, InvalidMessage):
    """A text field holds a NUL character or a lone surrogate, which no database stores."""

    reason = "text_not_storable"


class InvalidAccount(LedgerError, InvalidMessage):
    """An account definition is malformed (empty ledger, both limit flags, nonzero balances)."""

    reason = "invalid_account"


class LinkedEventChainOpen(LedgerError, InvalidMessage):
    """The last event of a batch carries the linked flag, so its chain never closes."""

    reason = "linked_event_chain_open"


# --- references to things that do not exist ----------------------------------------------


class UnknownAccount(LedgerError, NotFound):
    """A transfer names an account that does not exist (or names none)."""

    reason = "unknown_account"


class PendingNotFound(LedgerError, NotFound):
    """post/void names a pending transfer that does not exist."""

    reason = "pending_not_found"


class TransferNotFound(LedgerError, NotFound):
    """No transfer has this id."""

    reason = "transfer_not_found"


# --- conflicts with the ledger's state ---------------------------------------------------


class ExistsWithDifferentFields(LedgerError, Conflict):
    """The id is taken by a transfer or account with different fields."""

    reason = "exists_with_different_fields"


class ExceedsCredits(LedgerError, Conflict):
    """The debit account's debits would exceed its credits (insufficient funds)."""

    reason = "exceeds_credits"


class ExceedsDebits(LedgerError, Conflict):
    """The credit account's credits would exceed its debits."""

    reason = "exceeds_debits"


class NotPending(LedgerError, Conflict):
    """post/void named a transfer that is not a pending (two-phase) transfer."""

    reason = "pending_id_not_pending"


class ExceedsPendingAmount(LedgerError, Conflict):
    """A post may not move more than the pending transfer reserved."""

    reason = "exceeds_pending_amount"


class PendingAmountMismatch(LedgerError, Conflict):
    """A void must release the full reserved amount (or name no amount)."""

    reason = "pending_amount_mismatch"


class PendingAccountsMismatch(LedgerError, Conflict):
    """post/void names accounts that differ from the pending transfer's."""

    reason = "pending_accounts_mismatch"


class PendingAlreadyResolved(LedgerError, Conflict):
    """The pending transfer was already posted, voided or expired."""

    reason = "pending_already_resolved"


class PendingExpired(LedgerError, Conflict):
    """The pending transfer's deadline passed; it can no longer be posted or voided."""

    reason = "pending_expired"


class LinkedEventFailed(LedgerError, Conflict):
    """Another event in this event's linked chain failed, so none of them applied."""

    reason = "linked_event_failed"


class NotPosted(LedgerError, Conflict):
    """A receipt exists only for posted transfers."""

    reason = "transfer_not_posted"


# --- authorisation -------------------------------------------------------------------


class ConditionNotMet(LedgerError, Forbidden):
    """The fulfillment's SHA-256 is not the transfer's condition (wrong preimage)."""

    reason = "condition_not_met"
