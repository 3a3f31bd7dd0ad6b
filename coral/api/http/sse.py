"""Server-Sent Events: the one way the node's HTTP routes write an event stream.

``encode_event`` is the wire format (a multi-line ``data`` becomes several
``data:`` lines, as the SSE spec requires); ``EventStream`` is an aiohttp
response that stays open, with the node's stream headers, a keep-alive
comment and the client's disconnect treated as the normal end.
"""

from __future__ import annotations

import re
from types import TracebackType

from aiohttp import web

CONTENT_TYPE = "text/event-stream"
#: Headers of every stream: never cached, never buffered by a reverse proxy.
HEADERS = {
    "Content-Type": CONTENT_TYPE,
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",
}
KEEP_ALIVE = b": keep-alive\n\n"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def encode_event(data: str, *, event: str | None = None, id: str | int | None = None) -> bytes:
    """One event, in the order ``id``, ``event``, ``data``, ended by a blank line.

    Raises:
        ValueError: ``event`` or ``id`` contains a line break (it would end the field).
    """
    lines = []
    for name, value in (("id", id), ("event", event)):
        if value is None:
            continue
        text = str(value)
        if "\n" in text or "\r" in text:
            raise ValueError(f"an SSE {name} cannot contain a line break")
        lines.append(f"{name}: {text}")
    # Only the SSE line breaks: str.splitlines would also split on U+2028 and friends,
    # which JSON written with ensure_ascii=False keeps as they are.
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
    return ("\n".join(lines) + "\n\n").encode()


class EventStream:
    """An open ``text/event-stream`` response for one request.

    Use as ``async with EventStream(request) as stream:``; entering sends the
    headers, and a client that went away (``ConnectionResetError`` on a
    write) ends the block quietly: SSE clients reconnect by themselves, with
    ``Last-Event-ID`` when events carry ids. Cancellation is never caught.
    Return ``stream.response`` from the handler.
    """

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response = web.StreamResponse(headers=HEADERS)

    async def __aenter__(self) -> EventStream:
        await self.response.prepare(self.request)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        return exc_type is not None and issubclass(exc_type, ConnectionResetError)

    async def send(
        self, data: str, *, event: str | None = None, id: str | int | None = None
    ) -> None:
        """Write one event.

        Raises:
            ConnectionResetError: the client went away (ends the ``async with`` quietly).
        """
        await self.response.write(encode_event(data, event=event, id=id))

    async def keep_alive(self) -> None:
        """Write a comment line, so proxies and clients see the stream is alive.

        Raises:
            ConnectionResetError: the client went away (ends the ``async with`` quietly).
        """
        await self.response.write(KEEP_ALIVE)
