"""coral-node commands that need no running node."""

import json
import subprocess
import sys

from coral import __version__


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coral", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_version():
    result = run("--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_help_lists_commands_with_examples():
    result = run("--help")
    assert result.returncode == 0
    for command in ("init", "start", "status", "keys"):
        assert command in result.stdout
    assert "Example" in run("start", "--help").stdout


def test_init_writes_config_and_keys_once(tmp_path):
    data = tmp_path / "node"
    first = run("init", "--data-dir", str(data))
    assert first.returncode == 0, first.stderr
    config = (data / "config.toml").read_text()
    assert "grpc_port = 7420" in config and config.lstrip().startswith("#")
    assert (data / "keys" / "admin.token").stat().st_mode & 0o077 == 0
    shown = run("keys", "show", "--data-dir", str(data), "--json")
    node_id = json.loads(shown.stdout)["node_id"]
    assert node_id in first.stdout
    again = run("init", "--data-dir", str(data))
    assert "keeping it" in again.stderr
    assert (
        json.loads(run("keys", "show", "--data-dir", str(data), "--json").stdout)["node_id"]
        == node_id
    )


def test_keys_show_without_keys_explains(tmp_path):
    result = run("keys", "show", "--data-dir", str(tmp_path / "empty"))
    assert result.returncode == 1 and "coral-node init" in result.stderr


def test_status_without_a_node_fails_clearly(tmp_path):
    result = run("status", "--data-dir", str(tmp_path))
    assert result.returncode == 1 and "no running node" in result.stderr


def test_bad_config_value_names_the_key(tmp_path):
    (tmp_path / "config.toml").write_text('grpc_port = "many"\n')
    result = run("start", "--config", str(tmp_path / "config.toml"))
    assert result.returncode == 2 and "grpc_port" in result.stderr
