"""coral.v1.LedgerService over grpc.aio: the same operations and rules as HTTP.

Agents sign each call in the ``coral-auth`` metadata (method ``RPC``, target
``/coral.v1.LedgerService/<Method>``, body = the serialized request); the
operator sends ``authorization: Bearer <admin token>``. The server
interceptor checks that (``coral.api.grpc.auth``); what each caller may do
lives in ``coral.ledger.access.LedgerAccess``.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from coral.api.context import NodeContext, need
from coral.api.grpc.auth import current_caller
from coral.ledger.access import Caller, LedgerAccess
from coral.ledger.model import Account, Transfer
from coral.ledger.receipts import Receipt, verify_receipt
from coral.ledger.service import TransferOutcome
from coral.protocol.errors import CoralError
from coral.v1 import ledger_pb2, ledger_pb2_grpc

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def account_to_proto(account: Account) -> ledger_pb2.LedgerAccount:
    """An account and its balances as protobuf."""
    return ledger_pb2.LedgerAccount(
        id=account.id,
        ledger=account.ledger,
        owner=account.owner,
        kind=str(account.kind),
        flags=int(account.flags),
        debits_pending=account.debits_pending,
        debits_posted=account.debits_posted,
        credits_pending=account.credits_pending,
        credits_posted=account.credits_posted,
        balance=account.balance,
        available=account.available,
        created_at=account.created_at,
    )


def transfer_to_proto(transfer: Transfer) -> ledger_pb2.LedgerTransfer:
    """A stored transfer as protobuf."""
    fields = transfer.to_dict()
    return ledger_pb2.LedgerTransfer(**fields)


def receipt_to_proto(receipt: Receipt) -> ledger_pb2.LedgerReceipt:
    """A receipt as protobuf (every field, signature included)."""
    body = receipt.to_dict()
    del body["type"]
    return ledger_pb2.LedgerReceipt(**body)


def receipt_from_proto(message: ledger_pb2.LedgerReceipt) -> Receipt:
    """The receipt a protobuf message carries."""
    return Receipt(
        transfer_id=message.transfer_id,
        debit_account=message.debit_account,
        credit_account=message.credit_account,
        amount=message.amount,
        ledger=message.ledger,
        pending_id=message.pending_id,
        posted_at=message.posted_at,
        memo=message.memo,
        node=message.node,
        signature=message.signature,
    )


def outcome_to_proto(outcome: TransferOutcome) -> ledger_pb2.LedgerTransferResponse:
    """A transfer outcome as protobuf."""
    response = ledger_pb2.LedgerTransferResponse(
        transfer=transfer_to_proto(outcome.transfer), duplicate=outcome.duplicate
    )
    if outcome.receipt is not None:
        response.receipt.CopyFrom(receipt_to_proto(outcome.receipt))
    return response


class LedgerServicer(ledger_pb2_grpc.LedgerServiceServicer):
    """Balances, payments, escrow and receipts for agents and the operator."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    @property
    def access(self) -> LedgerAccess:
        """The shared ledger rules."""
        access: LedgerAccess = need(self.ctx.ledger_access, "ledger_access")
        return access

    def caller(self) -> Caller:
        """The agent that signed this call, or the operator holding the admin token."""
        verified = current_caller()
        return Caller(admin=True) if verified.admin else Caller(did=verified.did)

    async def GetBalance(
        self, request: ledger_pb2.GetBalanceRequest, context: Context
    ) -> ledger_pb2.LedgerAccount:
        who = self.caller()
        account = await self.access.balance(who, request.account or who.did)
        return account_to_proto(account)

    async def Transfer(
        self, request: ledger_pb2.LedgerTransferRequest, context: Context
    ) -> ledger_pb2.LedgerTransferResponse:
        who = self.caller()
        outcome = await self.access.transfer(
            who,
            transfer_id=request.transfer_id,
            debit_account=request.from_account or who.did,
            credit_account=request.to_account,
            amount=request.amount,
            memo=request.memo,
        )
        return outcome_to_proto(outcome)

    async def History(
        self, request: ledger_pb2.LedgerHistoryRequest, context: Context
    ) -> ledger_pb2.LedgerHistoryResponse:
        who = self.caller()
        entries = await self.access.history(
            who, request.account or who.did, request.after_seq, request.limit or 100
        )
        return ledger_pb2.LedgerHistoryResponse(
            entries=[
                ledger_pb2.LedgerHistoryEntry(seq=e.seq, transfer=transfer_to_proto(e.transfer))
                for e in entries
            ],
            next_after_seq=entries[-1].seq if entries else request.after_seq,
        )

    async def GetReceipt(
        self, request: ledger_pb2.GetReceiptRequest, context: Context
    ) -> ledger_pb2.LedgerReceipt:
        who = self.caller()
        return receipt_to_proto(await self.access.receipt(who, request.transfer_id))

    async def VerifyReceipt(
        self, request: ledger_pb2.VerifyReceiptRequest, context: Context
    ) -> ledger_pb2.VerifyReceiptResponse:
        try:
            verify_receipt(
                receipt_from_proto(request.receipt), request.node or self.ctx.identity.did
            )
        except CoralError as exc:
            return ledger_pb2.VerifyReceiptResponse(valid=False, reason=exc.reason)
        return ledger_pb2.VerifyReceiptResponse(valid=True)

    async def Reserve(
        self, request: ledger_pb2.LedgerReserveRequest, context: Context
    ) -> ledger_pb2.LedgerTransfer:
        who = self.caller()
        pending = await self.access.reserve(
            who,
            transfer_id=request.transfer_id,
            debit_account=request.from_account or who.did,
            credit_account=request.to_account,
            amount=request.amount,
            timeout_ms=request.timeout_ms,
            condition=request.condition,
            memo=request.memo,
        )
        return transfer_to_proto(pending)

    async def Post(
        self, request: ledger_pb2.LedgerPostRequest, context: Context
    ) -> ledger_pb2.LedgerTransferResponse:
        who = self.caller()
        outcome = await self.access.post(
            who, request.pending_id, transfer_id=request.transfer_id, amount=request.amount
        )
        return outcome_to_proto(outcome)

    async def Void(
        self, request: ledger_pb2.LedgerVoidRequest, context: Context
    ) -> ledger_pb2.LedgerTransfer:
        who = self.caller()
        voided = await self.access.void(who, request.pending_id, transfer_id=request.transfer_id)
        return transfer_to_proto(voided)

    async def Fulfil(
        self, request: ledger_pb2.LedgerFulfilRequest, context: Context
    ) -> ledger_pb2.LedgerTransferResponse:
        who = self.caller()
        outcome = await self.access.fulfil(
            who, request.pending_id, transfer_id=request.transfer_id, preimage=request.preimage
        )
        return outcome_to_proto(outcome)

    async def Issue(
        self, request: ledger_pb2.LedgerIssueRequest, context: Context
    ) -> ledger_pb2.LedgerTransferResponse:
        who = self.caller()
        outcome = await self.access.issue(
            who, request.account, request.amount, transfer_id=request.transfer_id or None
        )
        return outcome_to_proto(outcome)


def install(server: grpc.aio.Server, ctx: NodeContext) -> list[str]:
    """Add coral.v1.LedgerService; returns its full name for health and reflection."""
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(LedgerServicer(ctx), server)
    return [ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name]
