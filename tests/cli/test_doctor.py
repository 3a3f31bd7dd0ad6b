"""coral-node doctor: each check finds the real problem and names the fix."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from coral.agents.keyfile import load_or_create_identity
from coral.cli.doctor import (
    check_data_dir,
    check_key_files,
    check_ports_or_health,
    check_postgres,
    check_python,
    check_sqlite,
    check_subsystem_imports,
    check_tls,
    run_checks,
)
from coral.config import Config
from coral.node import Node
from coral.node.keys import load_or_create_token


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coral", "doctor", *args], capture_output=True, text=True, timeout=60
    )


def by_name(checks):
    return {c.name: c for c in checks}


def test_python_version_gate():
    assert check_python((3, 11)).status == "ok"
    old = check_python((3, 10))
    assert old.status == "fail" and "3.11" in old.fix


def test_data_dir_missing_is_a_warning_and_a_file_is_a_failure(tmp_path):
    assert check_data_dir(tmp_path).status == "ok"
    assert check_data_dir(tmp_path / "later").status == "warn"
    (tmp_path / "file").write_text("x")
    assert check_data_dir(tmp_path / "file").status == "fail"


def test_readable_key_file_fails_with_chmod_fix(tmp_path):
    keys = tmp_path / "keys"
    load_or_create_identity(keys / "node.key")
    load_or_create_token(keys / "admin.token")
    assert [c.status for c in check_key_files(keys)] == ["ok", "ok"]
    (keys / "admin.token").chmod(0o644)
    node_key, token = check_key_files(keys)
    assert node_key.status == "ok"
    assert token.status == "fail" and token.fix == f"chmod 600 {keys / 'admin.token'}"


def test_cli_exits_1_and_prints_the_fix(tmp_path):
    keys = tmp_path / "keys"
    load_or_create_identity(keys / "node.key")
    (keys / "node.key").chmod(0o640)
    result = doctor("--data-dir", str(tmp_path), "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert [c["name"] for c in failed] == ["key file node.key"]
    human = doctor("--data-dir", str(tmp_path))
    assert human.returncode == 1 and "chmod 600" in human.stdout


def test_invalid_config_is_a_failed_check(tmp_path):
    (tmp_path / "config.toml").write_text("http_port = -5\n")
    checks = by_name(run_checks(tmp_path / "config.toml", {}))
    assert checks["config"].status == "fail" and "http_port" in checks["config"].detail


def test_port_in_use_is_reported(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = Config(data_dir=tmp_path, http_port=port, grpc_port=0)
        checks = by_name(check_ports_or_health(cfg))
    assert checks["HTTP port"].status == "fail" and str(port) in checks["HTTP port"].detail
    assert checks["gRPC port"].status == "ok"


async def test_running_node_is_checked_through_its_health_endpoint(tmp_path):
    node = Node(Config(data_dir=tmp_path / "n", grpc_port=0, http_port=0))
    await node.start()
    try:
        checks = by_name(await asyncio.to_thread(run_checks, None, {"data_dir": tmp_path / "n"}))
    finally:
        await node.stop()
    assert checks["node"].status == "ok" and "healthy" in checks["node"].detail
    assert checks["sqlite"].status == "ok" and "journal_mode=wal" in checks["sqlite"].detail
    assert all(c.status != "fail" for c in checks.values())


def test_corrupt_database_fails(tmp_path):
    db = tmp_path / "coral.db"
    db.write_bytes(b"this is not a database at all" * 200)
    result = check_sqlite(db)
    assert result.status == "fail" and "backup" in result.fix
    fresh = check_sqlite(tmp_path / "absent.db")
    assert fresh.status == "ok" and "scratch" in fresh.detail


def test_unreachable_postgres_fails_and_sqlite_needs_nothing():
    assert check_postgres("sqlite").status == "ok"
    result = check_postgres("postgresql://coral@127.0.0.1:1/coral", timeout_s=3)
    assert result.status == "fail" and "cannot connect" in result.detail


def test_key_file_mode_from_init_passes(tmp_path: Path):
    subprocess.run(
        [sys.executable, "-m", "coral", "init", "--data-dir", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    result = doctor("--data-dir", str(tmp_path), "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout
    assert by_name_dicts(report["checks"])["key file node.key"]["status"] == "ok"


def by_name_dicts(checks):
    return {c["name"]: c for c in checks}


def doctor_without(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run doctor with ``module`` made unimportable, as on a broken or partial install.

    A wide terminal keeps each table cell on one line.
    """
    code = (
        f"import sys\nsys.modules[{module!r}] = None\nfrom coral.cli import main\n"
        "sys.argv = ['coral-node', 'doctor', *sys.argv[1:]]\nmain()"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "300"},
    )


def test_every_subsystem_imports_on_this_install():
    checks = by_name(check_subsystem_imports(Config()))
    for name in ("node core", "coordination", "ledger", "interop", "dashboard"):
        assert checks[f"subsystem {name}"].status == "ok", checks[f"subsystem {name}"]


def test_a_subsystem_that_cannot_import_fails_doctor_and_starts_nothing(tmp_path):
    data = tmp_path / "fresh"
    result = doctor_without("mcp", "--data-dir", str(data), "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    failed = {c["name"]: c for c in json.loads(result.stdout)["checks"] if c["status"] == "fail"}
    assert list(failed) == ["subsystem interop"]
    assert "mcp" in failed["subsystem interop"]["detail"]
    assert failed["subsystem interop"]["fix"] == "reinstall: pip install -e ."
    assert not data.exists(), "doctor must not create the data dir"


def test_fix_hints_print_literally_in_the_table(tmp_path):
    (tmp_path / "config.toml").write_text('database_url = "postgresql://coral@127.0.0.1:1/coral"\n')
    result = doctor_without("asyncpg", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    # rich markup would print "pip install 'coral-node'" here, swallowing "[postgres]".
    assert "pip install 'coral-node[postgres]'" in result.stdout


def test_tls_file_that_is_not_pem_fails(tmp_path):
    cert = tmp_path / "node.crt"
    cert.write_text("not a certificate")
    cfg = Config(data_dir=tmp_path, tls_cert_file=cert, tls_key_file=cert)
    result = check_tls(cfg)
    assert result is not None and result.status == "fail"
    assert "cannot load TLS certificate" in result.detail and "tls_cert_file" in result.fix
    assert check_tls(Config(data_dir=tmp_path)) is None
