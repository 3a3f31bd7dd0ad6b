"""Under CI=true a missing test requirement fails the run; elsewhere it skips loudly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

NEEDS_SOMETHING = """
from tests.support.requirements import missing_requirement

def test_needs_a_binary_that_is_absent():
    missing_requirement("FROBNICATOR NOT FOUND: apt-get install frobnicator")
"""


def run_pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_needs.py").write_text(NEEDS_SOMETHING)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "test_needs.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_ci_true_turns_a_missing_requirement_into_a_failure(tmp_path):
    result = run_pytest(tmp_path, "true")
    assert result.returncode == 1, result.stdout
    assert "1 failed" in result.stdout
    assert "FROBNICATOR NOT FOUND" in result.stdout and "CI=true" in result.stdout


def test_outside_ci_a_missing_requirement_skips_with_its_reason(tmp_path):
    result = run_pytest(tmp_path, None)
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout and "FROBNICATOR NOT FOUND" in result.stdout
