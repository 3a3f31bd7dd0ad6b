"""The calculator sandbox: correct answers, refused file/network/process access, killed runaways."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from coral_sdk.models.agentflow.tools import PythonCalculatorTool, SandboxLimits, run_sandboxed

FAST = SandboxLimits(wall_timeout_s=5.0, cpu_seconds=1, memory_bytes=256 * 1024 * 1024)


async def test_final_expression_value_and_printed_output_come_back() -> None:
    outcome = await run_sandboxed("x = math.factorial(5)\nprint('x is', x)\nx * 2", FAST)
    assert outcome.ok and outcome.value == "240" and outcome.stdout == "x is 120\n"


async def test_calculator_tool_reports_results_and_errors_as_data() -> None:
    tool = PythonCalculatorTool(FAST)
    assert (await tool.execute(code="37 * 48 + 12"))["result"] == "1788"
    failed = await tool.execute(code="1 / 0")
    assert failed["result"] is None and failed["error"].startswith("ZeroDivisionError")


@pytest.mark.parametrize(
    "code",
    [
        "open('/etc/hostname').read()",  # no open builtin
        "import os",  # not in the import allowlist
        "().__class__.__base__.__subclasses__()",  # dunder walk refused before running
        "random._os.listdir('/')",  # private attribute refused before running
        # These reach real os/io functions through sys; only the audit hook stops them.
        "statistics.sys.modules['io'].open('/etc/hostname').read()",
        "statistics.sys.modules['os'].listdir('/')",
        "statistics.sys.modules['os'].system('echo escaped')",
        "statistics.sys.modules['posix'].system('echo escaped')",
        "statistics.sys.modules['_io'].FileIO('/etc/hostname').read()",
        "statistics.sys.modules['resource'].setrlimit(9, (-1, -1))",  # lift RLIMIT_AS
    ],
)
async def test_file_and_process_access_is_refused(code: str) -> None:
    outcome = await run_sandboxed(code, FAST)
    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error.split(":")[0] in {"NameError", "ImportError", "PermissionError"}
    assert "escaped" not in outcome.stdout


async def test_writing_files_is_refused_even_through_the_os_module(tmp_path: Path) -> None:
    target = tmp_path / "written.txt"
    code = f"statistics.sys.modules['os'].open({str(target)!r}, 65)"  # O_WRONLY | O_CREAT
    outcome = await run_sandboxed(code, FAST)
    assert not outcome.ok and "refused" in (outcome.error or "")
    assert not target.exists()


@pytest.mark.parametrize(
    "code",
    [
        "import socket",
        # Fetch the real __import__ through sys; the audit hook still refuses the import.
        "b = statistics.sys.modules['builtins']\n"
        "load = b.getattr(b, '__imp' + 'ort__')\n"
        "load('socket').create_connection(('127.0.0.1', 9))",
    ],
)
async def test_network_access_is_refused(code: str) -> None:
    outcome = await run_sandboxed(code, FAST)
    assert not outcome.ok
    assert outcome.error is not None and (
        "refused" in outcome.error or "not available" in outcome.error
    )


async def test_infinite_loop_is_killed_by_the_cpu_limit() -> None:
    # The limit that ended it is reported: the CPU limit, not the wall clock
    # behind it. The outer wait_for only guards against a hang.
    outcome = await asyncio.wait_for(run_sandboxed("while True:\n    pass", FAST), 120)
    assert not outcome.ok and outcome.limit == "cpu_time"


async def test_code_that_outlives_the_wall_clock_is_killed() -> None:
    limits = SandboxLimits(wall_timeout_s=0.5, cpu_seconds=30)
    # The wall-clock limit is named as the cause (the CPU limit would say cpu_time).
    outcome = await asyncio.wait_for(run_sandboxed("while True:\n    pass", limits), 120)
    assert not outcome.ok and outcome.limit == "wall_time"


@pytest.mark.parametrize(
    "code",
    [
        "x = 'a' * (2 * 1024 ** 3)",
        "x = [0] * (10 ** 9)",
        "chunks = []\nwhile True:\n    chunks.append('b' * 10 ** 6)",
    ],
)
async def test_memory_bomb_is_stopped_by_the_address_space_limit(code: str) -> None:
    outcome = await run_sandboxed(code, FAST)
    assert not outcome.ok and outcome.limit == "memory"
