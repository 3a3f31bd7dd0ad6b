"""The thread JSON an owner node sends its mirrors keeps the HTTP view's shape."""

from __future__ import annotations

from coral.api.views import entry_view, thread_view
from coral.coordination.model import Thread, ThreadEntry
from coral.federation.threads import entry_to_wire, thread_from_wire, thread_to_wire
from coral.protocol.identity import Identity
from coral.protocol.message import Message, TextPart, new_message_id
from coral.protocol.signing import sign_message

NOW = 1_770_000_000_000


def test_thread_and_entry_wire_match_the_views_and_the_thread_round_trips() -> None:
    agent = Identity.from_seed(b"\x07" * 32)
    thread = Thread(
        id="t1",
        name="plan",
        creator=agent.did,
        participants=(agent.did,),
        strategy="broadcast",
        created_at=NOW,
        session_id="s1",
        state="open",
        summary=None,
        closed_at=None,
        strategy_options={"k": 1},
        strategy_state={"turn": 0},
        last_seq=3,
    )
    message = sign_message(
        Message(
            id=new_message_id(NOW),
            sender=agent.did,
            thread="t1",
            created_at=NOW,
            parts=(TextPart(text="hi"),),
        ),
        agent,
    )
    entry = ThreadEntry("t1", 3, message, NOW, False)
    assert thread_to_wire(thread) == thread_view(thread)
    assert entry_to_wire(entry, ["x"]) == {**entry_view(entry), "recipients": ["x"]}
    assert thread_from_wire(thread_to_wire(thread)) == thread
