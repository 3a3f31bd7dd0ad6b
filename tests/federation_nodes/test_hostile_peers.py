"""A misbehaving node talking to a real node: refused with reasons, nothing changed."""

from __future__ import annotations

import json

import grpc
import pytest

from coral.api.grpc.federation import node_auth_metadata
from coral.federation import PeerAddresses, issue_peer_record
from coral.protocol.identity import Identity
from coral.protocol.message import Message, TextPart, new_message_id, now_ms, to_wire
from coral.protocol.signing import sign_message
from coral.v1 import federation_pb2, federation_pb2_grpc
from coral_sdk import AgentManifest, CoralClient


async def call(stub, node: Identity, method: str, request):
    return await getattr(stub, method)(
        request, metadata=node_auth_metadata(node, method, request), timeout=10
    )


async def introduce(stub, mallory: Identity) -> None:
    record = issue_peer_record(mallory, PeerAddresses(grpc="127.0.0.1:9"), now_ms())
    await call(
        stub,
        mallory,
        "Hello",
        federation_pb2.HelloRequest(peer_record_json=record.model_dump_json()),
    )


def envelope(kind: str, payload: object) -> federation_pb2.Envelope:
    return federation_pb2.Envelope(
        id=f"{kind}:{new_message_id()}", kind=kind, payload_json=json.dumps(payload)
    )


async def test_unknown_garbage_forged_and_misrouted_envelopes_are_refused(node):
    mallory, stranger = Identity.generate(), Identity.generate()
    alice = CoralClient(node.http, Identity.generate())
    await alice.register(AgentManifest(name="alice"))
    bob = CoralClient(node.http, Identity.generate())
    await bob.register(AgentManifest(name="bob"))
    tid = (await alice.create_thread("t", [bob.did])).id
    before = await alice.history(tid)
    try:
        async with grpc.aio.insecure_channel(node.grpc) as channel:
            stub = federation_pb2_grpc.FederationServiceStub(channel)
            # A node nobody introduced cannot deliver anything.
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(stub, stranger, "Deliver", envelope("submit", {}))
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            await introduce(stub, mallory)
            # Garbage payloads.
            bad = federation_pb2.Envelope(id="submit:x", kind="submit", payload_json="{not json")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(stub, mallory, "Deliver", bad)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert ("coral-reason", "malformed_json") in tuple(info.value.trailing_metadata())
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(stub, mallory, "Deliver", envelope("nonsense", {}))
            assert ("coral-reason", "invalid_envelope") in tuple(info.value.trailing_metadata())
            # Mallory relays a message from alice, who is not homed on mallory.
            msg = sign_message(
                Message(
                    id=new_message_id(),
                    sender=alice.did,
                    thread=tid,
                    created_at=now_ms(),
                    parts=(TextPart(text="relayed"),),
                ),
                alice.identity,
            )
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(stub, mallory, "Deliver", envelope("submit", {"message": to_wire(msg)}))
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            # Mallory pretends to own a thread created by alice (homed here).
            thread = {
                "id": tid,
                "name": "t",
                "creator": alice.did,
                "participants": [alice.did, bob.did],
                "strategy": "broadcast",
                "created_at": now_ms(),
                "state": "open",
                "last_seq": 99,
            }
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(
                    stub, mallory, "Deliver", envelope("entries", {"thread": thread, "entries": []})
                )
            assert info.value.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.PERMISSION_DENIED,
            )
            # Gossip garbage.
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(
                    stub,
                    mallory,
                    "GossipExchange",
                    federation_pb2.GossipExchangeRequest(records_json="[{]", request_json="{}"),
                )
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        after = await alice.history(tid)
        assert after == before
    finally:
        await alice.close()
        await bob.close()
