"""Ledger invariants, checked against the transfers themselves.

Used by the property tests after every step and usable by operators on a
loaded snapshot: it recomputes every balance from the immutable transfers
and reports each way the ledger disagrees with double-entry bookkeeping.
"""

from __future__ import annotations

from collections import defaultdict

from coral.ledger.model import AccountFlags, PendingStatus
from coral.ledger.state import LedgerState

_BALANCES = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")


def find_violations(state: LedgerState) -> list[str]:
    """Every invariant the state breaks, as human-readable lines (empty when sound)."""
    problems: list[str] = []
    problems += _conservation(state)
    problems += _limits(state)
    problems += _resolutions(state)
    problems += _balances_match_transfers(state)
    return problems


def _conservation(state: LedgerState) -> list[str]:
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for account in state.accounts.values():
        sums = totals[account.ledger]
        for index, name in enumerate(_BALANCES):
            sums[index] += getattr(account, name)
    problems = []
    for ledger, (dp, dpost, cp, cpost) in totals.items():
        if dp != cp:
            problems.append(f"{ledger}: pending debits {dp} != pending credits {cp}")
        if dpost != cpost:
            problems.append(f"{ledger}: posted debits {dpost} != posted credits {cpost}")
    return problems


def _limits(state: LedgerState) -> list[str]:
    problems = []
    for a in state.accounts.values():
        if any(getattr(a, name) < 0 for name in _BALANCES):
            problems.append(f"{a.id}: negative balance field")
        if a.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS:
            if a.debits_posted + a.debits_pending > a.credits_posted:
                problems.append(f"{a.id}: debits exceed credits")
        if a.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS:
            if a.credits_posted + a.credits_pending > a.debits_posted:
                problems.append(f"{a.id}: credits exceed debits")
    return problems


def _resolutions(state: LedgerState) -> list[str]:
    problems = []
    resolvers: dict[str, list[str]] = defaultdict(list)
    for transfer in state.transfers.values():
        if transfer.is_post or transfer.is_void:
            resolvers[transfer.pending_id].append(transfer.id)
    for pending_id, ids in resolvers.items():
        if len(ids) > 1:
            problems.append(f"{pending_id}: resolved by several transfers {ids}")
        resolution = state.resolutions.get(pending_id)
        if resolution is None or resolution.by_transfer != ids[0]:
            problems.append(f"{pending_id}: resolution does not name its resolving transfer")
    for pending_id, resolution in state.resolutions.items():
        pending = state.transfers.get(pending_id)
        if pending is None or not pending.is_pending:
            problems.append(f"{pending_id}: resolution of something not pending")
        elif resolution.status is PendingStatus.EXPIRED and pending_id in resolvers:
            problems.append(f"{pending_id}: both expired and resolved by a transfer")
    return problems


def _balances_match_transfers(state: LedgerState) -> list[str]:
    expected: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for t in state.transfers.values():
        debit, credit = expected[t.debit_account], expected[t.credit_account]
        if t.is_pending:
            if t.id not in state.resolutions:
                debit[0] += t.amount
                credit[2] += t.amount
        elif not t.is_void:
            debit[1] += t.amount
            credit[3] += t.amount
    problems = []
    for account in state.accounts.values():
        actual = [getattr(account, name) for name in _BALANCES]
        if actual != expected[account.id]:
            problems.append(f"{account.id}: balances {actual} != transfers {expected[account.id]}")
    return problems
