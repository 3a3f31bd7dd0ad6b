"""The coordination API over gRPC, and waiting that survives node restarts.

The gRPC tour runs twice: on a node with SQLite, then on one with
``--database-url`` to a fresh PostgreSQL database (``backend_node``, see
``tests/support/backends.py``). The restart test stays on SQLite: on
PostgreSQL, resuming by cursor after a restart is in
``test_postgres_node.py`` and after a SIGKILL in ``test_postgres_replica_kill.py``
(three more node starts here would only repeat them).
"""

from __future__ import annotations

import grpc
import pytest

from coral.api.grpc.convert import record_from_proto, record_to_proto
from coral.protocol.agent import AgentManifest, AgentRecord, sign_record_as_agent, verify_record
from coral.protocol.codec import message_to_proto
from coral.protocol.identity import Identity
from coral.protocol.message import DataPart, Message, TextPart, new_message_id, now_ms
from coral.protocol.request_auth import sign_request
from coral.protocol.signing import sign_message
from coral.v1 import agents_pb2, agents_pb2_grpc, coordination_pb2, coordination_pb2_grpc
from coral_sdk import CoralClient

SERVICE = "/coral.v1.CoordinationService/"


class GrpcAgent:
    """A minimal agent speaking only gRPC, as another vendor's client would."""

    def __init__(self, channel: grpc.aio.Channel, name: str) -> None:
        self.identity = Identity.generate()
        self.name = name
        self.agents = agents_pb2_grpc.AgentServiceStub(channel)
        self.coord = coordination_pb2_grpc.CoordinationServiceStub(channel)

    @property
    def did(self) -> str:
        return self.identity.did

    async def register(self, node_id: str) -> AgentRecord:
        record = AgentRecord(
            agent=self.did,
            home_node=node_id,
            manifest=AgentManifest(name=self.name),
            version=1,
            updated_at=now_ms(),
        )
        signed = sign_record_as_agent(record, self.identity)
        resp = await self.agents.RegisterAgent(
            agents_pb2.RegisterAgentRequest(record=record_to_proto(signed))
        )
        return record_from_proto(resp)

    def auth(self, method: str, request) -> tuple[tuple[str, str]]:
        value = sign_request(
            self.identity, "RPC", SERVICE + method, request.SerializeToString(), now_ms()
        )
        return (("coral-auth", value),)

    async def submit(self, kind="message", thread=None, parts=(), mentions=()):
        msg = sign_message(
            Message(
                id=new_message_id(),
                kind=kind,
                sender=self.did,
                thread=thread,
                mentions=tuple(mentions),
                created_at=now_ms(),
                parts=tuple(parts),
            ),
            self.identity,
        )
        return await self.coord.Submit(
            coordination_pb2.SubmitRequest(message=message_to_proto(msg))
        )

    async def wait(self, after=0, kind="mention", timeout_ms=5000):
        req = coordination_pb2.WaitRequest(kind=kind, after=after, timeout_ms=timeout_ms)
        return await self.coord.Wait(req, metadata=self.auth("Wait", req))


async def test_grpc_register_submit_wait_history_and_stream(backend_node):
    node = backend_node  # SQLite, then PostgreSQL
    async with grpc.aio.insecure_channel(node.grpc) as channel:
        alice, bob = GrpcAgent(channel, "alice"), GrpcAgent(channel, "bob")
        record = await alice.register(node.node_id)
        verify_record(record)
        await bob.register(node.node_id)
        listed = await alice.agents.ListAgents(agents_pb2.ListAgentsRequest())
        assert {a.agent for a in listed.agents} == {alice.did, bob.did}

        created = await alice.submit(
            "thread.create", parts=[DataPart(data={"name": "g", "participants": ["bob"]})]
        )
        tid = created.thread.id
        assert list(created.thread.participants) == [alice.did, bob.did]
        sent = await alice.submit(
            thread=tid, parts=[TextPart(text="over grpc")], mentions=[bob.did]
        )
        assert sent.entry.seq >= 2

        got = await bob.wait()
        assert got.entries[0].entry.message.parts[0].text.text == "over grpc"
        assert got.entries[0].mentioned

        req = coordination_pb2.HistoryRequest(thread_id=tid, limit=10)
        page = await alice.coord.History(req, metadata=alice.auth("History", req))
        assert [e.seq for e in page.entries] == list(range(1, len(page.entries) + 1))

        sub_req = coordination_pb2.WaitRequest(kind="mention", after=got.cursor)
        stream = bob.coord.Subscribe(sub_req, metadata=bob.auth("Subscribe", sub_req))
        await alice.submit(thread=tid, parts=[TextPart(text="streamed")], mentions=[bob.did])
        first = await stream.read()
        assert first.entry.message.parts[0].text.text == "streamed"
        stream.cancel()

        with pytest.raises(grpc.aio.AioRpcError) as info:
            await bob.coord.Wait(
                req := coordination_pb2.WaitRequest(kind="mention", timeout_ms=100)
            )
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED

        outsider = GrpcAgent(channel, "eve")
        await outsider.register(node.node_id)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await outsider.submit(thread=tid, parts=[TextPart(text="let me in")])
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert ("coral-reason", "not_participant") in tuple(info.value.trailing_metadata())
        del req


async def test_waiting_resumes_from_a_cursor_across_a_restart_and_a_crash(node):
    alice = CoralClient(node.http, Identity.generate())
    bob_id = Identity.generate()
    bob = CoralClient(node.http, bob_id)
    await alice.register(AgentManifest(name="alice"))
    await bob.register(AgentManifest(name="bob"))
    tid = (await alice.create_thread("t", [bob.did])).id
    first = await bob.wait("mention", timeout_ms=200)
    cursor = first.cursor
    await alice.send(tid, "before restart", mentions=[bob.did])
    await alice.close()
    await bob.close()

    assert node.terminate() == 0
    node.start()
    bob = CoralClient(node.http, bob_id)
    got = await bob.wait("mention", after=cursor, timeout_ms=5000)
    assert [e.entry.message.text() for e in got.entries] == ["before restart"]
    cursor = got.cursor

    alice = CoralClient(node.http, alice.identity)
    acked = [await alice.send(tid, f"burst {i}", mentions=[bob.did]) for i in range(20)]
    node.kill()  # SIGKILL: no clean shutdown
    node.start()
    alice = CoralClient(node.http, alice.identity)
    bob = CoralClient(node.http, bob_id)
    seen: list[str] = []
    while len(seen) < len(acked):
        got = await bob.wait("mention", after=cursor, timeout_ms=3000)
        assert not got.timed_out, f"lost messages after crash: have {len(seen)} of {len(acked)}"
        seen += [e.entry.message.text() for e in got.entries]
        cursor = got.cursor
    assert seen == [f"burst {i}" for i in range(20)]
    # Nothing is delivered in the background here: a duplicate would be in the
    # store already, and an immediate look past the cursor would return it.
    again = await bob.wait("mention", after=cursor, timeout_ms=1)
    assert again.timed_out and again.entries == ()
    await alice.close()
    await bob.close()
