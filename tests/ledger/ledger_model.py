"""A deliberately naive ledger model and a stateful hypothesis machine over any ledger.

The model re-derives every outcome with plain dictionaries and ``deepcopy``
for linked chains, independently of ``coral.ledger.state``. The machine
drives a ledger (pure state or a store) and the model with the same random
operations and, after every step, compares results and balances and runs
``find_violations`` on the ledger's full state.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from coral.ledger import (
    AMOUNT_MAX,
    Account,
    AccountFlags,
    AccountKind,
    LedgerState,
    Transfer,
    TransferFlags,
    TransferResult,
    find_violations,
)

LIMITED = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
ACCOUNTS = [
    Account("op", "usd", kind=AccountKind.OPERATOR),
    Account("a0", "usd", flags=LIMITED),
    Account("a1", "usd", flags=LIMITED),
    Account("a2", "usd"),
    Account("cap", "usd", flags=AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS),
    Account("e0", "eur"),
]
ACCOUNT_IDS = [*(a.id for a in ACCOUNTS), "ghost"]
AMOUNTS = [-3, 0, 1, 2, 7, 40, 300, AMOUNT_MAX, AMOUNT_MAX + 1]
BALANCES = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
PREIMAGE = bytes(range(32))
CONDITION = hashlib.sha256(PREIMAGE).hexdigest()
FULFILLMENTS = ["", PREIMAGE.hex(), PREIMAGE.hex(), bytes(32).hex()]


@dataclass
class ModelAccount:
    ledger: str
    flags: AccountFlags
    balances: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BALANCES, 0))


@dataclass
class ModelPending:
    debit: str
    credit: str
    amount: int
    ledger: str
    expires_at: int
    condition: str = ""
    status: str = ""


@dataclass
class Model:
    """Trivially-correct ledger: returns an error reason (or None) per event."""

    accounts: dict[str, ModelAccount] = field(default_factory=dict)
    requests: dict[str, Transfer] = field(default_factory=dict)
    pendings: dict[str, ModelPending] = field(default_factory=dict)

    def apply_batch(self, batch: Sequence[Transfer], now: int) -> list[str | None]:
        results: list[str | None] = []
        i = 0
        while i < len(batch):
            j = i
            while j < len(batch) - 1 and batch[j].flags & TransferFlags.LINKED:
                j += 1
            chain = batch[i : j + 1]
            if chain[-1].flags & TransferFlags.LINKED:
                results += ["linked_event_failed"] * (len(chain) - 1) + ["linked_event_chain_open"]
            else:
                saved = copy.deepcopy((self.accounts, self.requests, self.pendings))
                reasons: list[str | None] = []
                for t in chain:
                    reasons.append(self.apply_one(t, now))
                    if reasons[-1] is not None:
                        break
                if reasons[-1] is not None:
                    self.accounts, self.requests, self.pendings = saved
                    if len(chain) > 1:
                        failed_at, reason = len(reasons) - 1, reasons[-1]
                        reasons = ["linked_event_failed"] * len(chain)
                        reasons[failed_at] = reason
                results += reasons
            i = j + 1
        return results

    def apply_one(self, t: Transfer, now: int) -> str | None:
        resolving = bool(t.flags & (TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING))
        if t.amount < 0 or (t.amount == 0 and not resolving):
            return "amount_must_be_positive"
        if t.amount > AMOUNT_MAX:
            return "amount_overflow"
        if not resolving:
            if t.timeout_ms and not t.flags & TransferFlags.PENDING:
                return "timeout_requires_pending"
            if t.condition and not t.timeout_ms:
                return "condition_requires_timeout"
            if t.debit_account == t.credit_account:
                return "accounts_must_differ"
        earlier = self.requests.get(t.id)
        if earlier is not None:
            return None if earlier == t else "exists_with_different_fields"
        reason = self._resolve(t, now) if resolving else self._create(t, now)
        if reason is None:
            self.requests[t.id] = t
        return reason

    def _create(self, t: Transfer, now: int) -> str | None:
        debit, credit = self.accounts.get(t.debit_account), self.accounts.get(t.credit_account)
        if debit is None or credit is None:
            return "unknown_account"
        if debit.ledger != credit.ledger:
            return "ledger_mismatch"
        pending = bool(t.flags & TransferFlags.PENDING)
        dkey, ckey = ("debits_pending", "credits_pending") if pending else BALANCES[1::2]
        if max(debit.balances[dkey], credit.balances[ckey]) + t.amount > AMOUNT_MAX:
            return "amount_overflow"
        d, c = debit.balances, credit.balances
        if (
            debit.flags & LIMITED
            and d["debits_posted"] + d["debits_pending"] + t.amount > (d["credits_posted"])
        ):
            return "exceeds_credits"
        if credit.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS and (
            c["credits_posted"] + c["credits_pending"] + t.amount > c["debits_posted"]
        ):
            return "exceeds_debits"
        d[dkey] += t.amount
        c[ckey] += t.amount
        if pending:
            expires = now + t.timeout_ms if t.timeout_ms else 0
            self.pendings[t.id] = ModelPending(
                t.debit_account, t.credit_account, t.amount, debit.ledger, expires, t.condition
            )
        return None

    def _resolve(self, t: Transfer, now: int) -> str | None:
        if t.pending_id not in self.requests:
            return "pending_not_found"
        p = self.pendings.get(t.pending_id)
        if p is None:
            return "pending_id_not_pending"
        if p.status:
            return "pending_already_resolved"
        if p.expires_at and now >= p.expires_at:
            return "pending_expired"
        amount = t.amount or p.amount
        is_post = bool(t.flags & TransferFlags.POST_PENDING)
        if not is_post and amount != p.amount:
            return "pending_amount_mismatch"
        if is_post and amount > p.amount:
            return "exceeds_pending_amount"
        if is_post and p.condition and not t.fulfillment:
            return "fulfillment_required"
        if (
            is_post
            and p.condition
            and hashlib.sha256(bytes.fromhex(t.fulfillment)).hexdigest() != (p.condition)
        ):
            return "condition_not_met"
        debit, credit = self.accounts[p.debit].balances, self.accounts[p.credit].balances
        if is_post and max(debit["debits_posted"], credit["credits_posted"]) + amount > AMOUNT_MAX:
            return "amount_overflow"
        self._release(p)
        if is_post:
            self.accounts[p.debit].balances["debits_posted"] += amount
            self.accounts[p.credit].balances["credits_posted"] += amount
        p.status = "posted" if is_post else "voided"
        return None

    def _release(self, p: ModelPending) -> None:
        self.accounts[p.debit].balances["debits_pending"] -= p.amount
        self.accounts[p.credit].balances["credits_pending"] -= p.amount

    def expire(self, now: int) -> set[str]:
        due = {
            pid
            for pid, p in self.pendings.items()
            if not p.status and p.expires_at and p.expires_at <= now
        }
        for pid in due:
            self._release(self.pendings[pid])
            self.pendings[pid].status = "expired"
        return due


class LedgerUnderTest:
    """What the machine needs from a ledger; subclasses adapt a state or a store."""

    def create_accounts(self, accounts: Sequence[Account], now: int) -> None:
        raise NotImplementedError

    def create_transfers(self, batch: Sequence[Transfer], now: int) -> list[TransferResult]:
        raise NotImplementedError

    def expire(self, now: int) -> set[str]:
        raise NotImplementedError

    def snapshot(self) -> LedgerState:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources after one example."""


class PureLedger(LedgerUnderTest):
    """The pure LedgerState, driven directly."""

    def __init__(self) -> None:
        self.state = LedgerState()

    def create_accounts(self, accounts: Sequence[Account], now: int) -> None:
        assert all(r.ok for r in self.state.create_accounts(accounts, now))

    def create_transfers(self, batch: Sequence[Transfer], now: int) -> list[TransferResult]:
        return self.state.create_transfers(batch, now)

    def expire(self, now: int) -> set[str]:
        return {r.pending_id for r in self.state.expire_pending(now)}

    def snapshot(self) -> LedgerState:
        return self.state


# Weighted so that most events succeed and every error still turns up.
DEBITS = [*["op"] * 5, *["a0"] * 4, *["a1"] * 3, *["a2"] * 3, "cap", "e0", "ghost"]
CREDITS = [*["a0"] * 4, *["a1"] * 4, *["a2"] * 3, *["op"] * 2, "cap", "e0", "ghost"]
amounts = st.sampled_from([*[1, 2, 7, 40, 300] * 6, *AMOUNTS])


class LedgerMachine(RuleBasedStateMachine):
    """Random operations against a ledger and the model, compared step by step."""

    def make_ledger(self) -> LedgerUnderTest:
        return PureLedger()

    def __init__(self) -> None:
        super().__init__()
        self.ledger = self.make_ledger()
        self.model = Model()
        self.now = 1_000
        self.sent: list[Transfer] = []
        self.fresh = 0
        self.ledger.create_accounts(ACCOUNTS, self.now)
        for a in ACCOUNTS:
            self.model.accounts[a.id] = ModelAccount(a.ledger, a.flags)

    def teardown(self) -> None:
        self.ledger.close()

    def _submit(self, batch: list[Transfer]) -> None:
        expected = self.model.apply_batch(batch, self.now)
        results = self.ledger.create_transfers(batch, self.now)
        actual = [r.error.reason if r.error else None for r in results]
        assert actual == expected, (batch, actual, expected)
        self.sent += batch

    def _new_id(self, data: st.DataObject) -> str:
        if self.sent and data.draw(st.integers(0, 9)) == 0:  # sometimes reuse an id
            return data.draw(st.sampled_from(self.sent)).id
        self.fresh += 1
        return f"n{self.fresh}"

    def _draw_new(self, data: st.DataObject) -> Transfer:
        pending = data.draw(st.booleans())
        locked = pending and data.draw(st.integers(0, 3)) == 0
        return Transfer(
            id=self._new_id(data),
            debit_account=data.draw(st.sampled_from(DEBITS)),
            credit_account=data.draw(st.sampled_from(CREDITS)),
            amount=data.draw(amounts),
            flags=TransferFlags.PENDING if pending else TransferFlags.NONE,
            timeout_ms=data.draw(st.sampled_from([0, 5, 50])) if pending else 0,
            condition=CONDITION if locked else "",
        )

    @rule(data=st.data())
    def create(self, data: st.DataObject) -> None:
        self._submit([self._draw_new(data)])

    @rule(data=st.data(), size=st.integers(2, 3), close=st.sampled_from([True, True, False]))
    def linked_chain(self, data: st.DataObject, size: int, close: bool) -> None:
        chain = [self._draw_new(data) for _ in range(size)]
        chain = [
            replace(t, flags=t.flags | TransferFlags.LINKED) if i < size - 1 or not close else t
            for i, t in enumerate(chain)
        ]
        self._submit(chain)

    @precondition(lambda self: bool(self.model.pendings))
    @rule(data=st.data(), post=st.booleans())
    def resolve(self, data: st.DataObject, post: bool) -> None:
        known = sorted(self.model.pendings)
        pending = data.draw(st.sampled_from([*known * 8, "n1", "missing"]))
        full = self.model.pendings[pending].amount if pending in self.model.pendings else 1
        amount = data.draw(st.sampled_from([0, 0, 1, full, full + 1, -1]))
        flags = TransferFlags.POST_PENDING if post else TransferFlags.VOID_PENDING
        fulfillment = data.draw(st.sampled_from(FULFILLMENTS)) if post else ""
        self._submit(
            [
                Transfer(
                    id=self._new_id(data),
                    pending_id=pending,
                    amount=amount,
                    flags=flags,
                    fulfillment=fulfillment,
                )
            ]
        )

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        self._submit([data.draw(st.sampled_from(self.sent))])

    @rule(ms=st.sampled_from([1, 4, 30, 100]))
    def tick(self, ms: int) -> None:
        self.now += ms

    @rule()
    def expire(self) -> None:
        assert self.ledger.expire(self.now) == self.model.expire(self.now)

    @invariant()
    def ledger_is_sound_and_matches_model(self) -> None:
        state = self.ledger.snapshot()
        assert find_violations(state) == []
        for account_id, model_account in self.model.accounts.items():
            account = state.accounts[account_id]
            assert {b: getattr(account, b) for b in BALANCES} == model_account.balances
        assert set(state.transfers) == set(self.model.requests)
        resolved = {pid for pid, p in self.model.pendings.items() if p.status}
        assert set(state.resolutions) == resolved
