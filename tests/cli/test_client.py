"""coral/cli/client.py: the one HTTP client of the coral-node commands, against a real node."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from coral.cli.client import (
    NodeClient,
    NodeRefused,
    NodeTimeout,
    NodeUnreachable,
    NoRunningNode,
    RunningNode,
    node_errors,
)
from coral.config import load_config
from coral.protocol.identity import Identity


def running(node: Any) -> RunningNode:
    return RunningNode.find(load_config(None, overrides={"data_dir": node.data_dir}))


def test_admin_agent_and_anonymous_calls_against_a_real_node(node: Any) -> None:
    found = running(node)
    assert (found.url, found.node_id) == (node.http, node.node_id)
    with found.client(admin=True) as client:
        assert client.get("/healthz") == {"status": "ok"}
        assert client.get("/v1/admin/launched", auth="admin") == {"launched": []}

    with NodeClient(node.http, admin_token="wrong") as client:
        with pytest.raises(NodeRefused) as refused:
            client.get("/v1/admin/launched", auth="admin")
    assert refused.value.status == 401 and refused.value.reason
    assert str(refused.value).startswith("refused: ") and "\n" not in str(refused.value)

    # A signed read passes authentication (the node then looks the account up);
    # the same read unsigned is refused before that.
    agent = Identity.generate()
    path = f"/v1/ledger/accounts/{agent.did}/history"
    with found.client(identity=agent) as client:
        with pytest.raises(NodeRefused) as unsigned:
            client.get(path, query={"after": 0, "limit": 5})
        with pytest.raises(NodeRefused) as signed:
            client.get(path, query={"after": 0, "limit": 5}, auth="agent")
    assert unsigned.value.status == 401
    assert (signed.value.status, signed.value.reason) == (404, "unknown_account")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A socket that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_nothing_listening_and_no_answer_are_one_line_errors(silent_server: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with NodeClient(url) as client, pytest.raises(NodeUnreachable) as unreachable:
        client.get("/healthz")
    assert str(unreachable.value).startswith(f"node at {url} is not reachable: ")
    with NodeClient(silent_server, timeout_s=0.2) as client, pytest.raises(NodeTimeout) as late:
        client.get("/healthz")
    assert str(late.value) == f"node at {silent_server} did not answer within 0.2 s"


def test_no_running_node_says_how_to_start_one(tmp_path: Path) -> None:
    cfg = load_config(None, overrides={"data_dir": tmp_path})
    with pytest.raises(NoRunningNode) as missing:
        RunningNode.find(cfg, or_url=True)
    assert str(missing.value) == (
        f"no running node found in {tmp_path}; start it with `coral-node start` or pass --url"
    )


def test_node_errors_print_the_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exited, node_errors():
        raise NodeRefused(409, "agent_name_taken", "gina is taken")
    assert exited.value.exit_code == 1
    assert capsys.readouterr().err == "refused: agent_name_taken: gina is taken\n"
