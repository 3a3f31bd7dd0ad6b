"""Typed answers of the node's HTTP API, as the SDK returns them.

Where the node's JSON is exactly a domain object, the SDK returns that object
(``coral.coordination.model.Thread``, ``coral.ledger.model.Account``,
``coral.ledger.receipts.Receipt`` ...). The models here cover the answers that
have no domain twin: a node's self-description, a queued delivery, a team
summary, a page of an account's history. Each parses the node's JSON as the
node writes it (``coral/api/http`` and ``coral/api/views.py``); unknown fields
are ignored so a newer node stays readable.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, field_validator

from coral.coordination.model import HistoryPage, InboxEntry, Thread, ThreadEntry, WaitResult
from coral.federation.peer_record import PeerRecord
from coral.ledger.model import Account, HistoryEntry, Transfer
from coral.ledger.receipts import Receipt
from coral.protocol.errors import InvalidMessage

_VIEW = ConfigDict(frozen=True, extra="ignore")

T = TypeVar("T")


class NodeInfo(BaseModel):
    """``GET /v1/node``: the node's self-description, signed by its key."""

    model_config = _VIEW

    node_id: str
    version: str
    protocol_version: str
    grpc_address: str | None = None
    http_address: str | None = None
    started_at: int
    signature: str


class PeerInfo(BaseModel):
    """One entry of ``GET /v1/peers``: a known node, its signed record and standing."""

    model_config = _VIEW

    node_id: str
    record: PeerRecord
    active: bool
    banned: bool


class Forwarded(BaseModel):
    """A message for a thread another node owns, queued for delivery to ``owner``."""

    model_config = _VIEW

    message_id: str
    owner: str
    queued: bool


class Payment(BaseModel):
    """A stored transfer, its node-signed receipt (posted funds only), and if it was a retry."""

    model_config = ConfigDict(frozen=True, extra="ignore", arbitrary_types_allowed=True)

    transfer: Transfer
    receipt: Receipt | None = None
    duplicate: bool = False

    @field_validator("receipt", mode="before")
    @classmethod
    def _receipt(cls, value: Any) -> Any:
        # Receipt.from_dict checks the type tag the node signs over.
        return Receipt.from_dict(value) if isinstance(value, dict) else value

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Payment:
        """Parse the node's ``{transfer, receipt, duplicate}`` answer."""
        return cls.model_validate(data)


class LedgerHistoryPage(BaseModel):
    """``GET /v1/ledger/accounts/{id}/history``: transfers oldest first, and the next cursor."""

    model_config = _VIEW

    entries: tuple[HistoryEntry, ...]
    next_after: int


class RemotePayment(BaseModel):
    """A payment to another node's agent, held on this node until the payee collects."""

    model_config = _VIEW

    payment_id: str
    pending_id: str
    node: str
    expires_at: int


class RemoteFulfilment(BaseModel):
    """The payee's side of a remote payment, posted on its node."""

    model_config = _VIEW

    payment_id: str
    posted: str


class TeamSummary(BaseModel):
    """A team's current state as the node digests it (the signed record is the proof)."""

    model_config = _VIEW

    team_id: str
    initiator: str
    goal: str
    open: bool
    members: dict[str, str]
    key_epoch: int
    rekey_required: bool
    documents: int
    thread_ids: tuple[str, ...]


class TeamProposal(BaseModel):
    """``POST /v1/teams``: the proposed team's id and the hash of its charter."""

    model_config = _VIEW

    team_id: str
    charter_hash: str


class DocumentAccepted(BaseModel):
    """``POST /v1/teams/{id}/documents``: the applied document's hash and the team after it."""

    model_config = _VIEW

    document_hash: str
    team: TeamSummary


class _InboxItem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", arbitrary_types_allowed=True)

    cursor: int
    entry: ThreadEntry


class _WaitPage(BaseModel):
    model_config = _VIEW

    entries: tuple[_InboxItem, ...]
    cursor: int


_adapters: dict[type[Any], TypeAdapter[Any]] = {}


def parse_as(kind: type[T], data: Any) -> T:
    """Validate the node's JSON ``data`` as ``kind`` (a domain dataclass or a model here).

    Raises:
        InvalidMessage: the node's answer does not have the expected shape.
    """
    adapter = _adapters.get(kind)
    if adapter is None:
        adapter = _adapters[kind] = TypeAdapter(kind)
    try:
        value: T = adapter.validate_python(data)
    except ValueError as exc:  # pydantic's ValidationError, or a domain parser's refusal
        raise InvalidMessage(f"unexpected answer from the node: {exc}") from None
    return value


def parse_thread(data: Any) -> Thread:
    """A thread from the node's thread view."""
    return parse_as(Thread, data)


def parse_entry(data: Any) -> ThreadEntry:
    """A thread log entry (its message validated as a signed ``Message``)."""
    return parse_as(ThreadEntry, data)


def parse_history(data: Any) -> HistoryPage:
    """A page of a thread's log."""
    return parse_as(HistoryPage, data)


def parse_inbox_entry(agent: str, data: Any) -> InboxEntry:
    """One inbox item of ``agent`` (the node leaves the agent out: it is the caller)."""
    item = parse_as(_InboxItem, data)
    return InboxEntry(agent=agent, cursor=item.cursor, entry=item.entry)


def parse_wait(agent: str, data: Any) -> WaitResult:
    """A long-poll answer for ``agent``: its matching inbox entries and the new cursor."""
    page = parse_as(_WaitPage, data)
    entries = tuple(InboxEntry(agent, item.cursor, item.entry) for item in page.entries)
    return WaitResult(entries=entries, cursor=page.cursor)


def parse_account(data: Any) -> Account:
    """An account with its four balances."""
    return parse_as(Account, data)


def parse_transfer(data: Any) -> Transfer:
    """A stored transfer."""
    return parse_as(Transfer, data)


def parse_receipt(data: Any) -> Receipt:
    """A node-signed receipt (its type tag checked).

    Raises:
        InvalidMessage: not a Coral ledger receipt.
    """
    if not isinstance(data, dict):
        raise InvalidMessage("a receipt is a JSON object")
    return Receipt.from_dict(data)


__all__ = [
    "DocumentAccepted",
    "Forwarded",
    "LedgerHistoryPage",
    "NodeInfo",
    "Payment",
    "PeerInfo",
    "RemoteFulfilment",
    "RemotePayment",
    "TeamProposal",
    "TeamSummary",
    "parse_account",
    "parse_as",
    "parse_entry",
    "parse_history",
    "parse_inbox_entry",
    "parse_receipt",
    "parse_thread",
    "parse_transfer",
    "parse_wait",
]
