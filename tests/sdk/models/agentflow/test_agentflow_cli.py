"""``coral-agent run agentflow`` and ``coral-agent train agentflow`` as real processes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from conftest import ScriptedLLM

REPO_ROOT = Path(__file__).resolve().parents[4]


async def run_cli(*arguments: str, timeout_s: float = 120.0) -> tuple[int, str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT / "sdk"), str(REPO_ROOT), environment.get("PYTHONPATH", "")]
    )
    environment["COLUMNS"] = "200"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "coral_sdk.cli",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=environment,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    return process.returncode or 0, output.decode()


async def test_run_prints_each_turn_and_the_final_answer(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.script = {
        "analysis": ["Arithmetic; use python_calculator."],
        "planner": ["Context: none\nSub-Goal: add [2] and 3\nTool Name: python_calculator"],
        "executor": ['Command:\n```python\nexecution = tool.execute(code="2 + 3")\n```'],
        "verifier": ["Conclusion: STOP"],
        "final": ["2 + 3 = 5"],
        "direct": ["5"],
    }
    code, output = await run_cli(
        "run",
        "agentflow",
        "What is 2 + 3?",
        "--base-url",
        scripted_llm.base_url,
        "--model",
        "scripted",
        "--max-steps",
        "3",
    )
    assert code == 0, output
    assert "query analysis" in output
    assert "step 1 -> python_calculator: add [2] and 3" in output  # brackets survive rich
    assert '"result": "5"' in output
    assert "verifier STOP" in output
    assert "answer" in output and "2 + 3 = 5" in output
    assert "stop: verifier_stop" in output


async def test_run_reports_an_unreachable_service_without_a_traceback() -> None:
    code, output = await run_cli(
        "run",
        "agentflow",
        "What is 2 + 3?",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--max-steps",
        "1",
        "--retries",
        "1",
    )
    assert code == 1
    assert "Traceback" not in output
    assert "cannot reach" in output


async def test_train_records_a_rising_reward_curve(tmp_path: Path) -> None:
    code, output = await run_cli(
        "train",
        "agentflow",
        "--iterations",
        "6",
        "--queries",
        "4",
        "--group-size",
        "8",
        "--lr",
        "0.02",
        "--tasks",
        "18",
        "--out",
        str(tmp_path),
    )
    assert code == 0, output
    assert "Flow-GRPO planner training" in output
    curve = json.loads((tmp_path / "reward_curve.json").read_text())
    assert len(curve) == 6
    assert curve[-1]["mean_reward"] > curve[0]["mean_reward"]
    assert (tmp_path / "policy.pt").stat().st_size > 0
