"""Fuzzing a real node process through its front doors: no 500, no INTERNAL, no crash.

Bodies come from hypothesis (random bytes, random JSON, mutated valid
messages and records) and go to every route that takes a body, over HTTP and
raw gRPC. After each batch the node must still answer /healthz, and the
rejected inputs must not have changed the directory or the threads (database
row counts, read from the node's SQLite file).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coral.protocol.codec import message_to_json, message_to_proto
from coral.protocol.identity import Identity
from coral.v1 import agents_pb2, coordination_pb2, node_pb2
from tests.hardening.support import (
    agent_record,
    coral_auth,
    record_body,
    settled_fingerprint,
    signed_message,
)
from tests.hardening.test_fuzz_decoders import json_values, mutate
from tests.support.nodeproc import NodeProcess

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
ALICE = Identity.generate()

#: Routes that take a body, with how they authenticate (None: the body is signed).
BODY_ROUTES = [
    "/v1/messages",
    "/v1/messages/verify",
    "/v1/agents",
    "/v1/teams",
    "/v1/teams/team-x/documents",
    "/v1/ledger/receipts/verify",
    "/v1/ledger/transfers",
    "/v1/ledger/reservations",
]
#: State the refused inputs must not touch.
GUARDED_TABLES = ("agent", "coordination_", "team_", "seen_messages")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path_factory.mktemp("fuzz") / "node").start()
    status, _ = _post(proc, "/v1/agents", record_body(agent_record(ALICE, proc.node_id, "alice")))
    assert status == 201
    try:
        yield proc
    finally:
        proc.kill()


def _post(
    node: NodeProcess,
    path: str,
    body: bytes,
    content_type: str = "application/json",
    **headers: str,
) -> tuple[int, bytes]:
    request = urllib.request.Request(
        node.http + path,
        data=body,
        method="POST",
        headers={"Content-Type": content_type, **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _alive(node: NodeProcess) -> None:
    assert node.proc is not None and node.proc.poll() is None, node.output()[-3000:]
    assert node.get_json("/healthz") == {"status": "ok"}


def _guarded_state(node: NodeProcess) -> dict[str, int]:
    counts = settled_fingerprint(node.data_dir / "coral.db")
    return {name: n for name, n in counts.items() if any(t in name for t in GUARDED_TABLES)}


def _check_no_server_error(node: NodeProcess, path: str, body: bytes, **kwargs: Any) -> int:
    if path.startswith("/v1/ledger/transfers") or path.startswith("/v1/ledger/reservations"):
        # A valid signature, so the fuzzed body reaches the ledger's parsing.
        kwargs["Authorization"] = coral_auth(ALICE, "POST", path, body)
    status, payload = _post(node, path, body, **kwargs)
    assert status < 500, (path, body[:200], status, payload[:500])
    if 400 <= status < 500 and status != 404 and payload:
        problem = json.loads(payload)
        assert isinstance(problem.get("reason"), str), payload[:300]
    return status


@FUZZ
@given(route=st.sampled_from(BODY_ROUTES), raw=st.binary(max_size=1024))
def test_random_bytes_to_body_routes(node: NodeProcess, route: str, raw: bytes) -> None:
    _check_no_server_error(node, route, raw)
    _check_no_server_error(node, route, raw, content_type="application/x-protobuf")


@FUZZ
@given(route=st.sampled_from(BODY_ROUTES), value=json_values)
def test_random_json_to_body_routes(node: NodeProcess, route: str, value: Any) -> None:
    _check_no_server_error(node, route, json.dumps(value).encode())


def _large_or_deep(depth: int, digits: int, width: int, opener: str, filler: str) -> bytes:
    """JSON (or near-JSON) shaped to hit parser limits: nesting, number length, size."""
    close = {"[": "]", '{"k":': "}"}[opener]
    leaf = "[" + ",".join([filler] * width) + "]" if width else filler
    number = "1" * digits if digits else "0"
    text = opener * depth + '{"n":' + number + ',"v":' + leaf + "}" + close * depth
    return text.encode()


@FUZZ
@given(
    route=st.sampled_from(BODY_ROUTES),
    depth=st.integers(min_value=0, max_value=3000),
    digits=st.integers(min_value=0, max_value=6000),
    width=st.integers(min_value=0, max_value=20_000),
    opener=st.sampled_from(["[", '{"k":']),
    filler=st.sampled_from(["1", '"x"', "null", "1e308", "-0.5", "[]"]),
)
def test_large_and_deep_json_to_body_routes(
    node: NodeProcess, route: str, depth: int, digits: int, width: int, opener: str, filler: str
) -> None:
    _check_no_server_error(node, route, _large_or_deep(depth, digits, width, opener, filler))


@FUZZ
@given(
    where=st.integers(min_value=0), replacement=json_values, route=st.sampled_from(BODY_ROUTES[:3])
)
def test_mutated_valid_bodies(node: NodeProcess, where: int, replacement: Any, route: str) -> None:
    if route == "/v1/agents":
        valid = json.loads(record_body(agent_record(ALICE, node.node_id, "alice")))
    else:
        valid = json.loads(
            message_to_json(
                signed_message(
                    ALICE, kind="thread.create", data={"name": "x", "participants": [ALICE.did]}
                )
            )
        )
    _check_no_server_error(node, route, json.dumps(mutate(valid, where, replacement)).encode())


def test_rejected_fuzz_left_directory_and_threads_unchanged(node: NodeProcess) -> None:
    """Run a batch of signature-less garbage and compare state before and after."""
    before = _guarded_state(node)
    forged = signed_message(ALICE, kind="thread.create", data={"name": "x", "participants": []})
    bodies = [
        b"",
        b"{}",
        b"[]",
        b"null",
        b"\xff\xfe",
        b'{"id":' * 200,
        message_to_json(forged.model_copy(update={"signature": None})),
        message_to_json(forged.model_copy(update={"sender": Identity.generate().did})),
        record_body(
            agent_record(ALICE, node.node_id, "alice").model_copy(
                update={"agent_signature": "AAAA"}
            )
        ),
    ]
    for route in BODY_ROUTES[:3]:
        for body in bodies:
            status = _check_no_server_error(node, route, body)
            assert status >= 400, (route, body[:80], status)
    assert _guarded_state(node) == before
    _alive(node)


def test_a2a_and_mcp_json_rpc_front_doors_survive_garbage(node: NodeProcess) -> None:
    token = (node.data_dir / "keys" / "admin.token").read_text().strip()
    status, body = _post(
        node, "/v1/admin/mcp-agents", b'{"name":"fuzzee"}', Authorization=f"Bearer {token}"
    )
    assert status == 201, body
    secret = json.loads(body)["secret"]
    doors = ["/a2a/jsonrpc", "/a2a/alice/jsonrpc", "/a2a/message:send", f"/mcp/v1/{secret}/mcp"]
    samples = [
        b"",
        b"{",
        b"[]",
        b'{"jsonrpc":"2.0"}',
        b'{"jsonrpc":"2.0","id":1,"method":"nope"}',
        b'{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":7}}',
        b'{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"parts":[{}]}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[]}}',
        b'[{"jsonrpc":"2.0","id":1,"method":"initialize","params":null}]',
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "a" * 10_000}).encode(),
        b'{"a":' * 500 + b"1" + b"}" * 500,
        b"[" * 5000 + b"]" * 5000,  # past Python's recursion limit for json.loads
    ]
    for door in doors:
        for sample in samples:
            headers = {"Accept": "application/json, text/event-stream"}
            status, payload = _post(node, door, sample, **headers)
            assert status < 500, (door, sample[:80], status, payload[:300])
    _alive(node)


def _refused_cleanly(method: str, exc: grpc.RpcError) -> None:
    """A typed status, never INTERNAL or UNKNOWN.

    Bytes that do not decode as the method's request are INVALID_ARGUMENT
    (the node's interceptor decodes requests, not grpc's deserializer).
    """
    code, details = exc.code(), exc.details() or ""
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (method, details)


@FUZZ
@given(
    method=st.sampled_from(
        [
            "/coral.v1.CoordinationService/Submit",
            # A request stream called with one request: each frame is decoded as it comes.
            "/coral.v1.CoordinationService/SubmitStream",
            "/coral.v1.NodeService/VerifyMessage",
            "/coral.v1.AgentService/RegisterAgent",
        ]
    ),
    raw=st.binary(max_size=1024),
)
def test_random_bytes_to_grpc_methods(grpc_channel: grpc.Channel, method: str, raw: bytes) -> None:
    call = grpc_channel.unary_unary(method)  # no serializer: the raw bytes go on the wire
    try:
        call(raw, timeout=20)
    except grpc.RpcError as exc:
        _refused_cleanly(method, exc)


@FUZZ
@given(position=st.integers(min_value=0), chunk=st.binary(min_size=1, max_size=6))
def test_mutated_protobuf_submit_and_register(
    grpc_channel: grpc.Channel, position: int, chunk: bytes
) -> None:
    message = signed_message(
        ALICE, kind="thread.create", data={"name": "x", "participants": [ALICE.did]}
    )
    from coral.api.grpc.convert import record_to_proto

    valid = {
        "/coral.v1.CoordinationService/Submit": coordination_pb2.SubmitRequest(
            message=message_to_proto(message)
        ),
        "/coral.v1.NodeService/VerifyMessage": node_pb2.VerifyMessageRequest(
            message=message_to_proto(message)
        ),
        "/coral.v1.AgentService/RegisterAgent": agents_pb2.RegisterAgentRequest(
            record=record_to_proto(
                agent_record(
                    ALICE, "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", "alice"
                )
            )
        ),
    }
    for method, request in valid.items():
        raw = request.SerializeToString()
        at = position % len(raw)
        mutated = raw[:at] + chunk + raw[at + len(chunk) :]
        try:
            grpc_channel.unary_unary(method)(mutated, timeout=20)
        except grpc.RpcError as exc:
            _refused_cleanly(method, exc)


@pytest.fixture(scope="module")
def grpc_channel(node: NodeProcess) -> Iterator[grpc.Channel]:
    channel = grpc.insecure_channel(node.grpc)
    try:
        yield channel
    finally:
        channel.close()


def test_node_still_healthy_after_grpc_fuzz(node: NodeProcess, grpc_channel: grpc.Channel) -> None:
    _alive(node)
    # Third-party front doors (a2a-sdk) log their own parse errors; ours must not
    # have hit the catch-all for unexpected exceptions.
    unhandled = [line for line in node.output().splitlines() if "unhandled error" in line]
    assert not unhandled, unhandled[:5]


@pytest.mark.parametrize("body", [b"null", b"[]", b"7"])
def test_team_routes_refuse_non_object_json_with_400(node: NodeProcess, body: bytes) -> None:
    for route in ("/v1/teams", "/v1/teams/team-x/documents"):
        status, payload = _post(node, route, body)
        assert status == 400, (route, body, status, payload)


def test_grpc_register_agent_refuses_an_invalid_record_with_invalid_argument(
    grpc_channel: grpc.Channel,
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        grpc_channel.unary_unary("/coral.v1.AgentService/RegisterAgent")(b"", timeout=20)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
