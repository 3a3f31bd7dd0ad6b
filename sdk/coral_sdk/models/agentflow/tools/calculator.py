"""Python calculator tool: the executor writes Python, the sandbox runs it."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from coral_sdk.models.agentflow.tools.base import ToolDemo, ToolMetadata
from coral_sdk.models.agentflow.tools.sandbox import SandboxLimits, run_sandboxed


class PythonCalculatorTool:
    """Evaluate short Python (arithmetic, math, statistics) in a sandboxed subprocess.

    The value of a final bare expression is returned, as in a REPL; ``print``
    output is returned too. Files, network, processes and imports outside a
    small math allowlist are refused.
    """

    def __init__(self, limits: SandboxLimits | None = None, *, max_parallel: int = 0) -> None:
        """``max_parallel`` caps concurrent sandbox processes (default: one per CPU)."""
        self.limits = limits or SandboxLimits()
        self._slots = asyncio.Semaphore(max_parallel or os.cpu_count() or 2)
        self.metadata = ToolMetadata(
            name="python_calculator",
            description=(
                "Runs a short Python snippet for exact arithmetic and math and returns the "
                "value of its last expression and anything it prints. Modules math, cmath, "
                "fractions, decimal, statistics, itertools, functools are preloaded."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "code": {
                        "type": "string",
                        "description": (
                            "code (str) - Python source; the value of the last line is returned"
                        ),
                    }
                },
                "required": ["code"],
            },
            output_type="dict - {code, result, stdout, error}",
            demo_commands=(
                ToolDemo(
                    command='execution = tool.execute(code="(37 * 48) + 12")',
                    description="Multiply and add exactly.",
                ),
                ToolDemo(
                    command='execution = tool.execute(code="math.comb(10, 3) / 2**10")',
                    description="Probability of 3 heads in 10 fair coin flips.",
                ),
            ),
            limitations=(
                "No file, network or process access; about 2 s of CPU and 256 MiB of memory."
            ),
        )

    async def execute(self, **arguments: Any) -> dict[str, Any]:
        """Run ``code`` in the sandbox; failures come back in ``error``, never as exceptions."""
        code = str(arguments["code"])
        async with self._slots:  # many rollouts at once must not fork-bomb the host
            outcome = await run_sandboxed(code, self.limits)
        result = outcome.value if outcome.value is not None else outcome.stdout.strip() or None
        return {
            "code": code,
            "result": result,
            "stdout": outcome.stdout,
            "error": outcome.error,
        }
