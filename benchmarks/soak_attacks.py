"""Soak one node with the attacks of docs/security.md interleaved with normal traffic.

Run: python benchmarks/soak_attacks.py [--seconds 60]

Bounded by time; not part of run_all.py. One node process; each round sends
normal traffic (two registered agents post to a shared thread, read its
history and wait for mentions) and one of each attack: JSON nested 1,100
deep, a 5,000-digit integer (HTTP and gRPC), undecodable gRPC bytes, an
over-long header line, a client hanging up mid-body and mid-wait, nine SSE
streams on one key, a second key claiming a taken name, and a public verify
of a message its sender then submits. Every answer must be the expected
status; at the end /healthz must answer, SIGTERM must stop the node cleanly,
and its log must hold no traceback other than the expected ones listed in
docs/security.md (currently none). Exit code 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coral.protocol.agent import AgentManifest, AgentRecord, sign_record_as_agent
from coral.protocol.codec import message_to_json, message_to_proto
from coral.protocol.identity import Identity
from coral.protocol.message import DataPart, Message, TextPart, new_message_id, now_ms
from coral.protocol.request_auth import sign_request
from coral.protocol.signing import sign_message
from coral.v1 import message_pb2, node_pb2

PORTS = ("--grpc-port", "0", "--http-port", "0")
#: Log lines with a traceback that the soak accepts (see docs/security.md).
EXPECTED_TRACEBACKS: tuple[str, ...] = ()


@dataclass
class Report:
    """What one soak run saw."""

    rounds: int = 0
    unexpected: Counter[str] = field(default_factory=Counter)
    healthy: bool = False
    exit_code: int | None = None
    tracebacks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.healthy and self.exit_code == 0 and not self.unexpected and not self.tracebacks


class SoakNode:
    """A node subprocess whose log goes to a file the soak scans afterwards."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir.parent / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    def start(self) -> SoakNode:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "coral", "start", "--data-dir", str(self.data_dir), *PORTS],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                info = json.loads((self.data_dir / "node.json").read_text())
                if info.get("pid") == self.proc.pid:
                    self.info = info
                    return self
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(0.05)
        raise TimeoutError("node did not start")

    @property
    def http(self) -> str:
        return str(self.info["http_address"])

    @property
    def grpc(self) -> str:
        return str(self.info["grpc_address"])

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(30)


def _call(node: SoakNode, method: str, path: str, body: bytes | None = None, **headers: str) -> int:
    request = urllib.request.Request(
        node.http + path,
        data=body,
        method=method,
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code


def _record(agent: Identity, node_id: str, name: str) -> bytes:
    record = AgentRecord(
        agent=agent.did,
        home_node=node_id,
        manifest=AgentManifest(name=name),
        version=now_ms(),
        updated_at=now_ms(),
    )
    return json.dumps(sign_record_as_agent(record, agent).model_dump(mode="json")).encode()


def _message(sender: Identity, *, kind: str = "message", **fields: Any) -> Message:
    parts = fields.pop("parts", (TextPart(text="hello"),))
    at = now_ms()
    raw = Message(id=new_message_id(at), kind=kind, sender=sender.did, created_at=at, parts=parts)
    return sign_message(raw.model_copy(update=fields), sender)


def _raw(node: SoakNode, data: bytes, *, read: bool = True) -> bytes:
    where = urlsplit(node.http)
    with socket.create_connection((where.hostname, where.port), timeout=30) as sock:
        sock.sendall(data)
        return sock.recv(64) if read else b""


def _signed_get(agent: Identity, host: str, target: str) -> bytes:
    auth = sign_request(agent, "GET", target, b"", now_ms())
    return f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\r\n".encode()


def _status(head: bytes) -> int:
    parts = head.split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def soak(seconds: float) -> Report:
    """Run the soak for about ``seconds`` against a fresh node; the report says how it went."""
    report = Report()
    with tempfile.TemporaryDirectory(prefix="coral-soak-") as tmp:
        node = SoakNode(Path(tmp) / "node").start()
        node_id = str(node.info["node_id"])
        host = urlsplit(node.http).netloc
        alice, bob = Identity.generate(), Identity.generate()
        expect = _expecter(report)
        expect(
            "register alice",
            _call(node, "POST", "/v1/agents", _record(alice, node_id, "alice")),
            201,
        )
        expect("register bob", _call(node, "POST", "/v1/agents", _record(bob, node_id, "bob")), 201)
        create = _message(
            alice,
            kind="thread.create",
            parts=(DataPart(data={"name": "soak", "participants": ["bob"]}),),
        )
        expect("create thread", _call(node, "POST", "/v1/messages", message_to_json(create)), 201)
        thread_id = _thread_id(node, alice)
        channel = grpc.insecure_channel(node.grpc)
        verify = channel.unary_unary("/coral.v1.NodeService/VerifyMessage")
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                report.rounds += 1
                # Normal traffic.
                post = _message(alice, thread=thread_id, mentions=(bob.did,))
                expect("post", _call(node, "POST", "/v1/messages", message_to_json(post)), 201)
                target = "/v1/inbox?kind=mention&timeout_ms=1"
                auth = sign_request(bob, "GET", target, b"", now_ms())
                expect("wait", _call(node, "GET", target, Authorization=auth), 200)
                # Deep JSON and huge numbers.
                deep = b'{"a":' * 1100 + b"1" + b"}" * 1100
                expect("deep", _call(node, "POST", "/v1/ledger/receipts/verify", deep), 400)
                huge = message_to_json(_message(alice, parts=(DataPart(data={"n": 1}),)))
                huge = huge.replace(b'"n":1', b'"n":' + b"9" * 5000)
                expect("huge int", _call(node, "POST", "/v1/messages", huge), 400)
                grpc_huge = message_to_proto(_message(alice, parts=(DataPart(data={"n": 1}),)))
                grpc_huge.parts[0].CopyFrom(
                    message_pb2.Part(data=message_pb2.DataPart(json='{"n":' + "9" * 5000 + "}"))
                )
                request = node_pb2.VerifyMessageRequest(message=grpc_huge).SerializeToString()
                for label, raw in (("grpc huge int", request), ("grpc garbage", b"\xff\xff\xff")):
                    try:
                        verify(raw, timeout=30)
                        report.unexpected[f"{label}: OK"] += 1
                    except grpc.RpcError as exc:
                        expect(label, exc.code().name, "INVALID_ARGUMENT")
                # Malformed HTTP and clients that leave.
                long_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20_000
                expect("long header", _status(_raw(node, long_header + b"\r\n\r\n")), 400)
                half = (
                    f"POST /v1/messages HTTP/1.1\r\nHost: {host}\r\n"
                    "Content-Type: application/json\r\nContent-Length: 9999\r\n\r\n{"
                )
                _raw(node, half.encode(), read=False)
                _raw(
                    node,
                    _signed_get(Identity.generate(), host, "/v1/inbox?timeout_ms=60000"),
                    read=False,
                )
                # Nine streams on one key: the ninth is a real 429.
                streamer = Identity.generate()
                streams = []
                where = urlsplit(node.http)
                for _ in range(9):
                    sock = socket.create_connection((where.hostname, where.port), timeout=30)
                    sock.sendall(_signed_get(streamer, host, "/v1/inbox/events"))
                    streams.append(sock)
                codes = sorted(_status(s.recv(64)) for s in streams)
                for sock in streams:
                    sock.close()
                expect("ninth stream", codes, [200] * 8 + [429])
                # A hijacked name and a verify that must not burn the id.
                mallory = Identity.generate()
                expect(
                    "hijack",
                    _call(node, "POST", "/v1/agents", _record(mallory, node_id, "alice")),
                    409,
                )
                checked = message_to_json(_message(alice, thread=thread_id))
                expect("verify", _call(node, "POST", "/v1/messages/verify", checked), 200)
                expect("submit verified", _call(node, "POST", "/v1/messages", checked), 201)
            report.healthy = _call(node, "GET", "/healthz") == 200
        finally:
            channel.close()
            report.exit_code = node.stop()
        log = node.log_path.read_text()
        report.tracebacks = [
            block
            for block in log.split("Traceback (most recent call last):")[1:]
            if not any(marker in block for marker in EXPECTED_TRACEBACKS)
        ]
        if "unhandled error" in log:
            report.unexpected["unhandled error in log"] += log.count("unhandled error")
    return report


def _expecter(report: Report) -> Any:
    def expect(label: str, got: Any, want: Any) -> None:
        if got != want:
            report.unexpected[f"{label}: {got}"] += 1

    return expect


def _thread_id(node: SoakNode, agent: Identity) -> str:
    target = "/v1/threads"
    auth = sign_request(agent, "GET", target, b"", now_ms())
    request = urllib.request.Request(node.http + target, headers={"Authorization": auth})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return str(json.loads(resp.read())["threads"][0]["id"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    report = soak(args.seconds)
    print(f"rounds {report.rounds}, healthy {report.healthy}, exit code {report.exit_code}")
    print(f"unexpected answers: {dict(report.unexpected) or 'none'}")
    print(f"unexpected tracebacks: {len(report.tracebacks)}")
    for block in report.tracebacks[:3]:
        print(block[-1500:])
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
