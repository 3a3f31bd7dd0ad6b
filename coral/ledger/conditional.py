"""Hash-locked conditional transfers and multi-hop payment paths (Interledger style).

A conditional transfer is a pending transfer carrying ``condition =
SHA-256(preimage)`` and a timeout. Presenting the 32-byte preimage before the
deadline posts it; anything else leaves it to be voided or to expire. A path
(sender -> node A settlement -> node B settlement -> receiver) locks every hop
with the same condition, so one preimage settles all hops or none.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from coral.ledger import errors
from coral.ledger.model import Transfer, TransferFlags
from coral.ledger.state import LedgerState

PREIMAGE_BYTES = 32


def condition_for(preimage: bytes) -> str:
    """The hex condition that ``preimage`` fulfils."""
    if len(preimage) != PREIMAGE_BYTES:
        raise errors.InvalidCondition("a preimage is exactly 32 bytes")
    return hashlib.sha256(preimage).hexdigest()


def conditional_transfer(
    transfer_id: str,
    debit_account: str,
    credit_account: str,
    amount: int,
    *,
    condition: str,
    timeout_ms: int,
    memo: str = "",
) -> Transfer:
    """A pending transfer that only the condition's preimage can post."""
    return Transfer(
        id=transfer_id,
        debit_account=debit_account,
        credit_account=credit_account,
        amount=amount,
        flags=TransferFlags.PENDING,
        timeout_ms=timeout_ms,
        condition=condition,
        memo=memo,
    )


def fulfil_transfer(transfer_id: str, pending_id: str, preimage: bytes) -> Transfer:
    """A post_pending transfer presenting ``preimage`` for a hash-locked pending."""
    if len(preimage) != PREIMAGE_BYTES:
        raise errors.InvalidCondition("a preimage is exactly 32 bytes")
    return Transfer(
        id=transfer_id,
        pending_id=pending_id,
        flags=TransferFlags.POST_PENDING,
        fulfillment=preimage.hex(),
    )


def reject_transfer(transfer_id: str, pending_id: str) -> Transfer:
    """A void_pending transfer that releases a hop's locked funds."""
    return Transfer(id=transfer_id, pending_id=pending_id, flags=TransferFlags.VOID_PENDING)


@dataclass(frozen=True, slots=True)
class PathHop:
    """One hop of a path: a debit and credit account on the ledger that holds them."""

    ledger: LedgerState
    debit_account: str
    credit_account: str


@dataclass(frozen=True, slots=True)
class PreparedPath:
    """A path whose hops all hold funds under one condition, ready to fulfil or roll back."""

    path_id: str
    hops: tuple[PathHop, ...]
    pendings: tuple[Transfer, ...]
    condition: str


def prepare_path(
    path_id: str,
    hops: Sequence[PathHop],
    amount: int,
    *,
    condition: str,
    final_timeout_ms: int,
    hop_margin_ms: int,
    now_ms: int,
) -> PreparedPath:
    """Lock ``amount`` on every hop, sender first; on any failure void what was locked.

    Deadlines shrink toward the receiver by ``hop_margin_ms`` per hop, as in
    ILP, so every intermediary has time to claim upstream after paying downstream.
    """
    pendings: list[Transfer] = []
    for index, hop in enumerate(hops):
        timeout = final_timeout_ms + (len(hops) - 1 - index) * hop_margin_ms
        request = conditional_transfer(
            f"{path_id}.hop{index}",
            hop.debit_account,
            hop.credit_account,
            amount,
            condition=condition,
            timeout_ms=timeout,
            memo=path_id,
        )
        result = hop.ledger.create_transfers([request], now_ms)[0]
        if result.error is not None:
            _void_all(path_id, hops, pendings, now_ms)
            raise result.error
        assert result.transfer is not None
        pendings.append(result.transfer)
    return PreparedPath(path_id, tuple(hops), tuple(pendings), condition)


def fulfil_path(path: PreparedPath, preimage: bytes, now_ms: int) -> list[Transfer]:
    """Post every hop with ``preimage``, receiver first, or roll all hops back.

    All hops are checked before any is posted, so a wrong preimage or an
    expired hop voids the whole path instead of leaving it half settled.
    """
    problem: errors.LedgerError | None = None
    if len(preimage) != 32 or condition_for(preimage) != path.condition:
        problem = errors.ConditionNotMet("preimage does not fulfil the path's condition")
    else:
        for hop, pending in zip(path.hops, path.pendings, strict=True):
            if pending.id in hop.ledger.resolutions:
                problem = errors.PendingAlreadyResolved(f"hop {pending.id} is resolved")
            elif pending.expires_at <= now_ms:
                problem = errors.PendingExpired(f"hop {pending.id} expired")
            if problem is not None:
                break
    if problem is not None:
        _void_all(path.path_id, path.hops, list(path.pendings), now_ms)
        raise problem
    posted = []
    for hop, pending in reversed(list(zip(path.hops, path.pendings, strict=True))):
        result = hop.ledger.create_transfers(
            [fulfil_transfer(f"{pending.id}.fulfil", pending.id, preimage)], now_ms
        )
        posted.append(result[0].unwrap())
    return posted


def _void_all(
    path_id: str, hops: Sequence[PathHop], pendings: Sequence[Transfer], now_ms: int
) -> None:
    # Hops already resolved (voided or expired earlier) need nothing more.
    for hop, pending in zip(hops, pendings, strict=False):
        if pending.id in hop.ledger.resolutions:
            continue
        if pending.expires_at > now_ms:
            hop.ledger.create_transfers([reject_transfer(f"{pending.id}.void", pending.id)], now_ms)
        else:
            hop.ledger.expire_pending(now_ms)
