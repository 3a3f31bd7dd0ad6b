"""CoordinationService.SubmitStream: many signed messages on one long-lived stream, real node."""

from __future__ import annotations

import grpc
import pytest

from coral.protocol.codec import message_to_proto
from coral.protocol.message import DataPart, Message, TextPart, new_message_id, now_ms
from coral.protocol.signing import sign_message
from coral.v1 import coordination_pb2
from tests.integration.test_coordination_grpc import SERVICE, GrpcAgent

REASON = "coral-reason"


def signed(agent: GrpcAgent, *, thread: str | None, text: str = "hi", **fields) -> Message:
    msg = Message(
        id=new_message_id(),
        kind=fields.pop("kind", "message"),
        sender=agent.did,
        thread=thread,
        mentions=tuple(fields.pop("mentions", ())),
        created_at=fields.pop("created_at", now_ms()),
        parts=tuple(fields.pop("parts", (TextPart(text=text),))),
    )
    return sign_message(msg, agent.identity)


def request(msg: Message) -> coordination_pb2.SubmitRequest:
    return coordination_pb2.SubmitRequest(message=message_to_proto(msg))


async def unary_refusal(agent: GrpcAgent, msg: Message) -> tuple[int, str]:
    """The status code and reason the unary Submit ends with for ``msg``."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await agent.coord.Submit(request(msg))
    reason = dict(info.value.trailing_metadata() or ()).get(REASON, "")
    return info.value.code().value[0], str(reason)


async def setup(channel: grpc.aio.Channel, node_id: str) -> tuple[GrpcAgent, GrpcAgent, str]:
    alice, bob = GrpcAgent(channel, "alice"), GrpcAgent(channel, "bob")
    await alice.register(node_id)
    await bob.register(node_id)
    created = await alice.submit(
        "thread.create", parts=[DataPart(data={"name": "s", "participants": ["bob"]})]
    )
    return alice, bob, created.thread.id


async def history_texts(agent: GrpcAgent, thread: str) -> list[str]:
    req = coordination_pb2.HistoryRequest(thread_id=thread, limit=500)
    page = await agent.coord.History(req, metadata=agent.auth("History", req))
    return [e.message.parts[0].text.text for e in page.entries if e.message.kind == "message"]


async def test_messages_are_applied_and_answered_in_the_order_sent(node) -> None:
    async with grpc.aio.insecure_channel(node.grpc) as channel:
        alice, bob, thread = await setup(channel, node.node_id)
        sub_req = coordination_pb2.WaitRequest(kind="mention")
        received = bob.coord.Subscribe(sub_req, metadata=bob.auth("Subscribe", sub_req))

        msgs = [signed(alice, thread=thread, text=f"m{i}", mentions=[bob.did]) for i in range(40)]
        call = alice.coord.SubmitStream()
        for msg in msgs:  # all written before any answer is read: the node keeps the order
            await call.write(request(msg))
        answers = [await call.read() for _ in msgs]
        await call.done_writing()
        assert await call.read() == grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK

        assert [a.message_id for a in answers] == [m.id for m in msgs]
        assert all(a.WhichOneof("outcome") == "result" for a in answers)
        seqs = [a.result.entry.seq for a in answers]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert [a.result.entry.message.parts[0].text.text for a in answers] == [
            f"m{i}" for i in range(40)
        ]
        assert await history_texts(alice, thread) == [f"m{i}" for i in range(40)]
        streamed = [(await received.read()).entry.message.id for _ in msgs]
        assert streamed == [m.id for m in msgs]
        received.cancel()

        # A thread operation answers with the thread, as Submit does.
        call = alice.coord.SubmitStream()
        op = signed(
            alice,
            thread=None,
            kind="thread.create",
            parts=[DataPart(data={"name": "second", "participants": ["bob"]})],
        )
        await call.write(request(op))
        answer = await call.read()
        assert answer.result.thread.name == "second"
        assert list(answer.result.thread.participants) == [alice.did, bob.did]
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK


async def test_a_refused_message_is_answered_with_submits_error_and_the_stream_goes_on(
    node,
) -> None:
    async with grpc.aio.insecure_channel(node.grpc) as channel:
        alice, _bob, thread = await setup(channel, node.node_id)
        eve = GrpcAgent(channel, "eve")
        await eve.register(node.node_id)

        good = signed(alice, thread=thread, text="first")
        tampered = signed(alice, thread=thread, text="original").model_copy(
            update={"parts": (TextPart(text="changed"),)}
        )
        outsider = signed(eve, thread=thread, text="let me in")
        expired = signed(alice, thread=thread, text="old", created_at=now_ms() - 3_600_000)
        after = signed(alice, thread=thread, text="after the refusals")
        # What the unary call ends with for the same kinds of message (fresh ids).
        expected = [
            await unary_refusal(
                alice,
                signed(alice, thread=thread, text="original").model_copy(
                    update={"parts": (TextPart(text="changed"),)}
                ),
            ),
            await unary_refusal(eve, signed(eve, thread=thread, text="let me in")),
            await unary_refusal(
                alice, signed(alice, thread=thread, text="old", created_at=now_ms() - 3_600_000)
            ),
        ]

        call = alice.coord.SubmitStream()
        for msg in (good, tampered, outsider, expired, after):
            await call.write(request(msg))
        await call.write(coordination_pb2.SubmitRequest())  # no message at all
        answers = [await call.read() for _ in range(6)]
        await call.done_writing()
        assert await call.read() == grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK

        assert [a.message_id for a in answers] == [
            good.id,
            tampered.id,
            outsider.id,
            expired.id,
            after.id,
            "",
        ]
        outcomes = [a.WhichOneof("outcome") for a in answers]
        assert outcomes == ["result", "error", "error", "error", "result", "error"]
        got = [(a.error.code, a.error.reason) for a in answers[1:4]]
        assert got == expected
        assert got[0] == (grpc.StatusCode.UNAUTHENTICATED.value[0], "bad_signature")
        assert got[1][0] == grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert answers[5].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert all(a.error.detail for a in answers if a.HasField("error"))
        assert await history_texts(alice, thread) == ["first", "after the refusals"]


async def test_the_same_message_id_is_refused_on_the_stream_as_on_submit(node) -> None:
    async with grpc.aio.insecure_channel(node.grpc) as channel:
        alice, _bob, thread = await setup(channel, node.node_id)
        once = signed(alice, thread=thread, text="once")
        by_unary = signed(alice, thread=thread, text="by unary")
        await alice.coord.Submit(request(by_unary))

        call = alice.coord.SubmitStream()
        for msg in (once, once, by_unary):
            await call.write(request(msg))
        answers = [await call.read() for _ in range(3)]
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK
        assert [a.WhichOneof("outcome") for a in answers] == ["result", "error", "error"]
        # A message first sent on a stream is refused by the unary call, and the
        # stream refuses a repeat with the same status and reason as the unary call.
        code, reason = await unary_refusal(alice, once)
        assert reason == "replayed"
        assert (answers[1].error.code, answers[1].error.reason) == (code, reason)
        assert (answers[2].error.code, answers[2].error.reason) == (code, reason)
        assert await history_texts(alice, thread) == ["by unary", "once"]


async def test_cancelling_mid_stream_leaves_nothing_wedged(node) -> None:
    async with grpc.aio.insecure_channel(node.grpc) as channel:
        alice, bob, thread = await setup(channel, node.node_id)
        sub_req = coordination_pb2.WaitRequest(kind="mention")
        received = bob.coord.Subscribe(sub_req, metadata=bob.auth("Subscribe", sub_req))

        call = alice.coord.SubmitStream()
        burst = [signed(alice, thread=thread, text=f"b{i}", mentions=[bob.did]) for i in range(60)]
        for msg in burst:
            await call.write(request(msg))
        first = await call.read()
        assert first.message_id == burst[0].id
        call.cancel()
        assert await call.code() == grpc.StatusCode.CANCELLED

        # The thread, the sender and the receiver all go on: a new stream and the unary call
        # are applied, and the receiver's stream delivers them after whatever of the burst
        # was applied before the cancellation reached the node.
        again = alice.coord.SubmitStream()
        next_msg = signed(alice, thread=thread, text="after cancel", mentions=[bob.did])
        await again.write(request(next_msg))
        answer = await again.read()
        assert answer.WhichOneof("outcome") == "result"
        await again.done_writing()
        assert await again.code() == grpc.StatusCode.OK
        last = signed(alice, thread=thread, text="unary after", mentions=[bob.did])
        await alice.coord.Submit(request(last))

        texts = await history_texts(alice, thread)
        applied = texts[: texts.index("after cancel")]
        assert applied == [f"b{i}" for i in range(len(applied))]  # a prefix, in order
        assert len(applied) >= 1
        assert texts[len(applied) :] == ["after cancel", "unary after"]
        streamed = []
        while not streamed or streamed[-1] != "unary after":
            item = await received.read()
            streamed.append(item.entry.message.parts[0].text.text)
        assert streamed == [*applied, "after cancel", "unary after"]
        received.cancel()

        # A message of the burst that the node never started is still new to it (the one
        # it had verified when the cancellation came counts as seen, as on Submit).
        if len(applied) + 1 < len(burst):
            late = burst[len(applied) + 1]
            resubmitted = await alice.coord.Submit(request(late))
            assert resubmitted.entry.message.id == late.id


async def test_an_undecodable_request_ends_the_stream_with_malformed_protobuf(node) -> None:
    async with grpc.aio.insecure_channel(node.grpc) as channel:
        alice, _bob, thread = await setup(channel, node.node_id)
        raw = channel.stream_stream(
            SERVICE + "SubmitStream",
            request_serializer=lambda b: b,
            response_deserializer=coordination_pb2.SubmitStreamResponse.FromString,
        )
        call = raw()
        good = signed(alice, thread=thread, text="decodable")
        await call.write(request(good).SerializeToString())
        assert (await call.read()).message_id == good.id
        await call.write(b"\xff\xff\xff not a protobuf")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert dict(info.value.trailing_metadata() or ()).get(REASON) == "malformed_protobuf"
        assert await history_texts(alice, thread) == ["decodable"]


async def test_a_rate_limited_sender_is_refused_per_message_and_the_stream_goes_on(
    node_factory,
) -> None:
    node = node_factory("limited", CORAL_AGENT_MESSAGE_RATE="5")
    async with grpc.aio.insecure_channel(node.grpc) as channel:
        alice, bob, thread = await setup(channel, node.node_id)
        flood = [signed(alice, thread=thread, text=f"f{i}") for i in range(30)]
        call = alice.coord.SubmitStream()
        for msg in flood:
            await call.write(request(msg))
        answers = [await call.read() for _ in flood]
        # Another sender on the same stream is limited on its own account.
        from_bob = signed(bob, thread=thread, text="bob is not limited by alice's flood")
        await call.write(request(from_bob))
        bobs = await call.read()
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK

        assert [a.message_id for a in answers] == [m.id for m in flood]
        refused = [a for a in answers if a.HasField("error")]
        assert refused and answers[0].HasField("result")
        assert {(a.error.code, a.error.reason) for a in refused} == {
            (grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], "rate_limited")
        }
        assert bobs.HasField("result")
        accepted = [
            a.result.entry.message.parts[0].text.text for a in answers if a.HasField("result")
        ]
        assert await history_texts(alice, thread) == [
            *accepted,
            "bob is not limited by alice's flood",
        ]
