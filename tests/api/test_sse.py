"""The one Server-Sent Events helper: wire format and an open stream over real HTTP."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import ClientSession, web

from coral.api.http.sse import EventStream, encode_event


def test_an_event_writes_id_event_and_data_in_order() -> None:
    assert encode_event('{"a":1}', event="entry", id=7) == b'id: 7\nevent: entry\ndata: {"a":1}\n\n'
    assert encode_event("x") == b"data: x\n\n"


def test_multi_line_data_becomes_one_data_line_per_line() -> None:
    assert encode_event("a\nb\r\nc\rd") == b"data: a\ndata: b\ndata: c\ndata: d\n\n"


def test_unicode_line_separators_stay_inside_the_data() -> None:
    # JSON written with ensure_ascii=False keeps U+2028 raw; it is not an SSE line break.
    assert encode_event('{"t":"a\u2028b"}') == 'data: {"t":"a\u2028b"}\n\n'.encode()


@pytest.mark.parametrize("field", ["id", "event"])
def test_a_line_break_in_id_or_event_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        encode_event("x", **{field: "a\nb"})


async def test_a_stream_sends_headers_events_and_keep_alives_until_the_client_leaves() -> None:
    ended = asyncio.Event()
    left: list[bool] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            async with EventStream(request) as stream:
                await stream.send("one", event="entry", id=1)
                await stream.keep_alive()
                while True:  # until the client is gone
                    await asyncio.sleep(0.01)
                    await stream.send("tick")
            left.append(True)
            return stream.response
        finally:
            ended.set()

    app = web.Application()
    app.router.add_get("/events", handler)
    # Handlers not cancelled on disconnect (the node shields most of its handlers):
    # the client leaving shows as a failed write.
    runner = web.AppRunner(app, handler_cancellation=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with ClientSession() as session:
            response = await session.get(f"http://127.0.0.1:{port}/events")
            assert response.headers["Content-Type"] == "text/event-stream"
            assert response.headers["Cache-Control"] == "no-store"
            assert response.headers["X-Accel-Buffering"] == "no"
            first = await response.content.readuntil(b"\n\n")
            second = await response.content.readuntil(b"\n\n")
            response.close()
            await asyncio.wait_for(ended.wait(), 30)
    finally:
        await runner.cleanup()
    assert (first, second) == (b"id: 1\nevent: entry\ndata: one\n\n", b": keep-alive\n\n")
    assert left == [True]  # the reset write ended the block quietly
