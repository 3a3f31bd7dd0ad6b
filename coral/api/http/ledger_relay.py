"""HTTP routes of cross-node payments (``coral.ledger.relay``): send, and fulfil by the payee.

Both are signed by the agent (``Authorization: Coral ...``), exactly as the
other ledger routes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from coral.api.context import NodeContext, need
from coral.api.http.app import CTX, read_json_body
from coral.api.http.coordination import caller as signed_caller
from coral.ledger.relay import PaymentRelay
from coral.protocol.errors import InvalidMessage


def _relay(request: web.Request) -> PaymentRelay:
    relay: PaymentRelay = need(request.app[CTX].payment_relay, "payment_relay")
    return relay


async def _object(request: web.Request) -> dict[str, Any]:
    return await read_json_body(request, allow_empty=True)


async def send_remote_payment(request: web.Request) -> web.Response:
    """POST /v1/ledger/remote-payments {payment_id, to, amount, condition, timeout_ms}."""
    payer = await signed_caller(request)
    body = await _object(request)
    try:
        result = await _relay(request).send(
            payer,
            payment_id=str(body["payment_id"]),
            payee=str(body["to"]),
            amount=int(body["amount"]),
            condition=str(body["condition"]),
            timeout_ms=int(body.get("timeout_ms", 60_000)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidMessage(f"bad remote payment: {exc}", reason="invalid_request") from None
    return web.json_response(result, status=202)


async def fulfil_remote_payment(request: web.Request) -> web.Response:
    """POST /v1/ledger/remote-payments/{payment_id}/fulfil {preimage (hex)} by the payee."""
    payee = await signed_caller(request)
    body = await _object(request)
    try:
        preimage = bytes.fromhex(str(body["preimage"]))
    except (KeyError, ValueError):
        raise InvalidMessage("preimage is 32 bytes in hex", reason="invalid_request") from None
    result = await _relay(request).fulfil(payee, request.match_info["payment_id"], preimage)
    return web.json_response(result)


def install(app: web.Application, ctx: NodeContext) -> None:
    """Add the remote-payment routes to the node's HTTP app."""
    app.router.add_post("/v1/ledger/remote-payments", send_remote_payment)
    app.router.add_post("/v1/ledger/remote-payments/{payment_id}/fulfil", fulfil_remote_payment)
