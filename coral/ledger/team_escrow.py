"""Team budgets on the ledger: the ledger side of the teams package's ``TeamEscrow`` port."""

from __future__ import annotations

import hashlib
import secrets

from coral.ledger.errors import PendingAlreadyResolved, PendingExpired
from coral.ledger.model import AccountKind
from coral.ledger.service import LedgerService


class LedgerTeamEscrow:
    """``TeamEscrow`` over the node's ledger: one escrow account per team.

    Agents' ledger accounts are named by their did. The budget is reserved as
    a pending transfer from the initiator to ``team:<team_id>``; paying posts
    only the shares (the ledger returns the rest to the payer) and moves each
    share on to its member. Transfer ids derive from the hold id, so a
    repeated settle after a crash is a ledger-level no-op.
    """

    def __init__(self, ledger: LedgerService) -> None:
        self._ledger = ledger

    def _ledger_name(self, currency: str) -> str:
        # "CRL", the charter's default currency, is the node's default ledger.
        return self._ledger.default_ledger if currency == "CRL" else currency

    async def reserve_budget(
        self, team_id: str, payer_did: str, amount: int, currency: str, timeout_ms: int
    ) -> str:
        """Hold the budget from ``payer_did`` in the team's escrow account; returns the hold id."""
        hold_id = f"teamhold-{secrets.token_hex(12)}"
        if amount == 0:
            return hold_id + "-empty"
        escrow = await self._ledger.open_account(
            f"team:{team_id}",
            owner=payer_did,
            kind=AccountKind.TEAM_ESCROW,
            ledger=self._ledger_name(currency),
        )
        await self._ledger.reserve(
            payer_did,
            escrow.id,
            amount,
            timeout_ms=max(1, timeout_ms),
            transfer_id=hold_id,
            memo=f"budget of team {team_id}",
        )
        return hold_id

    async def pay_members(self, team_id: str, hold_id: str, shares: dict[str, int]) -> None:
        """Post the agreed shares out of the hold and pay each member its share."""
        total = sum(shares.values())
        if hold_id.endswith("-empty"):
            return
        if total == 0:
            await self.release(team_id, hold_id)
            return
        posted = await self._ledger.post(hold_id, amount=total, transfer_id=f"{hold_id}.post")
        escrow = posted.transfer.credit_account
        ledger = posted.transfer.ledger
        for member, amount in sorted(shares.items()):
            if amount <= 0:
                continue
            await self._ledger.open_account(member, owner=member, ledger=ledger)
            tag = hashlib.sha256(member.encode()).hexdigest()[:24]
            await self._ledger.transfer(
                escrow, member, amount, transfer_id=f"{hold_id}.pay.{tag}", memo=f"team {team_id}"
            )

    async def release(self, team_id: str, hold_id: str) -> None:
        """Void the hold; a hold that already timed out counts as released."""
        if hold_id.endswith("-empty"):
            return
        try:
            await self._ledger.void(hold_id, transfer_id=f"{hold_id}.void")
        except PendingAlreadyResolved:
            pass
        except PendingExpired:
            # Past its timeout the hold can no longer be voided, only expired; do it
            # now rather than wait for the ledger's own sweep, so funds return at once.
            await self._ledger.expire_due()
