"""The AgentFlow agent: answers questions by planning, calling tools and verifying.

Request: a question as text, or ``{"question": str}``. Reply: ``{"answer",
"final_output", "steps", "stop_reason", "tool_calls", "problems"}``. The LLM is
any OpenAI-compatible service (options ``base_url``/``model``/``api_key``, or the
``AGENTFLOW_*``/``OPENAI_*`` environment). Its tools include ``coral_agent``:
other Coral agents named in option ``tool_agents`` (``"trm=solves 4x4 sudoku"``,
``;``-separated), called over the network through ``CoralNetworkTool``; with
option ``pay_tools`` it pays priced agents through the ledger (escrow, posted
on answer), refusing any above ``max_tool_price``.

Option ``engine = "trained-planner"`` serves the planner trained by Flow-GRPO
(``coral-agent train agentflow``; the shipped one by default, or option
``planner_checkpoint``) instead of an LLM: the trained policy picks each turn's
tool, with the frozen rule-based executor, verifier and generator it was
trained against, over the same tools; its Coral-agent tool reaches the puzzle
agent (option ``puzzle_agent``, default ``trm``) over the network. It answers
the demo's question shapes: arithmetic, corpus lookups, lookups plus
arithmetic, and "Solve this Sudoku (0 = blank): [[...]]".
"""

from __future__ import annotations

from typing import Any

from coral.protocol.agent import AgentManifest
from coral_sdk.agent import Incoming, Reply
from coral_sdk.agents.coral_tool import CoralNetworkTool
from coral_sdk.ledger import LedgerClient
from coral_sdk.model_agent import ModelAgent, RequestRejected
from coral_sdk.serve import ServeSettings, run_module

MAX_QUESTION_CHARS = 8000


def parse_tool_agents(spec: str) -> dict[str, str]:
    """``"trm=solves sudoku; echo=repeats"`` -> ``{"trm": "solves sudoku", "echo": "repeats"}``."""
    agents: dict[str, str] = {}
    for item in spec.split(";"):
        if not item.strip():
            continue
        name, _, skill = item.partition("=")
        if not name.strip():
            raise ValueError(f"tool_agents entry {item!r} has no agent name")
        agents[name.strip()] = skill.strip() or "a Coral agent"
    return agents


class AgentFlowAgent(ModelAgent[str, dict[str, Any]]):
    """Runs one AgentFlow solve per question (concurrently; the LLM service batches)."""

    manifest = AgentManifest(name="agentflow", capabilities=("chat",))

    uses_torch = False
    concurrency = 8

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        max_price = self.options.get("max_tool_price")
        self.network_tool = CoralNetworkTool(
            self.client,
            timeout_s=float(self.options.get("tool_timeout_s", 60.0)),
            ledger=LedgerClient(self.client) if self.options.get("pay_tools") else None,
            max_price=int(max_price) if max_price is not None else None,
        )
        self.tool_agents = parse_tool_agents(str(self.options.get("tool_agents", "")))
        engine = str(self.options.get("engine") or "openai")
        if engine not in ("openai", "trained-planner"):
            from coral_sdk.registry import ManifestError

            raise ManifestError(f"options.engine: {engine!r} is not 'openai' or 'trained-planner'")
        self._engine: Any = None
        self._solver: Any = None

    def parse_request(self, payload: Any) -> str:
        """A non-empty question, from text or ``{"question": ...}``."""
        question = payload.get("question") if isinstance(payload, dict) else payload
        if not isinstance(question, str) or not question.strip():
            raise RequestRejected("send a question as text or {'question': str}", "no_question")
        if len(question) > MAX_QUESTION_CHARS:
            raise RequestRejected(
                f"the question exceeds {MAX_QUESTION_CHARS} characters", "question_too_long"
            )
        return question.strip()

    def _build_trained_solver(self) -> Any:
        """The Flow-GRPO planner with the frozen modules and tools it was trained with."""
        from coral_sdk.models.agentflow.flow_grpo.frozen_modules import (
            RuleExecutor,
            RuleGenerator,
            RuleVerifier,
        )
        from coral_sdk.models.agentflow.flow_grpo.policy import (
            SHIPPED_PLANNER,
            PolicyPlanner,
            load_planner,
        )
        from coral_sdk.models.agentflow.flow_grpo.trainer import demo_toolbox
        from coral_sdk.models.agentflow.solver import FlowConfig, Solver
        from coral_sdk.registry import ManifestError

        directory = self.options.get("planner_checkpoint") or SHIPPED_PLANNER
        try:
            policy, featurizer, _ = load_planner(directory)
        except (OSError, ValueError, KeyError) as exc:
            raise ManifestError(f"options.planner_checkpoint: {exc}") from None
        puzzle_agent = str(self.options.get("puzzle_agent") or "trm")
        toolbox = demo_toolbox(coral=self.network_tool, puzzle_agent=puzzle_agent)
        if list(toolbox.names) != list(featurizer.tool_names):
            raise ManifestError(
                f"options.planner_checkpoint: trained for tools {featurizer.tool_names}, "
                f"served tools are {list(toolbox.names)}"
            )
        executor = RuleExecutor(
            toolbox,
            tool_timeout_s=float(self.options.get("tool_timeout_s", 60.0)) + 5.0,
            puzzle_agent=puzzle_agent,
        )
        flow = FlowConfig(
            max_steps=featurizer.max_steps,
            max_time_s=float(self.options.get("max_time_s", 300.0)),
            output_types=frozenset({"final", "direct"}),
        )
        self.model_loaded = True

        def new_solver() -> Any:
            # One planner per question: it records that question's turns.
            planner = PolicyPlanner(policy, featurizer, greedy=True)
            return Solver(planner, executor, RuleVerifier(), RuleGenerator(), flow)

        return new_solver

    def _build_solver(self) -> Any:
        if self.options.get("engine", "openai") == "trained-planner":
            return self._build_trained_solver()
        from coral_sdk.models.agentflow import (
            CallCoralAgentTool,
            FlowConfig,
            OpenAICompatibleEngine,
            OpenAIEngineConfig,
            PythonCalculatorTool,
            build_solver,
        )

        config = OpenAIEngineConfig.from_env(
            base_url=self.options.get("base_url") or None,
            model=self.options.get("model") or None,
            api_key=self.options.get("api_key") or None,
        )
        self._engine = OpenAICompatibleEngine(config)
        tools: list[Any] = []
        if self.tool_agents:
            tools.append(CallCoralAgentTool(self.network_tool, self.tool_agents))
        if self.options.get("calculator", True):
            tools.append(PythonCalculatorTool())
        flow = FlowConfig(
            max_steps=int(self.options.get("max_steps", 5)),
            max_time_s=float(self.options.get("max_time_s", 300.0)),
        )
        self.model_loaded = True
        solver = build_solver(self._engine, tools=tools, config=flow)
        return lambda: solver

    async def answer(self, request: str) -> dict[str, Any]:
        """Run the planner/executor/verifier/generator loop on one question."""
        if self._solver is None:
            self._solver = self._build_solver()
        result = await self._solver().solve(request)
        return {
            "answer": result.direct_output,
            "final_output": result.final_output,
            "steps": result.step_count,
            "stop_reason": result.stop_reason,
            "tool_calls": [
                {"tool": r.tool_name, "command": r.command, "result": _jsonable(r.result)}
                for r in result.memory
            ],
            "problems": list(result.problems),
        }

    async def on_mention(self, message: Incoming) -> Reply:
        """Questions only: replies to this agent's own tool calls are routed to the tool."""
        if message.thread_id in self.network_tool.threads:
            return None
        return await super().on_mention(message)

    def summarize(self, data: dict[str, Any]) -> str:
        """The direct answer as the text part."""
        if "error" in data:
            return super().summarize(data)
        return str(data.get("answer") or data.get("final_output") or "(no answer)")

    async def run(self) -> None:
        """Serve questions; close the LLM engine and the tool's reply router afterwards."""
        try:
            await super().run()
        finally:
            await self.network_tool.aclose()
            if self._engine is not None:
                await self._engine.close()


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | None) else str(value)


def create_agent(settings: ServeSettings) -> AgentFlowAgent:
    """Build the agent from its resolved serve settings."""
    return AgentFlowAgent(**settings.agent_kwargs())


if __name__ == "__main__":
    raise SystemExit(run_module(create_agent))
