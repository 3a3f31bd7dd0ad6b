"""The one standard Coral agent message.

``Message`` is the single definition; the protobuf ``coral.v1.Message``
mirrors it and ``coral.protocol.codec`` converts losslessly. The wire JSON of
a message is ``to_wire(message)``: absent optional fields are omitted, so the
same dictionary comes out whichever wire the message travelled on.
"""

from __future__ import annotations

import os
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ulid import ULID

from coral.protocol.errors import InvalidMessage, UnknownField

_STRICT = ConfigDict(extra="forbid", frozen=True, str_max_length=1 << 20)

Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:~-]+$")]
Did = Annotated[
    str, Field(min_length=9, max_length=128, pattern=r"^did:key:z[1-9A-HJ-NP-Za-km-z]+$")
]
Kind = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]
B64u = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]*$", max_length=1 << 20)]
Millis = Annotated[int, Field(ge=0, le=2**53 - 1)]


def new_message_id(now_ms: int | None = None) -> str:
    """Return a ULID: 48-bit millisecond time + 80 fresh random bits, sortable by time.

    python-ulid spells it (26 Crockford base32 characters). Every id takes new
    randomness, as before; ULID's same-millisecond increment is not used, so
    one id does not predict the next.
    """
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    return str(ULID.from_bytes(ms.to_bytes(6, "big") + os.urandom(10)))


def now_ms() -> int:
    """Current wall-clock time in Unix milliseconds."""
    return int(time.time() * 1000)


class TextPart(BaseModel):
    """Plain text for people and language models."""

    model_config = _STRICT
    type: Literal["text"] = "text"
    text: str


class DataPart(BaseModel):
    """Structured JSON data (a puzzle, a bid, a tool call)."""

    model_config = _STRICT
    type: Literal["data"] = "data"
    data: Any


class FilePart(BaseModel):
    """A reference to a file held elsewhere; the bytes do not travel inline."""

    model_config = _STRICT
    type: Literal["file"] = "file"
    uri: Annotated[str, Field(min_length=1, max_length=2048)]
    media_type: Annotated[str, Field(min_length=1, max_length=255)]
    name: Annotated[str, Field(max_length=255)] | None = None
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    size: Annotated[int, Field(ge=0, le=2**53 - 1)] | None = None


class EncryptedPart(BaseModel):
    """Ciphertext the node routes but cannot read (team threads)."""

    model_config = _STRICT
    type: Literal["encrypted"] = "encrypted"
    alg: Annotated[str, Field(min_length=1, max_length=64)]
    key_id: Annotated[str, Field(min_length=1, max_length=128)]
    nonce: B64u
    ciphertext: B64u


Part = Annotated[TextPart | DataPart | FilePart | EncryptedPart, Field(discriminator="type")]


class PaymentRef(BaseModel):
    """Points at a ledger transfer that pays for what this message asks."""

    model_config = _STRICT
    ledger: Annotated[str, Field(min_length=1, max_length=64)]
    transfer_id: Id
    amount: Annotated[int, Field(gt=0, le=2**53 - 1)]  # exact in every JSON reader


class Message(BaseModel):
    """A signed agent message. ``signature`` covers every other field."""

    model_config = _STRICT

    id: Id
    kind: Kind = "message"
    sender: Did
    thread: Id | None = None
    mentions: tuple[Did, ...] = ()
    created_at: Millis
    expires_at: Millis | None = None
    parts: tuple[Part, ...] = ()
    payment: PaymentRef | None = None
    signature: B64u | None = None

    def text(self) -> str:
        """All text parts joined by newlines (convenience for agents)."""
        return "\n".join(p.text for p in self.parts if isinstance(p, TextPart))

    def data(self) -> list[Any]:
        """The payloads of all data parts, in order."""
        return [p.data for p in self.parts if isinstance(p, DataPart)]


_OPTIONAL_TOP = ("thread", "expires_at", "payment", "signature")
_OPTIONAL_FILE = ("name", "sha256", "size")


def to_wire(message: Message) -> dict[str, Any]:
    """The message as its wire JSON object (unset optional fields omitted).

    Only optional *fields* are dropped when None; a JSON ``null`` inside a
    data part is content and stays.
    """
    wire = message.model_dump(mode="json")
    for key in _OPTIONAL_TOP:
        if wire[key] is None:
            del wire[key]
    for part in wire["parts"]:
        if part["type"] == "file":
            for key in _OPTIONAL_FILE:
                if part[key] is None:
                    del part[key]
    return wire


def unsigned_wire(message: Message) -> dict[str, Any]:
    """The wire object without its signature: what a signature covers."""
    wire = to_wire(message)
    wire.pop("signature", None)
    return wire


def from_wire(obj: Any) -> Message:
    """Validate a parsed JSON object as a Message, with a precise typed error."""
    if not isinstance(obj, dict):
        raise InvalidMessage("a message is a JSON object")
    try:
        return Message.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        if first["type"] == "extra_forbidden":
            raise UnknownField(f"unknown field {where!r}") from None
        raise InvalidMessage(f"{where}: {first['msg']}") from None
