"""The four AgentFlow modules: planner, executor, verifier and generator.

Each role is a small Protocol so the solver can run with LLM-backed modules
(below) or with others, such as the trainable planner policy in
:mod:`flow_grpo`. LLM modules take any :class:`LLMEngine`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from coral.protocol.errors import CoralError
from coral_sdk.models.agentflow import prompts
from coral_sdk.models.agentflow.engines.base import LLMEngine
from coral_sdk.models.agentflow.memory import Memory
from coral_sdk.models.agentflow.parsing import (
    PlannedStep,
    Verdict,
    parse_planner_step,
    parse_tool_command,
    parse_verdict,
)
from coral_sdk.models.agentflow.tools.base import Toolbox


@dataclass(frozen=True)
class ExecutedStep:
    """The command the executor ran for a planned step and the tool's result (or error)."""

    command: str
    result: Any
    error: str | None = None


class PlannerModule(Protocol):
    """Analyses the query, then picks each turn's sub-goal and tool."""

    async def analyze_query(self, question: str) -> str:
        """Describe the query's objective, required skills and relevant tools."""
        ...

    async def next_step(
        self, question: str, query_analysis: str, memory: Memory, step: int, max_steps: int
    ) -> PlannedStep:
        """Choose the next sub-goal and tool from the query, analysis and memory."""
        ...


class ExecutorModule(Protocol):
    """Turns a planned step into a tool command and runs it."""

    async def execute(self, question: str, planned: PlannedStep) -> ExecutedStep:
        """Run the planned tool; tool and command failures come back in ``error``."""
        ...


class VerifierModule(Protocol):
    """Judges whether the memory suffices to answer."""

    async def verify(
        self, question: str, query_analysis: str, memory: Memory, step: int
    ) -> Verdict:
        """Return STOP or CONTINUE for the memory after ``step`` turns."""
        ...


class GeneratorModule(Protocol):
    """Writes the answers once the loop ends."""

    async def final_output(self, question: str, memory: Memory) -> str:
        """A complete solution that reasons from the memory."""
        ...

    async def direct_output(self, question: str, memory: Memory) -> str:
        """The short answer, used for scoring."""
        ...


class LLMPlanner:
    """Planner backed by an engine; ``fixed_engine`` (default: the same) does query analysis."""

    def __init__(
        self, engine: LLMEngine, toolbox: Toolbox, *, fixed_engine: LLMEngine | None = None
    ) -> None:
        self.engine = engine
        self.fixed_engine = fixed_engine or engine
        self.toolbox = toolbox

    async def analyze_query(self, question: str) -> str:
        """Ask the fixed engine for a query analysis."""
        prompt = prompts.query_analysis_prompt(
            question, self.toolbox.names, self.toolbox.metadata()
        )
        completion = await self.fixed_engine.generate(prompt, prompts.SYSTEM_PROMPT)
        return completion.text.strip()

    async def next_step(
        self, question: str, query_analysis: str, memory: Memory, step: int, max_steps: int
    ) -> PlannedStep:
        """Ask the (trainable) planner engine for the next step and parse it tolerantly."""
        prompt = prompts.next_step_prompt(
            question,
            query_analysis,
            memory.to_prompt(),
            step,
            max_steps,
            self.toolbox.names,
            self.toolbox.metadata(),
        )
        completion = await self.engine.generate(prompt, prompts.SYSTEM_PROMPT)
        return parse_planner_step(completion.text, self.toolbox.names)


class LLMExecutor:
    """Executor backed by an engine: writes ``tool.execute(...)``, parses it, runs the tool."""

    def __init__(self, engine: LLMEngine, toolbox: Toolbox, *, tool_timeout_s: float = 120.0):
        self.engine = engine
        self.toolbox = toolbox
        self.tool_timeout_s = tool_timeout_s

    async def execute(self, question: str, planned: PlannedStep) -> ExecutedStep:
        """Generate and run the command; parse and tool failures are returned, not raised."""
        if planned.tool_name not in self.toolbox.tools:
            problem = f"no tool named {planned.tool_name!r} in the toolbox"
            return ExecutedStep("", {"error": problem}, problem)
        tool = self.toolbox.tools[planned.tool_name]
        prompt = prompts.tool_command_prompt(
            question,
            planned.context,
            planned.sub_goal,
            planned.tool_name,
            tool.metadata.to_prompt_dict(),
        )
        completion = await self.engine.generate(prompt, prompts.SYSTEM_PROMPT)
        try:
            parsed = parse_tool_command(completion.text)
        except CoralError as exc:
            problem = f"could not read a tool command: {exc.detail}"
            return ExecutedStep(completion.text.strip()[:500], {"error": problem}, problem)
        return await run_tool(
            self.toolbox, tool.metadata.name, parsed.command, parsed.arguments, self.tool_timeout_s
        )


async def run_tool(
    toolbox: Toolbox, tool_name: str, command: str, arguments: dict[str, Any], timeout_s: float
) -> ExecutedStep:
    """Run one tool call; turn timeouts and tool exceptions into an error result."""
    try:
        result = await toolbox.execute(tool_name, arguments, timeout_s)
    except TimeoutError:
        problem = f"{tool_name} did not finish within {timeout_s} s"
        return ExecutedStep(command, {"error": problem}, problem)
    except CoralError as exc:
        return ExecutedStep(command, {"error": exc.detail}, exc.detail)
    except Exception as exc:  # a tool bug must not end the whole solve
        problem = f"{tool_name} failed: {type(exc).__name__}: {exc}"
        return ExecutedStep(command, {"error": problem}, problem)
    error = result.get("error") if isinstance(result, dict) else None
    return ExecutedStep(command, result, str(error) if error else None)


class LLMVerifier:
    """Verifier backed by an engine; ends its reply with ``Conclusion: STOP|CONTINUE``."""

    def __init__(self, engine: LLMEngine, toolbox: Toolbox) -> None:
        self.engine = engine
        self.toolbox = toolbox

    async def verify(
        self, question: str, query_analysis: str, memory: Memory, step: int
    ) -> Verdict:
        """Ask the engine for a verdict; unreadable verdicts mean CONTINUE."""
        prompt = prompts.verifier_prompt(
            question,
            query_analysis,
            memory.to_prompt(),
            self.toolbox.names,
            self.toolbox.metadata(),
        )
        completion = await self.engine.generate(prompt, prompts.SYSTEM_PROMPT)
        return parse_verdict(completion.text)


class LLMGenerator:
    """Generator backed by an engine: final (detailed) and direct (short) outputs."""

    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine

    async def final_output(self, question: str, memory: Memory) -> str:
        """Detailed solution from the memory."""
        prompt = prompts.final_output_prompt(question, memory.to_prompt())
        return (await self.engine.generate(prompt, prompts.SYSTEM_PROMPT)).text.strip()

    async def direct_output(self, question: str, memory: Memory) -> str:
        """Short answer from the memory."""
        prompt = prompts.direct_output_prompt(question, memory.to_prompt())
        return (await self.engine.generate(prompt, prompts.SYSTEM_PROMPT)).text.strip()


def result_text(result: Any) -> str:
    """A result as display text (strings unchanged, others as compact JSON)."""
    if isinstance(result, str):
        return result
    return json.dumps(result, ensure_ascii=False, default=str)
