"""AgentFlow (Li et al., 2025): planner, executor, verifier and generator over an evolving memory.

Quick start (any OpenAI-compatible service)::

    engine = OpenAICompatibleEngine(OpenAIEngineConfig.from_env())
    result = await build_solver(engine).solve("What is 37 * 48 + 12?")
    print(result.direct_output)

Flow-GRPO training of the planner lives in :mod:`.flow_grpo` (needs torch).
"""

from coral_sdk.models.agentflow.engines import (
    CachedEngine,
    Completion,
    EngineStats,
    LLMEngine,
    OpenAICompatibleEngine,
    OpenAIEngineConfig,
)
from coral_sdk.models.agentflow.errors import (
    AgentFlowError,
    EngineError,
    EngineNotInstalled,
    EngineRejected,
    InvalidToolCommand,
    ToolNotFound,
)
from coral_sdk.models.agentflow.factory import build_solver, default_tools
from coral_sdk.models.agentflow.memory import ActionRecord, Memory
from coral_sdk.models.agentflow.modules import (
    ExecutedStep,
    LLMExecutor,
    LLMGenerator,
    LLMPlanner,
    LLMVerifier,
)
from coral_sdk.models.agentflow.parsing import PlannedStep, Verdict
from coral_sdk.models.agentflow.solver import (
    FlowConfig,
    QueryAnalyzed,
    Solver,
    SolveResult,
    StepPlanned,
    TurnCompleted,
)
from coral_sdk.models.agentflow.tools import (
    CallCoralAgentTool,
    CoralAgentTool,
    PythonCalculatorTool,
    Tool,
    Toolbox,
    ToolMetadata,
)

__all__ = [
    "ActionRecord",
    "AgentFlowError",
    "CachedEngine",
    "CallCoralAgentTool",
    "Completion",
    "CoralAgentTool",
    "EngineError",
    "EngineNotInstalled",
    "EngineRejected",
    "EngineStats",
    "ExecutedStep",
    "FlowConfig",
    "InvalidToolCommand",
    "LLMEngine",
    "LLMExecutor",
    "LLMGenerator",
    "LLMPlanner",
    "LLMVerifier",
    "Memory",
    "OpenAICompatibleEngine",
    "OpenAIEngineConfig",
    "PlannedStep",
    "PythonCalculatorTool",
    "QueryAnalyzed",
    "SolveResult",
    "Solver",
    "StepPlanned",
    "Tool",
    "ToolMetadata",
    "ToolNotFound",
    "Toolbox",
    "TurnCompleted",
    "Verdict",
    "build_solver",
    "default_tools",
]
