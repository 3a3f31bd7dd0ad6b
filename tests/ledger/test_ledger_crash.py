"""Crash durability: SIGKILL a process mid-burst; every acknowledged transfer survives."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from coral.ledger import Transfer, find_violations
from coral.store.ledger_sqlite import SqliteLedgerStore

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]


def read_acks_then_kill(db_path: Path, wanted_acks: int, timeout_s: float = 60.0) -> set[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(HERE)])}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "ledger_crash_worker.py"), str(db_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO_ROOT,
    )
    assert proc.stdout is not None
    acked: set[str] = set()
    buffer = b""
    deadline = time.monotonic() + timeout_s
    try:
        while len(acked) < wanted_acks and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if not ready:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, f"worker exited early: {proc.stderr.read() if proc.stderr else b''!r}"
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            acked.update(line[4:].decode() for line in lines if line.startswith(b"ACK "))
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-burst: commits are in flight right now
        rest, _ = proc.communicate()
    # Lines already written before the kill were acknowledged too.
    for line in (buffer + rest).split(b"\n"):
        if line.startswith(b"ACK "):
            acked.add(line[4:].decode())
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= wanted_acks, "worker did not acknowledge enough transfers in time"
    return acked


async def test_acknowledged_transfers_survive_sigkill(tmp_path: Path) -> None:
    db_path = tmp_path / "ledger.db"
    acked = read_acks_then_kill(db_path, wanted_acks=1500)
    store = await SqliteLedgerStore.open(db_path)
    try:
        state = await store.load_snapshot()
        missing = acked - set(state.transfers)
        assert not missing, (
            f"{len(missing)} acknowledged transfers lost, e.g. {sorted(missing)[:5]}"
        )
        assert find_violations(state) == []
        # Every linked reservation either committed with its post or not at all.
        for transfer in state.transfers.values():
            if transfer.is_pending:
                assert transfer.id in state.resolutions
        # The reopened ledger keeps working.
        agents = sorted(a for a in state.accounts if a.startswith("agent"))
        [result] = await store.create_transfers([Transfer("after", agents[0], agents[1], 1)], 1)
        assert result.ok
    finally:
        await store.close()
