"""Secrets at rest and in logs: key files 0600 in 0700 dirs, nothing secret ever logged."""

from __future__ import annotations

import json
import os
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from coral.agents.keyfile import load_or_create_identity
from coral.node.keys import load_or_create_token
from coral.protocol.identity import Identity
from tests.hardening.support import agent_record, record_body
from tests.support.nodeproc import NodeProcess


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _request(url: str, body: bytes | None = None, **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, headers=headers, method="POST" if body else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_key_files_are_created_0600_in_a_0700_dir(tmp_path: Path) -> None:
    keys = tmp_path / "data" / "keys"
    identity, created = load_or_create_identity(keys / "node.key")
    token = load_or_create_token(keys / "admin.token")
    assert created and token
    assert _mode(keys) == 0o700
    assert _mode(keys / "node.key") == 0o600
    assert _mode(keys / "admin.token") == 0o600
    again, created_again = load_or_create_identity(keys / "node.key")
    assert not created_again and again.did == identity.did


def test_loose_key_permissions_are_tightened_on_load(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    load_or_create_identity(keys / "node.key")
    load_or_create_token(keys / "admin.token")
    # An operator's copy or restore widened them: the next start narrows them again.
    os.chmod(keys, 0o755)
    os.chmod(keys / "node.key", 0o644)
    os.chmod(keys / "admin.token", 0o666)
    load_or_create_identity(keys / "node.key")
    load_or_create_token(keys / "admin.token")
    assert _mode(keys) == 0o700
    assert _mode(keys / "node.key") == 0o600
    assert _mode(keys / "admin.token") == 0o600


@dataclass
class ExercisedNode:
    """A debug-logging node that was exercised and stopped, with the secrets it held."""

    data: Path
    log: str
    token: str
    node_seed: str
    mcp_secret: str


@pytest.fixture(scope="module")
def exercised(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExercisedNode]:
    node = NodeProcess(tmp_path_factory.mktemp("secrets") / "node", ["--log-level", "debug"])
    node.start()
    try:
        data = node.data_dir
        token = (data / "keys" / "admin.token").read_text().strip()
        node_seed = (data / "keys" / "node.key").read_text().strip()
        admin = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        json_type = {"Content-Type": "application/json"}
        # An MCP agent (whose key the node holds), a registration, refused admin
        # calls with a wrong token, and a call on the MCP connection URL.
        status, body = _request(node.http + "/v1/admin/mcp-agents", b'{"name":"helper"}', **admin)
        assert status == 201, body
        mcp_secret = json.loads(body)["secret"]
        record = record_body(agent_record(Identity.generate(), node.node_id, "alice"))
        assert _request(node.http + "/v1/agents", record, **json_type)[0] == 201
        wrong = {"Authorization": f"Bearer {token[:-2]}xx", "Content-Type": "application/json"}
        assert _request(node.http + "/v1/admin/mcp-agents", b'{"name":"x"}', **wrong)[0] == 401
        status, _ = _request(node.http + f"/mcp/v1/{mcp_secret}/mcp", b"{}", **json_type)
        assert status < 500
        node.terminate()
        yield ExercisedNode(data, node.output(), token, node_seed, mcp_secret)
    finally:
        node.kill()


def test_held_agent_keys_are_0600_in_0700_dirs(exercised: ExercisedNode) -> None:
    keys = exercised.data / "keys"
    files = [p for p in keys.rglob("*") if p.is_file()]
    assert len([p for p in files if p.suffix == ".key"]) >= 2, "no held agent key under keys/"
    for path in [keys, *[p for p in keys.rglob("*") if p.is_dir()]]:
        assert _mode(path) == 0o700, path
    for path in files:
        assert _mode(path) == 0o600, path


def test_keys_and_admin_token_never_reach_the_debug_log(exercised: ExercisedNode) -> None:
    log = exercised.log
    assert " DEBUG " in log, "the node did not log at debug level"
    assert exercised.token not in log, "the admin token appears in the node log"
    assert exercised.node_seed not in log, "the node seed appears in the node log"
    for path in (exercised.data / "keys").rglob("*.key"):
        assert path.read_text().strip() not in log, f"the key in {path.name} appears in the log"


def test_mcp_connection_secret_never_reaches_the_debug_log(exercised: ExercisedNode) -> None:
    assert exercised.mcp_secret not in exercised.log


def test_a_key_file_in_a_shared_directory_leaves_that_directory_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    load_or_create_identity(shared / "agent.key")
    assert _mode(shared / "agent.key") == 0o600
    assert os.stat(shared).st_mode & 0o7777 == 0o1777
