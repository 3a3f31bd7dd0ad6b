"""Frozen executor, verifier and generator for the Flow-GRPO demo.

Flow-GRPO trains only the planner; the other modules stay fixed. Here, with no
LLM available, fixed rule-based modules stand in for them. They read the
demo's question templates (see :mod:`tasks`), call the real tools through the
toolbox, and behave like a reasonable but literal-minded frozen LLM: the
verifier trusts a confident ``base_generator`` answer, which is the trap the
planner must learn to avoid.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from coral_sdk.models.agentflow.engines.base import Completion, EngineStats, estimate_tokens
from coral_sdk.models.agentflow.flow_grpo.tasks import (
    OPERATORS,
    PUZZLE_PREFIX,
    extract_fact,
    grid_text,
)
from coral_sdk.models.agentflow.memory import ActionRecord, Memory
from coral_sdk.models.agentflow.modules import ExecutedStep, run_tool
from coral_sdk.models.agentflow.parsing import PlannedStep, Verdict
from coral_sdk.models.agentflow.tools.base import Toolbox

CALCULATOR = "python_calculator"
SEARCH = "document_search"
GENERATOR = "base_generator"
CORAL_AGENT = "coral_agent"
#: The Coral agent puzzle questions go to, unless the executor is told otherwise.
PUZZLE_AGENT = "trm"
_SUDOKU_TASKS = {4: "sudoku4", 6: "sudoku6", 9: "sudoku9"}

_ARITHMETIC = re.compile(r"^What is ([\d\s+\-*]+)\?$")
_LOOKUP = re.compile(r"^What is the (capital|population|founding year) of (\w+)\?$")
_COMPOSE = re.compile(
    r"^What is the (population|founding year) of (\w+) (plus|minus|times) (\d+)\?$"
)


@dataclass(frozen=True)
class QuestionNeeds:
    """What a demo question requires: an expression to compute, a fact to look up, or both."""

    expression: str | None = None
    entity: str | None = None
    attribute: str | None = None
    operator: str | None = None
    operand: int | None = None
    grid: tuple[tuple[int, ...], ...] | None = None

    @property
    def compute(self) -> bool:
        """The answer needs exact arithmetic."""
        return self.expression is not None or self.operator is not None

    @property
    def lookup(self) -> bool:
        """The answer needs a fact from the corpus."""
        return self.entity is not None

    @property
    def puzzle(self) -> bool:
        """The answer is a solved Sudoku grid (a puzzle agent's job)."""
        return self.grid is not None


def _read_grid(text: str) -> tuple[tuple[int, ...], ...] | None:
    try:
        grid = json.loads(text)
    except ValueError:
        return None
    size = len(grid) if isinstance(grid, list) else 0
    if size not in _SUDOKU_TASKS:
        return None
    rows = []
    for row in grid:
        if not isinstance(row, list) or len(row) != size:
            return None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in row):
            return None
        rows.append(tuple(row))
    return tuple(rows)


def read_question(question: str) -> QuestionNeeds:
    """Understand a demo question (unknown shapes need nothing)."""
    if question.startswith(PUZZLE_PREFIX):
        grid = _read_grid(question.removeprefix(PUZZLE_PREFIX).strip())
        return QuestionNeeds(grid=grid) if grid is not None else QuestionNeeds()
    if match := _ARITHMETIC.match(question):
        return QuestionNeeds(expression=match.group(1).strip())
    if match := _COMPOSE.match(question):
        attribute, entity, word, operand = match.groups()
        return QuestionNeeds(None, entity, attribute, OPERATORS[word], int(operand))
    if match := _LOOKUP.match(question):
        return QuestionNeeds(entity=match.group(2), attribute=match.group(1))
    return QuestionNeeds()


def fact_from_results(result: Any, entity: str, attribute: str) -> str | None:
    """The attribute value stated by the search hit titled ``entity``, if any."""
    if not isinstance(result, list):
        return None
    for hit in result:
        if isinstance(hit, dict) and hit.get("title") == entity:
            return extract_fact(str(hit.get("text", "")), attribute)
    return None


def fact_from_memory(actions: tuple[ActionRecord, ...], needs: QuestionNeeds) -> str | None:
    """The latest looked-up value of the needed fact, if a search found it."""
    if needs.entity is None or needs.attribute is None:
        return None
    for record in reversed(actions):
        if record.tool_name == SEARCH:
            value = fact_from_results(record.result, needs.entity, needs.attribute)
            if value is not None:
                return value
    return None


def solved_grid(record: ActionRecord) -> str | None:
    """The verified solution in a puzzle agent's reply, as compact JSON, else None."""
    if record.tool_name != CORAL_AGENT or not isinstance(record.result, str):
        return None
    try:
        reply = json.loads(record.result)
    except ValueError:
        return None
    if not isinstance(reply, dict) or reply.get("verified") is not True:
        return None
    solution = reply.get("solution")
    return grid_text(solution) if isinstance(solution, list) else None


def numeric_result(record: ActionRecord) -> str | None:
    """The calculator's value when the record is a successful numeric calculation."""
    if record.tool_name != CALCULATOR or not isinstance(record.result, dict):
        return None
    value = record.result.get("result")
    if record.result.get("error") or not isinstance(value, str):
        return None
    return value if re.fullmatch(r"-?\d+(\.\d+)?", value) else None


class RuleExecutor:
    """Writes the obvious command for the chosen tool and runs it through the toolbox.

    The planner's ``context`` carries the memory (as AgentFlow's planner copies
    needed facts into it); the executor takes looked-up values from there.
    """

    def __init__(
        self, toolbox: Toolbox, *, tool_timeout_s: float = 10.0, puzzle_agent: str = PUZZLE_AGENT
    ) -> None:
        self.toolbox = toolbox
        self.tool_timeout_s = tool_timeout_s
        self.puzzle_agent = puzzle_agent

    async def execute(self, question: str, planned: PlannedStep) -> ExecutedStep:
        """Build the command from the question and context, then run the real tool."""
        if planned.tool_name is None:
            return ExecutedStep("", {"error": "no tool was chosen"}, "no tool was chosen")
        arguments = self.arguments_for(planned.tool_name, question, planned.context)
        command = f"execution = tool.execute({_keywords(arguments)})"
        return await run_tool(
            self.toolbox, planned.tool_name, command, arguments, self.tool_timeout_s
        )

    def arguments_for(self, tool_name: str, question: str, context: str) -> dict[str, Any]:
        """Tool arguments a literal-minded executor would write."""
        needs = read_question(question)
        if tool_name == CALCULATOR:
            if needs.expression is not None:
                return {"code": needs.expression}
            if needs.operator is not None and needs.entity and needs.attribute:
                value = fact_from_results(_context_results(context), needs.entity, needs.attribute)
                # Without the looked-up value the code names the unknown, which fails loudly.
                left = value if value is not None else needs.attribute.replace(" ", "_")
                return {"code": f"{left} {needs.operator} {needs.operand}"}
            return {"code": re.sub(r"\W+", "_", question.lower()).strip("_")}
        if tool_name == SEARCH:
            return {"query": question}
        if tool_name == CORAL_AGENT:
            if needs.grid is not None:
                task = _SUDOKU_TASKS[len(needs.grid)]
                request = {"task": task, "grid": [list(row) for row in needs.grid]}
                # JSON text: the network tool sends it to the agent as a data part.
                return {"agent_name": self.puzzle_agent, "request": json.dumps(request)}
            return {"agent_name": self.puzzle_agent, "request": question}
        return {"query": question}


def _context_results(context: str) -> list[Any]:
    try:
        actions = json.loads(context)
    except ValueError:
        return []
    hits: list[Any] = []
    if isinstance(actions, dict):
        for action in actions.values():
            if isinstance(action, dict) and action.get("tool_name") == SEARCH:
                result = action.get("result")
                hits.extend(result if isinstance(result, list) else [])
    return hits


def _keywords(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in arguments.items())


class RuleVerifier:
    """STOP once the memory holds what the question needs, or a confident direct answer."""

    async def verify(
        self, question: str, query_analysis: str, memory: Memory, step: int
    ) -> Verdict:
        """Check the needs of the question against the memory."""
        actions = memory.actions
        if actions and actions[-1].tool_name == GENERATOR and isinstance(actions[-1].result, str):
            return Verdict(True, "A direct answer was given.\nConclusion: STOP")
        needs = read_question(question)
        if needs.puzzle:
            if any(solved_grid(record) for record in actions):
                return Verdict(True, "The puzzle agent returned a verified grid.\nConclusion: STOP")
            return Verdict(False, "No verified solution yet.\nConclusion: CONTINUE")
        looked_up = not needs.lookup or fact_from_memory(actions, needs) is not None
        computed = not needs.compute or any(numeric_result(record) for record in actions)
        if needs.lookup and needs.compute and computed:
            # The calculation only counts if it came after the lookup it depends on.
            computed = _computed_after_lookup(actions, needs)
        if (needs.lookup or needs.compute) and looked_up and computed:
            return Verdict(True, "Everything the query needs is in memory.\nConclusion: STOP")
        return Verdict(False, "Information is still missing.\nConclusion: CONTINUE")


def _computed_after_lookup(actions: tuple[ActionRecord, ...], needs: QuestionNeeds) -> bool:
    seen_fact = False
    for record in actions:
        if record.tool_name == SEARCH and needs.entity and needs.attribute:
            seen_fact = (
                seen_fact
                or fact_from_results(record.result, needs.entity, needs.attribute) is not None
            )
        elif seen_fact and numeric_result(record) is not None:
            return True
    return False


class RuleGenerator:
    """Answers from the memory: last calculation, looked-up fact, or the direct answer given."""

    async def direct_output(self, question: str, memory: Memory) -> str:
        """The short answer scored by the exact-match reward."""
        actions = memory.actions
        if not actions:
            return ""
        if actions[-1].tool_name == GENERATOR and isinstance(actions[-1].result, str):
            return actions[-1].result.strip()
        needs = read_question(question)
        if needs.puzzle:
            return next((g for g in map(solved_grid, reversed(actions)) if g), "")
        if needs.compute:
            for record in reversed(actions):
                value = numeric_result(record)
                if value is not None:
                    return value
            return ""
        return fact_from_memory(actions, needs) or ""

    async def final_output(self, question: str, memory: Memory) -> str:
        """One sentence naming the answer and how many steps found it."""
        answer = await self.direct_output(question, memory)
        return f"After {len(memory)} step(s), the answer to {question!r} is {answer or 'unknown'}."


class GuessingEngine:
    """A frozen LLM without the corpus and without exact arithmetic: confident, usually wrong.

    Backs the ``base_generator`` tool in the demo, so that choosing it is a real mistake.
    """

    model = "guessing-engine"

    def __init__(self) -> None:
        self.stats = EngineStats()

    async def generate(self, prompt: str, system: str | None = None, **params: Any) -> Completion:
        """A deterministic guess derived from the prompt."""
        needs = read_question(prompt)
        digest = int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16)
        if needs.compute:
            text = str(digest % 9000 + 1000)  # plausible-looking, almost never right
        elif needs.attribute == "capital":
            text = "Port Amsel"
        else:
            text = str(digest % 90000 + 1000)
        completion = Completion(text, estimate_tokens(prompt), 1)
        self.stats.record(completion)
        return completion


class LocalPuzzleAgent:
    """Stands in for the TRM Coral agent while training (``CoralAgentTool``): same reply shape.

    Like the rule-based modules standing in for frozen LLMs, it answers what the
    served agent would: a verified solution for a well-formed Sudoku request
    (here from the exact solver), a refusal for anything else. Serving calls the
    real agent over the network instead.
    """

    def __init__(self, agent_name: str = PUZZLE_AGENT) -> None:
        self.agent_name = agent_name
        self.calls = 0

    async def call(self, agent_name: str, request: str | dict[str, Any]) -> str:
        """A TRM-shaped JSON reply, or ``AgentRefused`` as the network tool raises it."""
        from coral_sdk.agents.coral_tool import AgentRefused, AgentUnreachable
        from coral_sdk.models.trm.tasks import sudoku

        self.calls += 1
        if agent_name != self.agent_name:
            raise AgentUnreachable(f"agent {agent_name!r}: not found")
        if isinstance(request, str):
            try:
                request = json.loads(request)
            except ValueError:
                pass
        grid = request.get("grid") if isinstance(request, dict) else None
        if not isinstance(grid, list) or not grid:
            raise AgentRefused(
                f"{agent_name} refused (malformed_puzzle): a puzzle must be a JSON object "
                "with 'task' and 'grid'"
            )
        import numpy as np

        solution = sudoku.solve(np.array(grid, dtype=np.int64))
        if solution is None:
            raise AgentRefused(f"{agent_name} refused (malformed_puzzle): no solution")
        reply = {
            "solution": solution.tolist(),
            "supervision_steps": 1,
            "halt_confidence": 1.0,
            "verified": True,
        }
        return json.dumps(reply, separators=(",", ":"))
