"""LedgerState semantics: two-phase transfers, linked chains, idempotency, bad input."""

from __future__ import annotations

import copy

import pytest

from coral.ledger import (
    AMOUNT_MAX,
    Account,
    AccountFlags,
    AccountKind,
    LedgerState,
    PendingStatus,
    Transfer,
    TransferFlags,
    condition_for,
    find_violations,
)
from coral.ledger import errors as e
from coral.protocol.errors import Conflict, Forbidden, InvalidMessage, NotFound

LIMITED = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
PENDING, POST, VOID, LINKED = (
    TransferFlags.PENDING,
    TransferFlags.POST_PENDING,
    TransferFlags.VOID_PENDING,
    TransferFlags.LINKED,
)
PREIMAGE = bytes(range(32))


SEED_ACCOUNTS = [
    Account("op", "usd", kind=AccountKind.OPERATOR),
    Account("alice", "usd", flags=LIMITED),
    Account("bob", "usd", flags=LIMITED),
    Account("euro", "eur"),
]
#: op funds alice with 100; alice holds 30 (plain), 10 (hash-locked) and a voided 5 for bob.
SEED_TRANSFERS = [
    Transfer("fund", "op", "alice", 100),
    Transfer("held", "alice", "bob", 30, flags=PENDING, timeout_ms=1000),
    Transfer(
        "locked",
        "alice",
        "bob",
        10,
        flags=PENDING,
        timeout_ms=500,
        condition=condition_for(PREIMAGE),
    ),
    Transfer("gone", "alice", "bob", 5, flags=PENDING),
    Transfer("gone-void", pending_id="gone", flags=VOID),
]


@pytest.fixture
def ledger() -> LedgerState:
    """The seed accounts and transfers, applied at time 1-3."""
    state = LedgerState()
    assert all(r.ok for r in state.create_accounts(SEED_ACCOUNTS, now_ms=1))
    assert all(r.ok for r in state.create_transfers(SEED_TRANSFERS, now_ms=3))
    state.take_changes()
    return state


def balances(state: LedgerState) -> dict[str, tuple[int, int, int, int]]:
    return {
        a.id: (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
        for a in state.accounts.values()
    }


def test_simple_transfer_moves_posted_balances(ledger: LedgerState) -> None:
    [result] = ledger.create_transfers([Transfer("pay", "alice", "bob", 20)], 10)
    assert result.ok and result.transfer is not None and result.transfer.created_at == 10
    assert ledger.accounts["alice"].available == 100 - 20 - 30 - 10
    assert ledger.accounts["bob"].balance == 20
    assert find_violations(ledger) == []


def test_pending_reserves_without_touching_posted_then_partial_post_releases_rest(
    ledger: LedgerState,
) -> None:
    alice = ledger.accounts["alice"]
    assert (alice.debits_pending, alice.debits_posted) == (40, 0)
    [post] = ledger.create_transfers([Transfer("p", pending_id="held", amount=12, flags=POST)], 20)
    assert post.unwrap().amount == 12 and post.unwrap().debit_account == "alice"
    alice, bob = ledger.accounts["alice"], ledger.accounts["bob"]
    assert (alice.debits_pending, alice.debits_posted) == (10, 12)
    assert (bob.credits_pending, bob.credits_posted) == (10, 12)
    assert ledger.resolutions["held"].status is PendingStatus.POSTED
    assert find_violations(ledger) == []


def test_post_without_amount_posts_the_full_reservation(ledger: LedgerState) -> None:
    [post] = ledger.create_transfers([Transfer("p", pending_id="held", flags=POST)], 20)
    assert post.unwrap().amount == 30


def test_void_releases_everything_and_resolves_once(ledger: LedgerState) -> None:
    ledger.create_transfers([Transfer("v", pending_id="held", flags=VOID)], 20)
    assert ledger.accounts["alice"].debits_pending == 10
    [again] = ledger.create_transfers([Transfer("p", pending_id="held", flags=POST)], 21)
    assert isinstance(again.error, e.PendingAlreadyResolved)


def test_expiry_is_driven_by_the_time_passed_in(ledger: LedgerState) -> None:
    assert ledger.expire_pending(now_ms=502) == []
    expired = ledger.expire_pending(now_ms=503)
    assert [r.pending_id for r in expired] == ["locked"]
    assert expired[0].status is PendingStatus.EXPIRED
    assert ledger.accounts["alice"].debits_pending == 30
    assert ledger.expire_pending(now_ms=10_000)[0].pending_id == "held"
    assert ledger.expire_pending(now_ms=20_000) == []
    assert find_violations(ledger) == []


def test_identical_retry_returns_the_original_and_changes_nothing(ledger: LedgerState) -> None:
    first = ledger.create_transfers([Transfer("pay", "alice", "bob", 20, memo="x")], 10)[0]
    before = balances(ledger)
    again = ledger.create_transfers([Transfer("pay", "alice", "bob", 20, memo="x")], 99)[0]
    assert again.duplicate and again.transfer == first.transfer
    assert again.unwrap().created_at == 10
    assert balances(ledger) == before


def test_linked_chain_is_all_or_nothing(ledger: LedgerState) -> None:
    before = balances(ledger)
    results = ledger.create_transfers(
        [
            Transfer("c1", "alice", "bob", 50, flags=LINKED),
            Transfer("c2", pending_id="held", flags=POST | LINKED),
            Transfer("c3", "alice", "bob", 500),
        ],
        10,
    )
    assert [type(r.error) for r in results] == [
        e.LinkedEventFailed,
        e.LinkedEventFailed,
        e.ExceedsCredits,
    ]
    assert balances(ledger) == before
    assert "c1" not in ledger.transfers and "held" not in ledger.resolutions
    assert ledger.take_changes().transfers_created == []
    # The same chain that fits commits entirely.
    ok = ledger.create_transfers(
        [Transfer("d1", "alice", "bob", 50, flags=LINKED), Transfer("d2", "bob", "alice", 5)], 11
    )
    assert all(r.ok for r in ok)


def test_chain_left_open_at_end_of_batch_is_rejected(ledger: LedgerState) -> None:
    results = ledger.create_transfers(
        [Transfer("solo", "op", "bob", 1), Transfer("open", "op", "bob", 1, flags=LINKED)], 10
    )
    assert results[0].ok
    assert isinstance(results[1].error, e.LinkedEventChainOpen)


def test_chain_that_resolves_its_own_pending_rolls_back_cleanly(ledger: LedgerState) -> None:
    before = balances(ledger)
    results = ledger.create_transfers(
        [
            Transfer("own", "op", "bob", 9, flags=PENDING | LINKED, timeout_ms=50),
            Transfer("own-post", pending_id="own", flags=POST | LINKED),
            Transfer("broken", "alice", "ghost", 1),
        ],
        10,
    )
    assert isinstance(results[2].error, e.UnknownAccount)
    assert balances(ledger) == before and "own" not in ledger.transfers
    assert ledger.expire_pending(10**9) != [] and find_violations(ledger) == []


def test_account_limits_count_pending_reservations(ledger: LedgerState) -> None:
    # alice: 100 credited, 40 reserved -> only 60 can go.
    [too_much] = ledger.create_transfers([Transfer("x", "alice", "bob", 61)], 10)
    assert isinstance(too_much.error, e.ExceedsCredits)
    assert ledger.create_transfers([Transfer("y", "alice", "bob", 60)], 10)[0].ok


def test_credit_limit_flag_is_enforced() -> None:
    state = LedgerState()
    state.create_accounts(
        [
            Account("src", "usd"),
            Account("cap", "usd", flags=AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS),
        ],
        1,
    )
    [result] = state.create_transfers([Transfer("t", "src", "cap", 1)], 2)
    assert isinstance(result.error, e.ExceedsDebits)


def test_accounts_are_idempotent_and_validated() -> None:
    state = LedgerState()
    assert state.create_accounts([Account("a", "usd")], 1)[0].ok
    assert state.create_accounts([Account("a", "usd")], 2)[0].duplicate
    bad = state.create_accounts(
        [
            Account("a", "eur"),
            Account("", "usd"),
            Account("b", ""),
            Account("c", "usd", flags=AccountFlags(6)),
            Account("d", "usd", credits_posted=5),
        ],
        3,
    )
    assert [type(r.error) for r in bad] == [
        e.ExistsWithDifferentFields,
        e.IdMustNotBeEmpty,
        e.InvalidAccount,
        e.FlagsAreMutuallyExclusive,
        e.InvalidAccount,
    ]
    assert list(state.accounts) == ["a"]


BAD_TRANSFERS = [
    (Transfer("n", "alice", "bob", -5), e.AmountMustBePositive, InvalidMessage),
    (Transfer("n", "alice", "bob", 0), e.AmountMustBePositive, InvalidMessage),
    (Transfer("n", "op", "bob", AMOUNT_MAX + 1), e.AmountOverflow, InvalidMessage),
    (Transfer("", "alice", "bob", 1), e.IdMustNotBeEmpty, InvalidMessage),
    (Transfer("n", "alice", "alice", 1), e.AccountsMustDiffer, InvalidMessage),
    (Transfer("n", "alice", "nobody", 1), e.UnknownAccount, NotFound),
    (Transfer("n", "nobody", "bob", 1), e.UnknownAccount, NotFound),
    (Transfer("n", "alice", "euro", 1), e.LedgerMismatch, InvalidMessage),
    (Transfer("n", "alice", "bob", 1, ledger="eur"), e.LedgerMismatch, InvalidMessage),
    (Transfer("n", "alice", "bob", 1, flags=PENDING | POST), e.FlagsAreMutuallyExclusive, None),
    (Transfer("n", "alice", "bob", 1, timeout_ms=5), e.TimeoutRequiresPending, InvalidMessage),
    (Transfer("n", "alice", "bob", 1, flags=PENDING, timeout_ms=-1), e.InvalidTimeout, None),
    (Transfer("n", "alice", "bob", 1, memo="m" * 513), e.MemoTooLong, InvalidMessage),
    (Transfer("n", "alice", "bob", 1, memo="a\x00b"), e.TextNotStorable, InvalidMessage),
    (Transfer("n", "alice", "bob", 1, memo="lone \ud800"), e.TextNotStorable, InvalidMessage),
    (Transfer("n", "alice", "bob", 1, pending_id="held"), e.PendingIdMustBeEmpty, None),
    (Transfer("n", "alice", "bob", 61), e.ExceedsCredits, Conflict),
    (Transfer("fund", "op", "alice", 101), e.ExistsWithDifferentFields, Conflict),
    (Transfer("n", flags=POST), e.PendingIdRequired, InvalidMessage),
    (Transfer("n", pending_id="nope", flags=POST), e.PendingNotFound, NotFound),
    (Transfer("n", pending_id="fund", flags=POST), e.NotPending, Conflict),
    (Transfer("n", pending_id="held", amount=31, flags=POST), e.ExceedsPendingAmount, Conflict),
    (Transfer("n", pending_id="held", amount=3, flags=VOID), e.PendingAmountMismatch, Conflict),
    (Transfer("n", pending_id="gone", flags=POST), e.PendingAlreadyResolved, Conflict),
    (Transfer("n", "bob", "", pending_id="held", flags=POST), e.PendingAccountsMismatch, None),
    (Transfer("n", pending_id="locked", flags=POST), e.FulfillmentRequired, InvalidMessage),
    (
        Transfer("n", pending_id="locked", flags=POST, fulfillment=bytes(32).hex()),
        e.ConditionNotMet,
        Forbidden,
    ),
    (Transfer("n", pending_id="locked", flags=POST, fulfillment="zz"), e.InvalidCondition, None),
    (Transfer("n", "op", "bob", 1, condition="ab" * 32), e.InvalidCondition, None),
    (Transfer("n", "op", "bob", 1, flags=PENDING, condition="ab"), e.InvalidCondition, None),
    (
        Transfer("n", "op", "bob", 1, flags=PENDING, condition="ab" * 32),
        e.ConditionRequiresTimeout,
        None,
    ),
]


@pytest.mark.parametrize(("request_", "error", "family"), BAD_TRANSFERS)
def test_bad_transfer_gets_typed_error_and_changes_nothing(
    ledger: LedgerState,
    request_: Transfer,
    error: type[e.LedgerError],
    family: type[Exception] | None,
) -> None:
    before = copy.deepcopy((ledger.accounts, ledger.transfers, ledger.resolutions))
    [result] = ledger.create_transfers([request_], now_ms=10)
    assert type(result.error) is error
    assert isinstance(result.error, e.LedgerError)
    if family is not None:
        assert isinstance(result.error, family)
    assert result.error.reason  # a stable machine-readable reason
    assert (ledger.accounts, ledger.transfers, ledger.resolutions) == before
    assert ledger.take_changes().is_empty()
    with pytest.raises(error):
        result.unwrap()


def test_post_after_deadline_is_refused_until_swept(ledger: LedgerState) -> None:
    before = balances(ledger)
    [late] = ledger.create_transfers([Transfer("late", pending_id="held", flags=POST)], 1003)
    assert isinstance(late.error, e.PendingExpired)
    assert balances(ledger) == before


def test_overflowing_balance_is_refused() -> None:
    state = LedgerState()
    state.create_accounts([Account("x", "usd"), Account("y", "usd")], 1)
    assert state.create_transfers([Transfer("a", "x", "y", AMOUNT_MAX)], 2)[0].ok
    [result] = state.create_transfers([Transfer("b", "x", "y", 1)], 3)
    assert isinstance(result.error, e.AmountOverflow)


def test_request_digest_cannot_be_forged_by_shifting_text_between_fields() -> None:
    a = Transfer("x", "alice", "bob", 1, memo="a\x1fb")
    b = Transfer("x", "alice", "bob", 1, memo="a", fulfillment="b")
    assert a.digest() != b.digest()
    assert Transfer("x", "ab", "c", 1).digest() != Transfer("x", "a", "bc", 1).digest()
