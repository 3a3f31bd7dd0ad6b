"""A client that leaves mid-request is normal: logged at debug, counted apart, never a 500.

A real node process receives a POST whose client sends half the body it
announced and hangs up, and a long-poll whose client hangs up. Neither may
show up as an unhandled error (with traceback) or a 500 in the metrics; both
are counted in ``coral_client_disconnects_total``.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from coral.protocol.identity import Identity
from tests.hardening.support import coral_auth
from tests.support.nodeproc import NodeProcess


def _metrics(node: NodeProcess) -> str:
    with urllib.request.urlopen(node.http + "/metrics", timeout=30) as resp:
        return str(resp.read().decode())


def _disconnects(node: NodeProcess) -> float:
    for line in _metrics(node).splitlines():
        if line.startswith('coral_client_disconnects_total{api="http"}'):
            return float(line.split()[-1])
    return 0.0


def _waits_open(node: NodeProcess) -> float:
    for line in _metrics(node).splitlines():
        if line.startswith("coral_waits_open "):
            return float(line.split()[-1])
    return 0.0


def _hang_up_after(node: NodeProcess, head: str, body: bytes = b"", *, waits: bool) -> None:
    """Send a request, make sure the node is handling it, then hang up."""
    where = urlsplit(node.http)
    with socket.create_connection((where.hostname, where.port), timeout=30) as sock:
        sock.sendall(head.encode() + body)
        if waits:
            deadline = time.monotonic() + 30
            while _waits_open(node) < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
        else:
            # The node reads our request before this later one: once this is
            # answered, our handler is running (blocked reading the body).
            assert node.get_json("/healthz") == {"status": "ok"}


def test_clients_leaving_mid_request_are_counted_apart_not_500(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node").start()
    try:
        host = urlsplit(node.http).netloc
        _hang_up_after(
            node,
            f"POST /v1/messages HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000\r\n\r\n",
            b'{"id":"half a body',
            waits=False,
        )
        agent = Identity.generate()
        target = "/v1/inbox?timeout_ms=60000"
        auth = coral_auth(agent, "GET", target)
        _hang_up_after(
            node,
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\r\n",
            waits=True,
        )
        deadline = time.monotonic() + 30
        while _disconnects(node) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _disconnects(node) == 2
        metrics = _metrics(node)
        assert 'status="500"' not in metrics
        assert 'status="499"' in metrics
    finally:
        node.kill()
    output = node.output()
    assert "unhandled error" not in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
