"""The MCP stream replay buffer (coral/api/mcp/replay.py): scoped, unambiguous, bounded."""

from __future__ import annotations

from mcp.server.streamable_http import EventMessage
from mcp_types import JSONRPCNotification, JSONRPCResponse

from coral.api.mcp.replay import STREAM_OWNER, ReplayBuffer


def response(request_id: int, text: str) -> JSONRPCResponse:
    return JSONRPCResponse(jsonrpc="2.0", id=request_id, result={"text": text})


def progress(text: str) -> JSONRPCNotification:
    return JSONRPCNotification(jsonrpc="2.0", method="notifications/progress", params={"m": text})


async def replayed(buffer: ReplayBuffer, owner: str, last_event_id: str) -> tuple[str | None, list]:
    sent: list[EventMessage] = []

    async def collect(event: EventMessage) -> None:
        sent.append(event)

    token = STREAM_OWNER.set(owner)
    try:
        stream = await buffer.replay_events_after(last_event_id, collect)
    finally:
        STREAM_OWNER.reset(token)
    return stream, [e.message for e in sent]


async def store_as(buffer: ReplayBuffer, owner: str, stream: str, message) -> str:
    token = STREAM_OWNER.set(owner)
    try:
        return await buffer.store_event(stream, message)
    finally:
        STREAM_OWNER.reset(token)


async def test_a_stream_is_replayed_after_the_last_event_the_client_saw():
    buffer = ReplayBuffer()
    priming = await store_as(buffer, "did:a", "1", None)
    note = await store_as(buffer, "did:a", "1", progress("half"))
    await store_as(buffer, "did:a", "1", response(1, "done"))
    assert await replayed(buffer, "did:a", priming) == (
        "1",
        [progress("half"), response(1, "done")],
    )
    assert await replayed(buffer, "did:a", note) == ("1", [response(1, "done")])


async def test_the_same_request_id_of_another_agent_is_never_replayed():
    buffer = ReplayBuffer()
    mine = await store_as(buffer, "did:a", "1", None)
    theirs = await store_as(buffer, "did:b", "1", None)
    await store_as(buffer, "did:b", "1", response(1, "secret of b"))
    await store_as(buffer, "did:a", "1", response(1, "for a"))
    assert await replayed(buffer, "did:a", mine) == ("1", [response(1, "for a")])
    assert await replayed(buffer, "did:a", theirs) == (None, [])  # b's event id, a's request


async def test_overlapping_streams_with_one_id_refuse_replay_instead_of_guessing():
    buffer = ReplayBuffer()
    first = await store_as(buffer, "did:a", "7", None)
    second = await store_as(buffer, "did:a", "7", None)  # a second session reuses id 7 at once
    await store_as(buffer, "did:a", "7", response(7, "whose?"))
    assert await replayed(buffer, "did:a", first) == (None, [])
    assert await replayed(buffer, "did:a", second) == (None, [])
    # Once answered, the next use of the id is a new, unambiguous stream.
    third = await store_as(buffer, "did:a", "7", None)
    await store_as(buffer, "did:a", "7", response(7, "third"))
    assert await replayed(buffer, "did:a", third) == ("7", [response(7, "third")])


async def test_memory_is_bounded_by_count_and_age():
    now = [0.0]
    buffer = ReplayBuffer(max_events=10, max_age_s=60, clock=lambda: now[0])
    ids = [await store_as(buffer, "did:a", str(i), None) for i in range(25)]
    assert buffer.size == 10
    assert await replayed(buffer, "did:a", ids[0]) == (None, [])  # evicted
    assert (await replayed(buffer, "did:a", ids[-1]))[0] == "24"
    now[0] = 61.0
    assert await replayed(buffer, "did:a", ids[-1]) == (None, [])
    assert buffer.size == 0
