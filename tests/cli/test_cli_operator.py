"""coral-node for operators and scripts: help with examples, --json, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

COMMANDS = [
    ("init",),
    ("start",),
    ("status",),
    ("agents",),
    ("doctor",),
    ("keys", "show"),
    ("mcp", "create"),
]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coral", *args], capture_output=True, text=True, timeout=60
    )


def test_every_command_has_help_with_an_example():
    from typer.testing import CliRunner

    from coral.cli import app

    runner = CliRunner()
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0 and "Exit codes" in top.output and "doctor" in top.output
    for command in COMMANDS:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, command
        assert "Example" in result.output, f"{' '.join(command)} --help has no example"


def test_usage_errors_exit_2():
    assert run("status", "--no-such-flag").returncode == 2
    assert run("no-such-command").returncode == 2


def test_init_json_for_scripts(tmp_path):
    result = run("init", "--data-dir", str(tmp_path / "n"), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["node_id"].startswith("did:key:") and info["new_identity"] is True
    assert info["config_written"] is True
    again = json.loads(run("init", "--data-dir", str(tmp_path / "n"), "--json").stdout)
    assert again["node_id"] == info["node_id"] and again["config_written"] is False


def test_status_json_and_table_against_a_running_node(node):
    result = run("status", "--data-dir", str(node.data_dir), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["node_id"] == node.node_id and info["health"] == "ok"
    human = run("status", "--url", node.http)
    assert human.returncode == 0 and node.node_id in human.stdout
    assert f"{node.http}/" in human.stdout  # where the dashboard is
    assert run("status", "--url", "http://127.0.0.1:1").returncode == 1
