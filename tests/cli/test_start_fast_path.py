"""``coral-node start`` without typer reads its flags exactly as typer does, or leaves them to typer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import coral.cli.main as cli_main
from coral.cli.start import StartArgs, parse_start_args

READ_BY_THE_FAST_PATH = [
    [],
    ["--data-dir", "./node-a", "--grpc-port", "7420", "--http-port", "7421"],
    ["-d", "n", "-c", "conf.toml", "--host", "0.0.0.0", "--log-level", "debug"],
    ["--data-dir=n", "--grpc-port=0", "--http-port=0", "--log-json"],
    ["--log-json", "--no-log-json", "--grpc-port", "1", "--grpc-port", "2"],
    ["-b", "a:1", "--bootstrap", "b:2", "--bootstrap=c:3"],
    ["--allowed-host", "coral.example", "--allowed-host=other.example"],
    ["--public-address", "lb.example:7420", "--public-address=r2.example:7420"],
    ["--database-url", "sqlite", "--database-url=postgresql://coral@db/coral"],
    ["--network.bindPort=5555", "-d", "n", '--auth.keys=["k"]'],
]

LEFT_TO_TYPER = [
    ["--help"],
    ["-d", "n", "--help"],
    ["--grpc-port", "many"],
    ["--grpc-port"],
    ["--data-dir", "-c"],
    ["--data-dir="],
    ["-d=n"],
    ["--log-json=yes"],
    ["--no-such-flag"],
    ["positional"],
    ["--", "--data-dir", "n"],
    ["--version"],
]


def typer_reading(args: list[str], monkeypatch: pytest.MonkeyPatch) -> StartArgs:
    """What the typer ``start`` command hands to ``start_node`` for ``args``."""
    seen: list[StartArgs] = []
    monkeypatch.setattr(cli_main, "start_node", seen.append)
    result = CliRunner().invoke(cli_main.app, ["start", *args])
    assert result.exit_code == 0, result.output
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize("args", READ_BY_THE_FAST_PATH, ids=" ".join)
def test_the_fast_path_reads_what_typer_reads(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert parse_start_args(args) == typer_reading(args, monkeypatch)


@pytest.mark.parametrize("args", LEFT_TO_TYPER, ids=" ".join)
def test_anything_else_is_left_to_typer(args: list[str]) -> None:
    assert parse_start_args(args) is None


def test_start_does_not_import_typer_or_rich_before_listening(tmp_path: Path) -> None:
    # The start fails at its first check (the data dir is a file), once the CLI,
    # config, logging and node modules are imported: neither typer nor rich among them.
    data_dir = tmp_path / "a-file"
    data_dir.write_text("")
    code = (
        "import sys\nfrom coral.cli import main\n"
        "sys.argv = ['coral-node', 'start', '--data-dir', sys.argv[1]]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n"
        "    loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich'))\n"
        "    print(exc.code, loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.strip() == "1 []", (result.stdout, result.stderr)
    assert "error: cannot start" in result.stderr
