"""Malformed input is a client error, storage failures are UNAVAILABLE, SIGTERM is prompt.

Real node processes: undecodable gRPC request bytes answer INVALID_ARGUMENT
``malformed_protobuf``; over-long HTTP request and header lines answer 400;
neither leaves a traceback in the log. A database that cannot serve reaches
gRPC clients as UNAVAILABLE ``storage_unavailable`` and HTTP clients as 503.
A node with an A2A call in flight exits on SIGTERM without draining it for
the whole grace period.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import pytest

from coral.protocol.identity import Identity
from coral.v1 import agents_pb2
from tests.hardening.support import agent_record, record_body
from tests.support.nodeproc import NodeProcess


def _raw_http(node: NodeProcess, request: bytes) -> bytes:
    where = urlsplit(node.http)
    with socket.create_connection((where.hostname, where.port), timeout=30) as sock:
        sock.sendall(request)
        return sock.recv(200)


def test_undecodable_and_over_long_requests_are_client_errors_without_traceback(
    tmp_path: Path,
) -> None:
    node = NodeProcess(tmp_path / "node").start()
    try:
        with grpc.insecure_channel(node.grpc) as channel:
            for method in (
                "/coral.v1.NodeService/VerifyMessage",
                "/coral.v1.CoordinationService/Subscribe",
            ):
                call = (
                    channel.unary_stream(method)
                    if method.endswith("Subscribe")
                    else channel.unary_unary(method)
                )
                with pytest.raises(grpc.RpcError) as info:
                    result = call(b"\xff\xff\xff\xff", timeout=30)
                    list(result) if method.endswith("Subscribe") else None
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
                metadata = tuple(info.value.trailing_metadata() or ())
                assert ("coral-reason", "malformed_protobuf") in metadata
        long_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\n"
        long_target = b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        for request in (long_header, long_target):
            assert _raw_http(node, request).split(b" ")[1] == b"400"
        assert node.get_json("/healthz") == {"status": "ok"}
        assert node.terminate() == 0
    finally:
        node.kill()
    output = node.output()
    assert "Traceback" not in output, output[-3000:]
    assert "refused a malformed HTTP request (LineTooLong)" in output
    assert "undecodable request to /coral.v1.NodeService/VerifyMessage" in output


def test_a_storage_failure_is_unavailable_with_a_reason(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node").start()
    try:
        # Break the directory's storage underneath the running node.
        with sqlite3.connect(node.data_dir / "coral.db") as conn:
            conn.execute("DROP TABLE agent_capabilities")
        with grpc.insecure_channel(node.grpc) as channel:
            list_agents = channel.unary_unary(
                "/coral.v1.AgentService/ListAgents",
                request_serializer=agents_pb2.ListAgentsRequest.SerializeToString,
            )
            with pytest.raises(grpc.RpcError) as info:
                list_agents(agents_pb2.ListAgentsRequest(capability="chat"), timeout=30)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert ("coral-reason", "storage_unavailable") in tuple(info.value.trailing_metadata())
        with pytest.raises(urllib.error.HTTPError) as http_info:
            urllib.request.urlopen(node.http + "/v1/agents?capability=chat", timeout=30)
        assert http_info.value.code == 503
        assert json.loads(http_info.value.read())["reason"] == "storage_unavailable"
    finally:
        node.kill()
    assert "Traceback" not in node.output()


def _messages_routed(node: NodeProcess) -> float:
    with urllib.request.urlopen(node.http + "/metrics", timeout=30) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("coral_messages_routed_total "):
                return float(line.split()[-1])
    return 0.0


def test_sigterm_with_an_a2a_call_in_flight_exits_promptly(tmp_path: Path) -> None:
    # The longest grace there is: a node that drained the waiting call instead of
    # cancelling it would wait it out (aiohttp waits it twice) and miss the
    # terminate() below, whose bound is a hang guard far under that, not a speed claim.
    node = NodeProcess(tmp_path / "node", env={"CORAL_SHUTDOWN_GRACE_S": "300"}).start()
    try:
        quiet = agent_record(Identity.generate(), node.node_id, "quiet")  # never answers
        request = urllib.request.Request(
            node.http + "/v1/agents",
            data=record_body(quiet),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=30).close()
        call = {
            "jsonrpc": "2.0",
            "id": "1",
            "method": "message/send",
            "params": {
                "message": {
                    "kind": "message",
                    "messageId": str(uuid.uuid4()),
                    "role": "user",
                    "parts": [{"kind": "text", "text": "are you there?"}],
                }
            },
        }
        outcome: dict[str, Any] = {}

        def send() -> None:
            a2a = urllib.request.Request(
                node.http + "/a2a/quiet/jsonrpc",
                data=json.dumps(call).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                urllib.request.urlopen(a2a, timeout=60).close()
            except (OSError, urllib.error.HTTPError) as exc:
                outcome["error"] = exc

        caller = threading.Thread(target=send, daemon=True)
        caller.start()
        deadline = time.monotonic() + 30
        while _messages_routed(node) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)  # until the call has reached the agent's thread
        assert _messages_routed(node) >= 1
        try:
            assert node.terminate(timeout=120) == 0
        except subprocess.TimeoutExpired:
            raise AssertionError(
                "shutdown waited for the A2A call instead of cancelling it"
            ) from None
        caller.join(30)
        assert not caller.is_alive(), "the caller was left hanging"
    finally:
        node.kill()
    assert "Traceback" not in node.output(), node.output()[-3000:]
