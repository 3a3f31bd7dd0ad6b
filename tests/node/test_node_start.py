"""A ``coral-node start`` that cannot succeed fails fast with one line naming cause and fix.

Every case runs the real CLI in a subprocess. The time bound is a generous timeout
(a start that hangs fails the test), not a performance assertion.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.nodeproc import NodeProcess

ROOT = Path(__file__).resolve().parents[2]
#: A failed start must be over well within this; it is a hang detector, not a benchmark.
FAIL_FAST_TIMEOUT_S = 30


def start_node(*args: str, prelude: str = "", user: int | None = None) -> tuple[int, str, str]:
    """Run ``coral-node start ARGS`` to completion; returns (exit code, stdout, stderr)."""
    code = f"{prelude}\nimport sys\nfrom coral.cli import main\nsys.argv = ['coral-node', 'start', *sys.argv[1:]]\nmain()"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CORAL_LOG_LEVEL": "warning"}
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=FAIL_FAST_TIMEOUT_S,
        env=env,
        cwd=ROOT,
        user=user,
    )
    return result.returncode, result.stdout, result.stderr


def error_line(stderr: str) -> str:
    """The single ``error:`` line; fails the test on a traceback or several error lines."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    assert stderr.rstrip().endswith(lines[0]), stderr
    return lines[0]


@pytest.fixture
def listener() -> Iterator[int]:
    """A port held by an ordinary listening socket (another program)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def assert_nothing_left_open(data_dir: Path) -> None:
    """No runtime file claims a node runs, and the database takes a write lock at once."""
    assert not (data_dir / "node.json").exists()
    db = data_dir / "coral.db"
    if db.exists():
        conn = sqlite3.connect(db, timeout=0)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            conn.execute("ROLLBACK")
        finally:
            conn.close()


def test_grpc_port_in_use_fails_with_the_port_and_the_fix(tmp_path, listener):
    data = tmp_path / "node"
    code, out, err = start_node(
        "--data-dir", str(data), "--grpc-port", str(listener), "--http-port", "0"
    )
    assert code == 1
    line = error_line(err)
    assert f"gRPC port 127.0.0.1:{listener} is already in use" in line
    assert "--grpc-port" in line
    assert "ready" not in out
    assert_nothing_left_open(data)


def test_http_port_in_use_fails(tmp_path, listener):
    data = tmp_path / "node"
    code, _, err = start_node(
        "--data-dir", str(data), "--grpc-port", "0", "--http-port", str(listener)
    )
    assert code == 1
    line = error_line(err)
    assert f"HTTP port 127.0.0.1:{listener} is already in use" in line
    assert "--http-port" in line
    assert_nothing_left_open(data)


def test_second_node_on_the_same_ports_fails_instead_of_sharing_them(node_factory, tmp_path):
    first = node_factory("first")
    grpc_port = first.grpc.rsplit(":", 1)[1]
    http_port = first.http.rsplit(":", 1)[1]
    other = tmp_path / "second"
    code, _, err = start_node(
        "--data-dir", str(other), "--grpc-port", grpc_port, "--http-port", "0"
    )
    assert code == 1
    assert f"gRPC port 127.0.0.1:{grpc_port} is already in use" in error_line(err)
    code, _, err = start_node(
        "--data-dir", str(other), "--grpc-port", "0", "--http-port", http_port
    )
    assert code == 1
    assert f"HTTP port 127.0.0.1:{http_port} is already in use" in error_line(err)
    # The first node still serves, and still owns its runtime file.
    assert first.get_json("/healthz")["status"] == "ok"
    assert (first.data_dir / "node.json").exists()


def test_a_second_start_on_a_running_nodes_data_dir_leaves_its_runtime_file(node_factory):
    first = node_factory("first")
    grpc_port = first.grpc.rsplit(":", 1)[1]
    code, _, err = start_node(
        "--data-dir", str(first.data_dir), "--grpc-port", grpc_port, "--http-port", "0"
    )
    assert code == 1
    assert "already in use" in error_line(err)
    assert (first.data_dir / "node.json").exists()
    assert first.get_json("/healthz")["status"] == "ok"


def test_data_dir_that_is_a_file_fails(tmp_path):
    data = tmp_path / "not-a-dir"
    data.write_text("a file")
    code, _, err = start_node("--data-dir", str(data), "--grpc-port", "0", "--http-port", "0")
    assert code == 1
    line = error_line(err)
    assert f"data dir {data} is not a directory" in line
    assert "--data-dir" in line


def test_data_dir_below_a_file_fails(tmp_path):
    (tmp_path / "file").write_text("a file")
    data = tmp_path / "file" / "node"
    code, _, err = start_node("--data-dir", str(data), "--grpc-port", "0", "--http-port", "0")
    assert code == 1
    assert f"data dir {data} is not a directory" in error_line(err)


#: Root writes anywhere: drop the effective CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH in the
#: node process (capset(2) through ctypes) so that directory modes apply to it as to any user.
DROP_DAC_OVERRIDE = """
import ctypes
class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]
_libc = ctypes.CDLL(None, use_errno=True)
_header, _data = _Header(0x20080522, 0), (_Data * 2)()
assert _libc.capget(ctypes.byref(_header), _data) == 0
_data[0].effective &= ~((1 << 1) | (1 << 2))
assert _libc.capset(ctypes.byref(_header), _data) == 0
"""


def test_data_dir_not_writable_fails(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o555)
    try:
        code, _, err = start_node(
            "--data-dir",
            str(data),
            "--grpc-port",
            "0",
            "--http-port",
            "0",
            prelude=DROP_DAC_OVERRIDE if os.geteuid() == 0 else "",
        )
        assert code == 1
        line = error_line(err)
        assert f"data dir {data} is not writable" in line
        assert "--data-dir" in line
    finally:
        data.chmod(0o755)


def test_bad_config_value_exits_2_naming_the_key(tmp_path):
    data = tmp_path / "node"
    data.mkdir()
    (data / "config.toml").write_text("gossip_interval_s = -1\n")
    code, _, err = start_node("--data-dir", str(data))
    assert code == 2
    line = error_line(err)
    assert "'gossip_interval_s'" in line
    assert "config.toml" in line


def test_out_of_range_port_flag_exits_2(tmp_path):
    code, _, err = start_node("--data-dir", str(tmp_path / "n"), "--grpc-port", "70000")
    assert code == 2
    assert "'grpc_port'" in error_line(err)


def test_missing_tls_file_fails_naming_the_file(tmp_path):
    data = tmp_path / "node"
    cert = tmp_path / "missing.crt"
    key = tmp_path / "missing.key"
    env_args = ("--data-dir", str(data), "--grpc-port", "0", "--http-port", "0")
    prelude = f"import os\nos.environ['CORAL_TLS_CERT_FILE'] = {str(cert)!r}\nos.environ['CORAL_TLS_KEY_FILE'] = {str(key)!r}"
    code, _, err = start_node(*env_args, prelude=prelude)
    assert code == 1
    line = error_line(err)
    assert f"TLS certificate file {cert} not found" in line
    assert "tls_cert_file" in line
    assert_nothing_left_open(data)


def test_half_configured_tls_fails(tmp_path):
    data = tmp_path / "node"
    cert = tmp_path / "node.crt"
    cert.write_text("not a pem")
    prelude = f"import os\nos.environ['CORAL_TLS_CERT_FILE'] = {str(cert)!r}"
    code, _, err = start_node("--data-dir", str(data), prelude=prelude)
    assert code == 1
    assert "tls_key_file is not set" in error_line(err)


def test_a_missing_module_fails_with_one_line_and_does_not_hang(tmp_path):
    # None in sys.modules makes ``import a2a`` raise ModuleNotFoundError, as on a broken install.
    data = tmp_path / "node"
    prelude = "import sys\nsys.modules['a2a'] = None"
    code, out, err = start_node(
        "--data-dir", str(data), "--grpc-port", "0", "--http-port", "0", prelude=prelude
    )
    assert code == 1
    line = error_line(err)
    assert "'a2a'" in line and "pip install -e ." in line
    assert "ready" not in out
    assert_nothing_left_open(data)


def test_after_a_failed_start_the_same_data_dir_starts(tmp_path, listener):
    data = tmp_path / "node"
    code, _, _ = start_node(
        "--data-dir", str(data), "--grpc-port", str(listener), "--http-port", "0"
    )
    assert code == 1
    node = NodeProcess(data).start()
    try:
        assert node.get_json("/healthz")["status"] == "ok"
        assert node.terminate() == 0
    finally:
        node.kill()


def test_a_late_bind_failure_rolls_back_database_and_subsystems(tmp_path):
    # 192.0.2.1 (TEST-NET-1) is no local address: the preflight port probe passes, the
    # gRPC bind fails after the database and every subsystem were opened. Nothing is sent.
    data = tmp_path / "node"
    code, out, err = start_node(
        "--data-dir", str(data), "--host", "192.0.2.1", "--grpc-port", "0", "--http-port", "0"
    )
    assert code == 1
    line = error_line(err)
    assert "cannot bind gRPC to 192.0.2.1:0" in line and "--host" in line
    assert "ready" not in out
    assert (data / "coral.db").exists(), "the failure came after the database was opened"
    assert_nothing_left_open(data)


async def test_grpc_server_does_not_share_a_port_through_so_reuseport(tmp_path):
    # A listener with SO_REUSEPORT is what grpc's default options would create. With the
    # option on, a second grpc server could bind the same port and take half its calls.
    from coral.api.context import NodeContext
    from coral.api.grpc.server import build_grpc_server
    from coral.config import Config
    from coral.metrics import NodeMetrics
    from coral.protocol.identity import Identity
    from coral.protocol.verify import MessageVerifier

    cfg = Config(data_dir=tmp_path)
    ctx = NodeContext(
        config=cfg,
        identity=Identity.generate(),
        metrics=NodeMetrics(),
        verifier=MessageVerifier(cfg.limits.to_limits()),
        admin_token="t",
        started_at=0,
    )
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        server, _, _ = build_grpc_server(ctx)
        try:
            with pytest.raises(RuntimeError):
                if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
                    raise RuntimeError("bind refused")
        finally:
            await server.stop(0)
