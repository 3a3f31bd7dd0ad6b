"""CoralNetworkTool: AgentFlow's ``CoralAgentTool`` over a real node connection.

``call(agent_name, request)`` opens a fresh thread with the named agent,
posts the request mentioning it (a JSON object or list as a data part, other
text as text), waits for that agent's reply in that thread and returns it as
text (the JSON data part when there is one). An error reply, an unknown agent
or no answer in time raise typed ``CoralError`` subclasses.

Paying: given a ``LedgerClient``, a call to an agent whose manifest lists a
price reserves that amount in escrow for it, attaches the reservation to the
request as a ``PaymentRef``, posts it when the answer arrives and voids it
when the agent refuses or stays silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from coral.protocol.agent import AgentRecord
from coral.protocol.errors import CoralError, Expired, Forbidden, NotFound
from coral.protocol.message import Message, PaymentRef
from coral_sdk.client import CoralApiError, CoralClient
from coral_sdk.ledger import LedgerClient


class AgentUnreachable(NotFound):
    """The named agent is not in the directory (or the node refused to reach it)."""

    reason = "agent_unreachable"


class AgentRefused(CoralError):
    """The agent answered with an error reply; ``detail`` carries its reason and text."""

    reason = "agent_refused"


class AgentTimedOut(Expired):
    """The agent did not answer within the tool's timeout."""

    reason = "agent_timed_out"


class PriceAboveLimit(Forbidden):
    """The agent's price is more than this tool may pay per call."""

    reason = "price_above_limit"


def price_of(record: AgentRecord) -> int | None:
    """The cheapest non-zero price in an agent's manifest (None when it is free)."""
    amounts = [price.amount for price in record.manifest.prices if price.amount > 0]
    return min(amounts) if amounts else None


class CoralNetworkTool:
    """Implements ``CoralAgentTool``: one request, one thread, one awaited answer.

    Replies are routed by one background long-poll of this agent's mentions
    (its own cursor, independent of the agent's main loop) to the waiting call.
    """

    def __init__(
        self,
        client: CoralClient,
        *,
        timeout_s: float = 60.0,
        ledger: LedgerClient | None = None,
        max_price: int | None = None,
    ) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.ledger = ledger
        self.max_price = max_price
        #: Settled payments: agent name, amount, reservation id, "posted" or "voided".
        self.payments: list[dict[str, Any]] = []
        #: Threads this tool opened; the owning agent ignores replies arriving there.
        self.threads: set[str] = set()
        self.calls = 0
        self._waiting: dict[str, tuple[str, asyncio.Future[Message]]] = {}
        self._cursor = 0
        self._router: asyncio.Task[None] | None = None

    async def call(self, agent_name: str, request: str | dict[str, Any]) -> str:
        """Deliver ``request`` to ``agent_name`` and return its reply text."""
        try:
            record = await self.client.get_agent(agent_name)
        except CoralApiError as exc:
            raise AgentUnreachable(f"agent {agent_name!r}: {exc.detail or exc.reason}") from None
        target = record.agent
        amount = self._amount_to_pay(agent_name, record)
        thread = await self.client.create_thread(f"tool call to {agent_name}", [target])
        thread_id = thread.id
        self.threads.add(thread_id)
        self.calls += 1
        reply: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[thread_id] = (target, reply)
        self._ensure_router()
        text, data = _as_parts(request)
        payment = await self._reserve(agent_name, target, amount)
        try:
            await self.client.send(thread_id, text, data=data, mentions=[target], payment=payment)
            message = await asyncio.wait_for(reply, self.timeout_s)
            answer = _reply_text(agent_name, message)
        except TimeoutError:
            await self._settle(agent_name, payment, paid=False)
            raise AgentTimedOut(
                f"agent {agent_name!r} did not answer within {self.timeout_s:g} s"
            ) from None
        except BaseException:
            await self._settle(agent_name, payment, paid=False)
            raise
        finally:
            self._waiting.pop(thread_id, None)
        await self._settle(agent_name, payment, paid=True)
        return answer

    def _amount_to_pay(self, agent_name: str, record: AgentRecord) -> int | None:
        """What this call will pay (None: free, or no ledger); PriceAboveLimit when too dear."""
        amount = price_of(record)
        if amount is None or self.ledger is None:
            return None
        if self.max_price is not None and amount > self.max_price:
            raise PriceAboveLimit(
                f"agent {agent_name!r} asks {amount}, more than the limit {self.max_price}"
            )
        return amount

    async def _reserve(self, agent_name: str, target: str, amount: int | None) -> PaymentRef | None:
        if amount is None or self.ledger is None:
            return None
        hold = await self.ledger.reserve(
            to=target,
            amount=amount,
            timeout_ms=int((self.timeout_s + 60) * 1000),
            memo=f"tool call to {agent_name}",
        )
        ledger_name = self.client.node_id or "coral"
        return PaymentRef(ledger=ledger_name, transfer_id=hold.id, amount=amount)

    async def _settle(self, agent_name: str, payment: PaymentRef | None, *, paid: bool) -> None:
        if payment is None or self.ledger is None:
            return
        if paid:
            await self.ledger.post(payment.transfer_id)
        else:
            with contextlib.suppress(CoralApiError, OSError):
                await self.ledger.void(payment.transfer_id)
        self.payments.append(
            {
                "agent": agent_name,
                "amount": payment.amount,
                "reservation": payment.transfer_id,
                "status": "posted" if paid else "voided",
            }
        )

    async def aclose(self) -> None:
        """Stop routing replies (pending calls then time out)."""
        router, self._router = self._router, None
        if router is not None:
            router.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await router

    def _ensure_router(self) -> None:
        if self._router is None or self._router.done():
            self._router = asyncio.create_task(self._route(), name="coral-tool-replies")

    async def _route(self) -> None:
        while self._waiting:
            try:
                page = await self.client.wait("mention", after=self._cursor, timeout_ms=5_000)
            except (CoralApiError, OSError):
                await asyncio.sleep(0.2)
                continue
            for item in page.entries:
                entry = item.entry
                waiting = self._waiting.get(entry.thread_id)
                if waiting is None or entry.message.sender != waiting[0]:
                    continue
                if not waiting[1].done():
                    waiting[1].set_result(entry.message)
            self._cursor = page.cursor


def _as_parts(request: str | dict[str, Any]) -> tuple[str | None, Any]:
    if isinstance(request, dict):
        return None, request
    stripped = request.strip()
    if stripped[:1] in ("{", "["):
        with contextlib.suppress(ValueError):
            return None, json.loads(stripped)
    return request, None


def _reply_text(agent_name: str, message: Message) -> str:
    data = message.data()
    if data and isinstance(data[0], dict) and "error" in data[0]:
        error = data[0]["error"]
        raise AgentRefused(f"{agent_name} refused ({error.get('reason')}): {error.get('detail')}")
    if data:
        return json.dumps(data[0] if len(data) == 1 else data, separators=(",", ":"))
    return message.text()
