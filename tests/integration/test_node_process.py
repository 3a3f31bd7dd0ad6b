"""The daemon as a user runs it: a real process, real sockets, real signals."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coral.protocol.codec import message_to_json, message_to_proto
from coral.protocol.identity import Identity
from coral.protocol.message import DataPart, Message, TextPart, new_message_id, now_ms
from coral.protocol.signing import sign_message
from coral.v1 import node_pb2, node_pb2_grpc
from tests.hardening.support import agent_record, record_body


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        assert exc.headers["Content-Type"].startswith("application/problem+json")
        return exc.code, json.loads(exc.read())


def signed_message(alice: Identity, text: str = "hello") -> Message:
    msg = Message(
        id=new_message_id(), sender=alice.did, created_at=now_ms(), parts=(TextPart(text=text),)
    )
    return sign_message(msg, alice)


def test_start_serves_health_and_signed_info_then_exits_cleanly(node):
    assert node.get_json("/healthz") == {"status": "ok"}
    info = node.get_json("/v1/node")
    assert info["node_id"] == node.node_id and info["node_id"].startswith("did:key:z6Mk")
    from coral.api.context import NODE_INFO_DOMAIN
    from coral.protocol.signing import verify_object

    body = {k: v for k, v in info.items() if k != "signature"}
    verify_object(NODE_INFO_DOMAIN, body, info["signature"], info["node_id"])

    with grpc.insecure_channel(node.grpc) as channel:
        resp = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    out = node.output()
    assert node.node_id in out and node.grpc in out and node.http in out
    assert node.terminate() == 0
    assert "stopped cleanly" in node.output()
    assert not (node.data_dir / "node.json").exists()


def test_restart_keeps_identity(node_factory):
    first = node_factory("n")
    node_id = first.node_id
    assert first.terminate() == 0
    second = first.start()
    assert second.node_id == node_id
    key_file = first.data_dir / "keys" / "node.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"


def test_verify_message_over_http_json_and_protobuf(node):
    alice = Identity.generate()
    msg = signed_message(alice)
    status, body = post(node.http + "/v1/messages/verify", message_to_json(msg))
    assert (status, body["valid"], body["message_id"]) == (200, True, msg.id)
    status, body = post(node.http + "/v1/messages/verify", message_to_json(msg))
    assert (status, body["valid"]) == (200, True)  # checking does not record the id
    other = signed_message(alice, "proto")
    status, body = post(
        node.http + "/v1/messages/verify",
        message_to_proto(other).SerializeToString(),
        "application/x-protobuf",
    )
    assert (status, body["valid"]) == (200, True)


def test_verifying_a_message_does_not_burn_its_id_for_the_sender(node):
    """A public verify of a message leaves the sender free to submit it (once)."""
    alice = Identity.generate()
    status, body = post(
        node.http + "/v1/agents", record_body(agent_record(alice, node.node_id, "verifier"))
    )
    assert status == 201, body
    create = Message(
        id=new_message_id(),
        kind="thread.create",
        sender=alice.did,
        created_at=now_ms(),
        parts=(DataPart(data={"name": "verified first", "participants": [alice.did]}),),
    )
    raw = message_to_json(sign_message(create, alice))
    status, body = post(node.http + "/v1/messages/verify", raw)
    assert (status, body["valid"]) == (200, True)
    with grpc.insecure_channel(node.grpc) as channel:
        stub = node_pb2_grpc.NodeServiceStub(channel)
        ok = stub.VerifyMessage(node_pb2.VerifyMessageRequest(json=raw.decode()), timeout=10)
        assert ok.valid
    status, body = post(node.http + "/v1/messages", raw)
    assert status == 201, body
    status, body = post(node.http + "/v1/messages/verify", raw)
    assert (status, body["reason"]) == (409, "replayed")
    status, body = post(node.http + "/v1/messages", raw)
    assert (status, body["reason"]) == (409, "replayed")


@pytest.mark.parametrize(
    ("mutate", "status", "reason"),
    [
        (lambda raw: raw[:-5], 400, "malformed_json"),
        (lambda raw: raw.replace(b'"hello"', b'"HELLO"'), 401, "bad_signature"),
        (lambda raw: raw.replace(b'"hello"', b'"h\xffllo"'), 400, "invalid_utf8"),
        (lambda raw: raw[:-1] + b',"extra":1}', 400, "unknown_field"),
        (lambda raw: b"[" * 5000 + b"]" * 5000, 400, "too_deep"),
        (lambda raw: b'{"x":"' + b"a" * 600_000 + b'"}', 400, "too_large"),
    ],
)
def test_bad_input_over_http_is_a_problem_with_a_reason(node, mutate, status, reason):
    raw = message_to_json(signed_message(Identity.generate()))
    got_status, body = post(node.http + "/v1/messages/verify", mutate(raw))
    assert (got_status, body["reason"]) == (status, reason)
    assert "Traceback" not in json.dumps(body)


def test_rejections_are_counted_by_reason_in_metrics(node):
    post(node.http + "/v1/messages/verify", b"{bad json")
    with urllib.request.urlopen(node.http + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    assert 'coral_rejections_total{api="http",reason="malformed_json"} 1.0' in text


def test_verify_message_over_grpc(node):
    alice = Identity.generate()
    msg = signed_message(alice)
    with grpc.insecure_channel(node.grpc) as channel:
        stub = node_pb2_grpc.NodeServiceStub(channel)
        ok = stub.VerifyMessage(
            node_pb2.VerifyMessageRequest(message=message_to_proto(msg)), timeout=10
        )
        assert ok.valid and ok.message_id == msg.id
        ok = stub.VerifyMessage(
            node_pb2.VerifyMessageRequest(json=message_to_json(msg).decode()), timeout=10
        )
        assert ok.valid

        tampered = message_to_proto(msg)
        tampered.parts[0].text.text = "tampered"
        with pytest.raises(grpc.RpcError) as info:
            stub.VerifyMessage(node_pb2.VerifyMessageRequest(message=tampered), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert ("coral-reason", "bad_signature") in info.value.trailing_metadata()

        with pytest.raises(grpc.RpcError) as info:
            stub.VerifyMessage(
                node_pb2.VerifyMessageRequest(protobuf=b"\x0a\xff\xff\xff\xff\x0f"), timeout=10
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert ("coral-reason", "malformed_protobuf") in info.value.trailing_metadata()

        info_resp = stub.GetNodeInfo(node_pb2.GetNodeInfoRequest(), timeout=10)
        assert info_resp.node_id == node.node_id


def test_cli_status_talks_to_the_running_node(node):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "coral", "status", "--data-dir", str(node.data_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["node_id"] == node.node_id
