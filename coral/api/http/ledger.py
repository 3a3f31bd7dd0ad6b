"""HTTP routes of the payment ledger (JSON in, JSON out, problem+json on refusal).

Agents authenticate every call with a signed ``Authorization: Coral ...``
value over method, path+query and body, exactly as for coordination reads;
the operator may send ``Authorization: Bearer <admin token>`` instead.
Authorization itself lives in ``coral.node.subsystems.ledger.LedgerAccess``, shared
with the gRPC adapter. Receipt verification needs no authentication.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from coral.api.auth import authenticate_admin
from coral.api.context import NodeContext, need
from coral.api.http.app import CTX, read_json_body
from coral.api.http.coordination import caller as signed_caller
from coral.ledger.access import Caller, LedgerAccess
from coral.ledger.model import Account, HistoryEntry
from coral.ledger.receipts import Receipt, verify_receipt
from coral.ledger.service import TransferOutcome
from coral.protocol.errors import CoralError, InvalidMessage


def account_view(account: Account) -> dict[str, Any]:
    """The JSON form of an account with its balances."""
    return {
        "id": account.id,
        "ledger": account.ledger,
        "owner": account.owner,
        "kind": str(account.kind),
        "flags": int(account.flags),
        "debits_pending": account.debits_pending,
        "debits_posted": account.debits_posted,
        "credits_pending": account.credits_pending,
        "credits_posted": account.credits_posted,
        "balance": account.balance,
        "available": account.available,
        "created_at": account.created_at,
    }


def outcome_view(outcome: TransferOutcome) -> dict[str, Any]:
    """A stored transfer, its receipt (when it posted funds) and whether it was a retry."""
    return {
        "transfer": outcome.transfer.to_dict(),
        "receipt": outcome.receipt.to_dict() if outcome.receipt is not None else None,
        "duplicate": outcome.duplicate,
    }


def history_view(entries: list[HistoryEntry], after: int) -> dict[str, Any]:
    """A history page and the cursor for the next one."""
    return {
        "entries": [{"seq": e.seq, "transfer": e.transfer.to_dict()} for e in entries],
        "next_after": entries[-1].seq if entries else after,
    }


async def _caller(request: web.Request) -> Caller:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        authenticate_admin(request.app[CTX], header)
        return Caller(admin=True)
    return Caller(did=await signed_caller(request))


def _access(request: web.Request) -> LedgerAccess:
    access: LedgerAccess = need(request.app[CTX].ledger_access, "ledger_access")
    return access


def _int(body: dict[str, Any], name: str, default: int | None = None) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidMessage(f"{name} must be an integer", reason="invalid_request")
    return value


def _str(body: dict[str, Any], name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str):
        raise InvalidMessage(f"{name} must be a string", reason="invalid_request")
    return value


def _query_int(request: web.Request, name: str, default: int) -> int:
    try:
        return int(request.query.get(name, default))
    except ValueError:
        raise InvalidMessage(f"{name} must be an integer", reason="invalid_query") from None


def _status(outcome: TransferOutcome) -> int:
    return 200 if outcome.duplicate else 201


async def balance(request: web.Request) -> web.Response:
    """GET /v1/ledger/accounts/{account}: balances (owner or operator)."""
    who = await _caller(request)
    account = await _access(request).balance(who, request.match_info["account"])
    return web.json_response(account_view(account))


async def history(request: web.Request) -> web.Response:
    """GET /v1/ledger/accounts/{account}/history?after=&limit=: oldest first."""
    who = await _caller(request)
    after = _query_int(request, "after", 0)
    entries = await _access(request).history(
        who, request.match_info["account"], after, _query_int(request, "limit", 100)
    )
    return web.json_response(history_view(entries, after))


async def transfer(request: web.Request) -> web.Response:
    """POST /v1/ledger/transfers {transfer_id, to, amount, memo?, from?}: pay at once."""
    who = await _caller(request)
    body = await read_json_body(request, allow_empty=True)
    outcome = await _access(request).transfer(
        who,
        transfer_id=_str(body, "transfer_id", ""),
        debit_account=_str(body, "from", who.did),
        credit_account=_str(body, "to"),
        amount=_int(body, "amount"),
        memo=_str(body, "memo", ""),
    )
    return web.json_response(outcome_view(outcome), status=_status(outcome))


async def receipt(request: web.Request) -> web.Response:
    """GET /v1/ledger/transfers/{transfer_id}/receipt: the node-signed receipt."""
    who = await _caller(request)
    signed = await _access(request).receipt(who, request.match_info["transfer_id"])
    return web.json_response(signed.to_dict())


async def verify(request: web.Request) -> web.Response:
    """POST /v1/ledger/receipts/verify {receipt, node?}: check a receipt's signature."""
    ctx = request.app[CTX]
    body = await read_json_body(request, allow_empty=True)
    raw = body.get("receipt")
    if not isinstance(raw, dict):
        raise InvalidMessage("receipt must be an object", reason="invalid_request")
    try:
        verify_receipt(Receipt.from_dict(raw), _str(body, "node", ctx.identity.did))
    except CoralError as exc:
        return web.json_response({"valid": False, "reason": exc.reason})
    return web.json_response({"valid": True, "reason": ""})


async def reserve(request: web.Request) -> web.Response:
    """POST /v1/ledger/reservations {transfer_id, to, amount, timeout_ms?, condition?}."""
    who = await _caller(request)
    body = await read_json_body(request, allow_empty=True)
    pending = await _access(request).reserve(
        who,
        transfer_id=_str(body, "transfer_id", ""),
        debit_account=_str(body, "from", who.did),
        credit_account=_str(body, "to"),
        amount=_int(body, "amount"),
        timeout_ms=_int(body, "timeout_ms", 0),
        condition=_str(body, "condition", ""),
        memo=_str(body, "memo", ""),
    )
    return web.json_response({"transfer": pending.to_dict()}, status=201)


async def post(request: web.Request) -> web.Response:
    """POST /v1/ledger/reservations/{pending_id}/post {transfer_id, amount?}."""
    who = await _caller(request)
    body = await read_json_body(request, allow_empty=True)
    outcome = await _access(request).post(
        who,
        request.match_info["pending_id"],
        transfer_id=_str(body, "transfer_id", ""),
        amount=_int(body, "amount", 0),
    )
    return web.json_response(outcome_view(outcome), status=_status(outcome))


async def void(request: web.Request) -> web.Response:
    """POST /v1/ledger/reservations/{pending_id}/void {transfer_id}."""
    who = await _caller(request)
    body = await read_json_body(request, allow_empty=True)
    voided = await _access(request).void(
        who, request.match_info["pending_id"], transfer_id=_str(body, "transfer_id", "")
    )
    return web.json_response({"transfer": voided.to_dict()}, status=201)


async def fulfil(request: web.Request) -> web.Response:
    """POST /v1/ledger/reservations/{pending_id}/fulfil {transfer_id, preimage (hex)}."""
    who = await _caller(request)
    body = await read_json_body(request, allow_empty=True)
    try:
        preimage = bytes.fromhex(_str(body, "preimage"))
    except ValueError:
        raise InvalidMessage("preimage is hex", reason="invalid_condition") from None
    outcome = await _access(request).fulfil(
        who,
        request.match_info["pending_id"],
        transfer_id=_str(body, "transfer_id", ""),
        preimage=preimage,
    )
    return web.json_response(outcome_view(outcome), status=_status(outcome))


async def issue(request: web.Request) -> web.Response:
    """POST /v1/admin/ledger/issue {account, amount, transfer_id?}: dev-mode funding."""
    authenticate_admin(request.app[CTX], request.headers.get("Authorization"))
    body = await read_json_body(request, allow_empty=True)
    transfer_id = body.get("transfer_id")
    outcome = await _access(request).issue(
        Caller(admin=True),
        _str(body, "account"),
        _int(body, "amount"),
        transfer_id=_str(body, "transfer_id") if transfer_id is not None else None,
    )
    return web.json_response(outcome_view(outcome), status=_status(outcome))


def install(app: web.Application, ctx: NodeContext) -> None:
    """Add the ledger routes."""
    app.router.add_get("/v1/ledger/accounts/{account}", balance)
    app.router.add_get("/v1/ledger/accounts/{account}/history", history)
    app.router.add_post("/v1/ledger/transfers", transfer)
    app.router.add_get("/v1/ledger/transfers/{transfer_id}/receipt", receipt)
    app.router.add_post("/v1/ledger/receipts/verify", verify)
    app.router.add_post("/v1/ledger/reservations", reserve)
    app.router.add_post("/v1/ledger/reservations/{pending_id}/post", post)
    app.router.add_post("/v1/ledger/reservations/{pending_id}/void", void)
    app.router.add_post("/v1/ledger/reservations/{pending_id}/fulfil", fulfil)
    app.router.add_post("/v1/admin/ledger/issue", issue)
