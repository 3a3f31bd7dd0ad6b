"""Every JSON body goes through one bounded parser: hostile shapes get a 4xx, never a 500.

A real node process receives, on every route that takes a body, JSON nested
1,100 deep (past the interpreter's recursion limit), numbers with 5,000
digits (past its int-string conversion limit), invalid UTF-8 and non-object
JSON. Each answer is a 4xx problem+json with a machine-readable reason, the
node stays healthy and its log holds no traceback. gRPC ``VerifyMessage``
with such a number in a data part answers INVALID_ARGUMENT, not INTERNAL.
"""

from __future__ import annotations

import json
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from coral.protocol.codec import message_to_json, message_to_proto
from coral.protocol.identity import Identity
from coral.v1 import message_pb2, node_pb2
from tests.hardening.support import (
    ThreadedNode,
    agent_record,
    coral_auth,
    record_body,
    signed_message,
)
from tests.support.nodeproc import NodeProcess

ALICE = Identity.generate()
SIGNED = "signed"  # the route authenticates with a signed Coral request value
ADMIN = "admin"  # the route needs the admin bearer token
OPEN = "open"  # the body itself is what is checked (signed document or public)

#: Every POST route of the node's own API (A2A and MCP transports parse their
#: bodies in their libraries and are fuzzed in test_fuzz_front_doors; the
#: coral-server drop-in routes under /api/v1 need its [auth] keys and read
#: bodies through coral.api.coralserver.common.json_body, the same parser).
BODY_ROUTES = {
    "/v1/messages": OPEN,
    "/v1/messages/verify": OPEN,
    "/v1/agents": OPEN,
    "/v1/agents/rotate": OPEN,
    "/v1/teams": OPEN,
    "/v1/teams/team-x/documents": OPEN,
    "/v1/ledger/receipts/verify": OPEN,
    "/v1/ledger/transfers": SIGNED,
    "/v1/ledger/reservations": SIGNED,
    "/v1/ledger/reservations/p-1/post": SIGNED,
    "/v1/ledger/reservations/p-1/void": SIGNED,
    "/v1/ledger/reservations/p-1/fulfil": SIGNED,
    "/v1/ledger/remote-payments": SIGNED,
    "/v1/ledger/remote-payments/p-1/fulfil": SIGNED,
    "/v1/admin/ledger/issue": ADMIN,
    "/v1/admin/mcp-agents": ADMIN,
    "/v1/admin/a2a-agents": ADMIN,
    "/v1/admin/launch": ADMIN,
    "/v1/dashboard/admin/threads/t-1/close": ADMIN,
}
LIBRARY_TRANSPORTS = ("/a2a", "/mcp/", "/api/v1/")

DEEP = b"[" * 1100 + b"]" * 1100
DEEP_OBJECT = b'{"a":' * 1100 + b"1" + b"}" * 1100
HUGE_INT = b'{"amount":' + b"7" * 5000 + b"}"


def _message_with_huge_int() -> bytes:
    """A real signed message whose data part is spliced to hold a 5,000-digit integer."""
    message = signed_message(ALICE, kind="thread.create", data={"n": 1, "participants": []})
    wire = message_to_json(message)
    spliced = wire.replace(b'"n":1', b'"n":' + b"9" * 5000)
    assert spliced != wire
    return spliced


HOSTILE = {
    "deep_array": DEEP,
    "deep_object": DEEP_OBJECT,
    "huge_int": HUGE_INT,
    "huge_int_in_message": _message_with_huge_int(),
    "huge_float": b'{"amount":1.' + b"5" * 5000 + b"}",
    "bad_utf8": b'{"a":"\xff\xfe"}',
    "not_an_object": b"[1,2,3]",
    "big_flat_array": b"[" + b"1," * 200_000 + b"1]",
}


@pytest.fixture(scope="module")
def node() -> Iterator[NodeProcess]:
    with tempfile.TemporaryDirectory() as tmp:
        proc = NodeProcess(Path(tmp) / "node").start()
        body = record_body(agent_record(ALICE, proc.node_id, "alice"))
        assert _post(proc, "/v1/agents", body)[0] == 201
        try:
            yield proc
        finally:
            proc.kill()


def _post(node: NodeProcess, path: str, body: bytes, **headers: str) -> tuple[int, bytes, str]:
    request = urllib.request.Request(
        node.http + path,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def _headers(node: NodeProcess, path: str, access: str, body: bytes) -> dict[str, str]:
    if access == SIGNED:
        return {"Authorization": coral_auth(ALICE, "POST", path, body)}
    if access == ADMIN:
        token = (node.data_dir / "keys" / "admin.token").read_text().strip()
        return {"Authorization": f"Bearer {token}"}
    return {}


@pytest.mark.parametrize("shape", sorted(HOSTILE))
def test_hostile_json_bodies_get_a_4xx_problem_with_a_reason(node: NodeProcess, shape: str) -> None:
    body = HOSTILE[shape]
    for path, access in BODY_ROUTES.items():
        status, payload, content_type = _post(
            node, path, body, **_headers(node, path, access, body)
        )
        assert 400 <= status < 500, (shape, path, status, payload[:300])
        if status != 404:
            assert content_type.startswith("application/problem+json"), (shape, path)
            problem = json.loads(payload)
            assert isinstance(problem["reason"], str) and problem["reason"], (shape, path)
    assert node.get_json("/healthz") == {"status": "ok"}


def test_number_and_depth_refusals_name_the_limit(node: NodeProcess) -> None:
    status, payload, _ = _post(node, "/v1/ledger/receipts/verify", DEEP_OBJECT)
    assert (status, json.loads(payload)["reason"]) == (400, "too_deep")
    status, payload, _ = _post(node, "/v1/messages", _message_with_huge_int())
    assert (status, json.loads(payload)["reason"]) == (400, "number_too_long")
    status, payload, _ = _post(node, "/v1/ledger/receipts/verify", b"[]")
    assert (status, json.loads(payload)["reason"]) == (400, "invalid_body")


def test_grpc_verify_message_with_a_huge_integer_is_invalid_argument(node: NodeProcess) -> None:
    message = message_to_proto(signed_message(ALICE, kind="message", data={"n": 1}))
    message.parts[0].CopyFrom(
        message_pb2.Part(data=message_pb2.DataPart(json='{"n":' + "9" * 5000 + "}"))
    )
    request = node_pb2.VerifyMessageRequest(message=message)
    with grpc.insecure_channel(node.grpc) as channel:
        call = channel.unary_unary(
            "/coral.v1.NodeService/VerifyMessage",
            request_serializer=node_pb2.VerifyMessageRequest.SerializeToString,
        )
        with pytest.raises(grpc.RpcError) as info:
            call(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("coral-reason", "number_too_long") in tuple(info.value.trailing_metadata() or ())


def test_node_log_has_no_traceback_after_hostile_bodies(node: NodeProcess) -> None:
    for path, access in BODY_ROUTES.items():
        _post(node, path, DEEP, **_headers(node, path, access, DEEP))
    output = node.output()
    assert "Traceback" not in output, output[-3000:]
    assert "unhandled error" not in output, output[-3000:]


def test_every_body_route_is_covered(tmp_path: Path) -> None:
    """A new POST route fails this test until it is added to BODY_ROUTES above."""
    threaded = ThreadedNode(tmp_path / "routes").start()
    try:
        routes = threaded.http_routes()
    finally:
        threaded.stop()
    posted = {
        path
        for method, path in routes
        if method == "POST" and not path.startswith(LIBRARY_TRANSPORTS)
    }
    covered = {_canonical(path) for path in BODY_ROUTES}
    assert posted <= covered, sorted(posted - covered)


def _canonical(path: str) -> str:
    replacements = {
        "/team-x/": "/{team_id}/",
        "/reservations/p-1/": "/reservations/{pending_id}/",
        "/remote-payments/p-1/": "/remote-payments/{payment_id}/",
        "/threads/t-1/": "/threads/{thread_id}/",
    }
    for concrete, pattern in replacements.items():
        path = path.replace(concrete, pattern)
    return path
