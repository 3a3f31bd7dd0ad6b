"""The pure thread rules: membership, mentions, closing (no store, no clock)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coral.coordination import rules
from coral.coordination.errors import (
    AgentNotFound,
    AlreadyParticipant,
    InvalidThread,
    MentionNotParticipant,
    MentionSelf,
    NotParticipant,
    ThreadClosed,
    ThreadRequired,
)
from coral.coordination.model import Thread
from coral.protocol.identity import Identity

from .conftest import START_MS, make_message

PEOPLE = [Identity.from_seed(bytes([50 + i]) * 32) for i in range(5)]
A, B, C, D, E = PEOPLE


def thread_of(*members: Identity) -> Thread:
    return rules.new_thread(
        thread_id="t1",
        name="plan the launch",
        creator=members[0].did,
        participants=[m.did for m in members[1:]],
        strategy="broadcast",
        strategy_options={},
        created_at=START_MS,
    )


def test_creator_is_first_participant_and_duplicates_collapse() -> None:
    thread = rules.new_thread(
        thread_id="t1",
        name="x",
        creator=A.did,
        participants=[B.did, A.did, B.did, C.did],
        strategy="broadcast",
        strategy_options={},
        created_at=START_MS,
    )
    assert thread.participants == (A.did, B.did, C.did)
    assert thread.is_open and thread.last_seq == 0


@pytest.mark.parametrize(
    ("name", "participants", "thread_id"),
    [("", [], "t1"), ("ok", ["bob"], "t1"), ("ok", [], "bad id with spaces"), ("x" * 257, [], "t")],
)
def test_bad_threads_are_refused(name: str, participants: list[str], thread_id: str) -> None:
    with pytest.raises(InvalidThread):
        rules.new_thread(
            thread_id=thread_id,
            name=name,
            creator=A.did,
            participants=participants,
            strategy="broadcast",
            strategy_options={},
            created_at=START_MS,
        )


def test_participant_may_post_and_mention_others() -> None:
    rules.check_post(thread_of(A, B, C), make_message(A, "t1", mentions=(B, C)))


def test_non_participant_may_not_post() -> None:
    with pytest.raises(NotParticipant) as caught:
        rules.check_post(thread_of(A, B), make_message(C, "t1"))
    assert caught.value.reason == "not_participant"


def test_mentions_must_name_participants_other_than_sender() -> None:
    thread = thread_of(A, B)
    with pytest.raises(MentionNotParticipant):
        rules.check_post(thread, make_message(A, "t1", mentions=(C,)))
    with pytest.raises(MentionSelf):
        rules.check_post(thread, make_message(A, "t1", mentions=(A,)))


def test_message_without_thread_is_refused() -> None:
    with pytest.raises(ThreadRequired):
        rules.check_post(thread_of(A), make_message(A, None))


def test_closed_thread_refuses_posts_and_changes() -> None:
    done = rules.closed(thread_of(A, B), B.did, "we agreed", START_MS + 5)
    assert (done.state, done.summary, done.closed_at) == ("closed", "we agreed", START_MS + 5)
    with pytest.raises(ThreadClosed):
        rules.check_post(done, make_message(A, "t1"))
    with pytest.raises(ThreadClosed):
        rules.with_participant_added(done, A.did, C.did)
    with pytest.raises(ThreadClosed):
        rules.closed(done, A.did, "again", START_MS + 6)


def test_only_participants_change_membership() -> None:
    thread = thread_of(A, B)
    with pytest.raises(NotParticipant):
        rules.with_participant_added(thread, C.did, D.did)
    with pytest.raises(NotParticipant):
        rules.with_participant_removed(thread, C.did, B.did)
    with pytest.raises(NotParticipant):
        rules.closed(thread, C.did, "nope", START_MS)


def test_adding_twice_and_removing_a_stranger_are_refused() -> None:
    thread = thread_of(A, B)
    with pytest.raises(AlreadyParticipant):
        rules.with_participant_added(thread, A.did, B.did)
    with pytest.raises(AgentNotFound):
        rules.with_participant_removed(thread, A.did, C.did)


def test_a_participant_may_leave_by_removing_itself() -> None:
    left = rules.with_participant_removed(thread_of(A, B, C), B.did, B.did)
    assert left.participants == (A.did, C.did)


@settings(deadline=None, max_examples=60)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(PEOPLE)), max_size=30))
def test_membership_stays_a_duplicate_free_join_order(ops: list[tuple[bool, Identity]]) -> None:
    thread = thread_of(A)
    expected = [A.did]
    for add, who in ops:
        try:
            if add:
                thread = rules.with_participant_added(thread, A.did, who.did)
                expected.append(who.did)
            elif who != A:
                thread = rules.with_participant_removed(thread, A.did, who.did)
                expected.remove(who.did)
        except (AlreadyParticipant, AgentNotFound):
            pass
        assert list(thread.participants) == expected
        assert len(set(thread.participants)) == len(thread.participants)
