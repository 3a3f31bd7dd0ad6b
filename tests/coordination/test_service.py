"""Thread operations through the service over a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from coral.coordination.errors import (
    DuplicateMessage,
    MentionNotParticipant,
    NotParticipant,
    ThreadClosed,
    ThreadExists,
    ThreadNotFound,
    UnknownStrategy,
)
from coral.coordination.service import CoordinationService
from coral.protocol.errors import Expired, InvalidMessage
from coral.protocol.identity import Identity
from coral.protocol.message import Message
from coral.protocol.signing import sign_message, verify_message_signature

from .conftest import FakeClock, events_named, make_message, open_service, post


async def test_create_thread_records_a_creation_event(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b, _ = agents[:3]
    thread = await service.create_thread(a.did, "research", [b.did], session_id="s1")
    assert thread.participants == (a.did, b.did)
    assert (thread.strategy, thread.session_id, thread.last_seq) == ("broadcast", "s1", 1)
    page = await service.history(b.did, thread.id)
    (created,) = events_named(page.entries, "thread_created")
    assert created["participants"] == [a.did, b.did]
    assert page.entries[0].sender == service.node_id


async def test_messages_get_consecutive_sequence_numbers(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b = agents[:2]
    thread = await service.create_thread(a.did, "chat", [b.did])
    first = await post(service, a, thread.id, mentions=(b,))
    second = await post(service, b, thread.id, text="hi back")
    assert (first.seq, second.seq) == (2, 3)
    stored = await service.get_thread(a.did, thread.id)
    assert stored.last_seq == 3


async def test_history_pages_through_the_log(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b = agents[:2]
    thread = await service.create_thread(a.did, "chat", [b.did])
    for i in range(7):
        await post(service, a, thread.id, text=f"m{i}")
    seen: list[int] = []
    after = 0
    while True:
        page = await service.history(b.did, thread.id, after_seq=after, limit=3)
        seen.extend(e.seq for e in page.entries)
        if page.next_after_seq is None:
            break
        after = page.next_after_seq
    assert seen == list(range(1, 9))
    with pytest.raises(InvalidMessage):
        await service.history(b.did, thread.id, limit=0)


async def test_only_participants_read(service: CoordinationService, agents: list[Identity]) -> None:
    a, b, outsider = agents[:3]
    thread = await service.create_thread(a.did, "private", [b.did])
    with pytest.raises(NotParticipant):
        await service.history(outsider.did, thread.id)
    with pytest.raises(NotParticipant):
        await service.get_thread(outsider.did, thread.id)
    with pytest.raises(ThreadNotFound):
        await service.get_thread(a.did, "no-such-thread")


async def test_list_threads_of_an_agent(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b, c = agents[:3]
    one = await service.create_thread(a.did, "one", [b.did], session_id="s1")
    two = await service.create_thread(b.did, "two", [c.did], session_id="s2")
    assert [t.id for t in await service.list_threads(b.did)] == [one.id, two.id]
    assert [t.id for t in await service.list_threads(b.did, session_id="s2")] == [two.id]
    assert await service.list_threads(a.did, session_id="s2") == []


async def test_rules_are_enforced_and_refusals_write_nothing(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b, c = agents[:3]
    thread = await service.create_thread(a.did, "chat", [b.did])
    with pytest.raises(NotParticipant):
        await post(service, c, thread.id)
    with pytest.raises(MentionNotParticipant):
        await post(service, a, thread.id, mentions=(c,))
    with pytest.raises(ThreadNotFound):
        await post(service, a, "missing")
    stored = await service.get_thread(a.did, thread.id)
    assert stored.last_seq == 1


async def test_node_event_kinds_are_reserved(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b = agents[:2]
    thread = await service.create_thread(a.did, "chat", [b.did])
    forged = make_message(a, thread.id).model_copy(update={"kind": "coral.award"})
    with pytest.raises(InvalidMessage) as caught:
        await service.send_message(sign_message(forged, a))
    assert caught.value.reason == "reserved_kind"


async def test_expired_message_is_refused(
    service: CoordinationService, agents: list[Identity], clock: FakeClock
) -> None:
    a, b = agents[:2]
    thread = await service.create_thread(a.did, "chat", [b.did])
    stale = make_message(a, thread.id).model_copy(update={"expires_at": clock.now - 1})
    with pytest.raises(Expired):
        await service.send_message(sign_message(stale, a))


async def test_duplicate_message_id_is_a_conflict_and_stored_once(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b = agents[:2]
    thread = await service.create_thread(a.did, "chat", [b.did])
    other = await service.create_thread(a.did, "other", [b.did])
    message = make_message(a, thread.id)
    await service.send_message(message)
    with pytest.raises(DuplicateMessage) as caught:
        await service.send_message(message)
    assert caught.value.reason == "duplicate_message"
    moved = sign_message(message.model_copy(update={"thread": other.id}), a)
    with pytest.raises(DuplicateMessage):
        await service.send_message(moved)
    page = await service.history(a.did, thread.id)
    assert [e.message.id for e in page.entries].count(message.id) == 1


async def test_thread_id_collision_is_a_conflict(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a = agents[0]
    await service.create_thread(a.did, "one", [], thread_id="fixed")
    with pytest.raises(ThreadExists):
        await service.create_thread(a.did, "two", [], thread_id="fixed")


async def test_unknown_strategy_is_refused(
    service: CoordinationService, agents: list[Identity]
) -> None:
    with pytest.raises(UnknownStrategy) as caught:
        await service.create_thread(agents[0].did, "x", [], strategy="telepathy")
    assert "broadcast" in caught.value.detail
    assert await service.list_threads(agents[0].did) == []


async def test_add_remove_close_are_logged(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b, c = agents[:3]
    thread = await service.create_thread(a.did, "chat", [b.did])
    await service.add_participant(b.did, thread.id, c.did)
    await service.remove_participant(a.did, thread.id, b.did)
    closed = await service.close_thread(c.did, thread.id, "done: ship it")
    assert closed.state == "closed" and closed.summary == "done: ship it"
    page = await service.history(a.did, thread.id)
    kinds = [e.message.kind for e in page.entries]
    assert kinds == [
        "coral.thread_created",
        "coral.participant_added",
        "coral.participant_removed",
        "coral.thread_closed",
    ]
    assert events_named(page.entries, "participant_added")[0] == {
        "event": "participant_added",
        "agent": c.did,
        "by": b.did,
    }
    with pytest.raises(ThreadClosed):
        await post(service, a, thread.id)
    with pytest.raises(NotParticipant):
        await post(service, b, thread.id)


async def test_removed_participant_is_told_and_loses_access(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b = agents[:2]
    thread = await service.create_thread(a.did, "chat", [b.did])
    await service.remove_participant(a.did, thread.id, b.did)
    result = await service.wait(b.did, "message", timeout_ms=1)
    assert [e.entry.message.kind for e in result.entries][-1] == "coral.participant_removed"
    with pytest.raises(NotParticipant):
        await service.history(b.did, thread.id)


async def test_stored_messages_keep_their_signatures(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b = agents[:2]
    thread = await service.create_thread(a.did, "chat", [b.did])
    sent = make_message(a, thread.id, data={"n": 1.5, "x": [1, "é"]})
    await service.send_message(sent)
    (entry,) = [e for e in (await service.history(b.did, thread.id)).entries if not e.system]
    assert entry.message == sent
    verify_message_signature(entry.message)


async def test_node_events_are_signed_when_a_signer_is_given(
    tmp_path: Path, clock: FakeClock, node_identity: Identity, agents: list[Identity]
) -> None:
    def sign(message: Message) -> Message:
        return sign_message(message, node_identity)

    db, service = await open_service(tmp_path / "n.db", clock, node_identity, sign_event=sign)
    try:
        a, b = agents[:2]
        thread = await service.create_thread(a.did, "chat", [b.did])
        (created,) = (await service.history(a.did, thread.id)).entries
        assert created.message.sender == node_identity.did
        verify_message_signature(created.message)
    finally:
        await db.close()
