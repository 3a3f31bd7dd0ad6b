"""The AgentFlow turn loop: analyse, then plan, execute, record and verify until STOP.

The loop is bounded by ``max_steps`` turns and ``max_time_s`` seconds (each
turn runs under the remaining time budget). Whatever happens inside a turn is
recorded, and the generator still writes the answers from the memory gathered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from coral.protocol.errors import CoralError
from coral_sdk.models.agentflow.memory import ActionRecord, Memory
from coral_sdk.models.agentflow.modules import (
    ExecutedStep,
    ExecutorModule,
    GeneratorModule,
    PlannerModule,
    VerifierModule,
)
from coral_sdk.models.agentflow.parsing import PlannedStep, Verdict

StopReason = Literal["verifier_stop", "max_steps", "max_time", "error"]
TOOL_NOT_FOUND_COMMAND = "No command was generated because the tool was not found."
TOOL_NOT_FOUND_RESULT = "No result was generated because the tool was not found."


@dataclass(frozen=True)
class FlowConfig:
    """Bounds and outputs for one solve (AgentFlow defaults: 10 steps, 300 s)."""

    max_steps: int = 10
    max_time_s: float = 300.0
    max_result_chars: int = 2000
    output_types: frozenset[str] = frozenset({"final", "direct"})


@dataclass(frozen=True)
class QueryAnalyzed:
    """Event: the planner's query analysis is ready."""

    analysis: str


@dataclass(frozen=True)
class StepPlanned:
    """Event: the planner chose a sub-goal and tool for ``step``."""

    step: int
    planned: PlannedStep


@dataclass(frozen=True)
class TurnCompleted:
    """Event: a turn's action is in memory and the verifier has spoken."""

    step: int
    planned: PlannedStep
    action: ActionRecord
    verdict: Verdict | None
    elapsed_s: float


@dataclass
class SolveResult:
    """Everything one solve produced, in the shape of AgentFlow's output JSON."""

    query: str
    query_analysis: str
    memory: list[ActionRecord]
    step_count: int
    execution_time_s: float
    stop_reason: StopReason
    final_output: str | None = None
    direct_output: str | None = None
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "query": self.query,
            "query_analysis": self.query_analysis,
            "memory": [record.to_dict() for record in self.memory],
            "step_count": self.step_count,
            "execution_time": round(self.execution_time_s, 3),
            "stop_reason": self.stop_reason,
            "final_output": self.final_output,
            "direct_output": self.direct_output,
            "problems": self.problems,
        }


FlowEvent = QueryAnalyzed | StepPlanned | TurnCompleted | SolveResult
EventSink = Callable[[FlowEvent], None]


class Solver:
    """Runs the AgentFlow loop over the four modules; one instance can solve many queries."""

    def __init__(
        self,
        planner: PlannerModule,
        executor: ExecutorModule,
        verifier: VerifierModule,
        generator: GeneratorModule,
        config: FlowConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.planner = planner
        self.executor = executor
        self.verifier = verifier
        self.generator = generator
        self.config = config or FlowConfig()
        self._clock = clock

    async def solve(self, question: str, on_event: EventSink | None = None) -> SolveResult:
        """Answer ``question``; report progress to ``on_event`` as it happens.

        Module failures (engine down, bugs) end the loop with stop_reason "error"
        and are listed in ``problems``; the answers are then still attempted.
        """
        emit = on_event or (lambda event: None)
        started = self._clock()
        memory = Memory(max_result_chars=self.config.max_result_chars)
        memory.set_query(question)
        result = SolveResult(question, "", [], 0, 0.0, "max_steps")
        try:
            async with asyncio.timeout(self.config.max_time_s):
                result.query_analysis = await self.planner.analyze_query(question)
        except TimeoutError:
            result.stop_reason = "max_time"
        except Exception as exc:
            result.problems.append(f"query analysis failed: {_describe(exc)}")
            result.stop_reason = "error"
        else:
            emit(QueryAnalyzed(result.query_analysis))
            await self._run_turns(question, memory, result, started, emit)
        result.memory = list(memory.actions)
        await self._generate(question, memory, result)
        result.execution_time_s = self._clock() - started
        emit(result)
        return result

    async def _run_turns(
        self, question: str, memory: Memory, result: SolveResult, started: float, emit: EventSink
    ) -> None:
        """Plan-execute-verify until STOP, the turn limit, the time limit, or a failure."""
        while result.step_count < self.config.max_steps:
            remaining = self.config.max_time_s - (self._clock() - started)
            if remaining <= 0:
                result.stop_reason = "max_time"
                return
            result.step_count += 1
            step = result.step_count
            budget = asyncio.timeout(remaining)
            try:
                async with budget:
                    verdict = await self._turn(
                        question, result.query_analysis, memory, step, result.problems, emit
                    )
            except TimeoutError as exc:
                if budget.expired():
                    result.problems.append(
                        f"step {step} cut off at the {self.config.max_time_s} s limit"
                    )
                    result.stop_reason = "max_time"
                else:  # a module's own timeout, not our time limit
                    result.problems.append(f"step {step} failed: {_describe(exc)}")
                    result.stop_reason = "error"
                return
            except Exception as exc:
                result.problems.append(f"step {step} failed: {_describe(exc)}")
                result.stop_reason = "error"
                return
            if verdict.stop:
                result.stop_reason = "verifier_stop"
                return

    async def _turn(
        self,
        question: str,
        analysis: str,
        memory: Memory,
        step: int,
        problems: list[str],
        emit: EventSink,
    ) -> Verdict:
        turn_started = self._clock()
        planned = await self.planner.next_step(
            question, analysis, memory, step, self.config.max_steps
        )
        if planned.problem:
            problems.append(f"step {step}: {planned.problem}")
        emit(StepPlanned(step, planned))
        if planned.tool_name is None:
            executed = ExecutedStep(TOOL_NOT_FOUND_COMMAND, TOOL_NOT_FOUND_RESULT, "no tool")
        else:
            executed = await self.executor.execute(question, planned)
            if executed.error:
                problems.append(f"step {step}: {executed.error}")
        action = memory.add_action(
            step,
            planned.tool_name or planned.requested_tool or "unknown",
            planned.sub_goal,
            executed.command,
            executed.result,
        )
        verdict = await self.verifier.verify(question, analysis, memory, step)
        if verdict.problem:
            problems.append(f"step {step}: {verdict.problem}")
        emit(TurnCompleted(step, planned, action, verdict, self._clock() - turn_started))
        return verdict

    async def _generate(self, question: str, memory: Memory, result: SolveResult) -> None:
        outputs = self.config.output_types
        try:
            if "final" in outputs:
                result.final_output = await self.generator.final_output(question, memory)
            if "direct" in outputs:
                result.direct_output = await self.generator.direct_output(question, memory)
        except Exception as exc:
            result.problems.append(f"answer generation failed: {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, CoralError):
        return f"{exc.reason}: {exc.detail}"
    return f"{type(exc).__name__}: {exc}"
