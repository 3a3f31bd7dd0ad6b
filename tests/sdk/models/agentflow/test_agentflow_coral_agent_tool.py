"""Delegating a sub-goal to another Coral agent through the CoralAgentTool interface."""

from __future__ import annotations

from typing import Any

import pytest

from coral_sdk.models.agentflow import (
    CallCoralAgentTool,
    CoralAgentTool,
    InvalidToolCommand,
    OpenAICompatibleEngine,
    OpenAIEngineConfig,
    Toolbox,
    build_solver,
)
from tests.sdk.models.agentflow.scripted_llm import ScriptedLLM


class FakeCoralAgents:
    """In-test fake of the network implementation the SDK owner will provide."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | dict[str, Any]]] = []

    async def call(self, agent_name: str, request: str | dict[str, Any]) -> str:
        self.calls.append((agent_name, request))
        return f"{agent_name} says: 21 degrees"


def test_fake_satisfies_the_protocol() -> None:
    assert isinstance(FakeCoralAgents(), CoralAgentTool)


async def test_tool_forwards_requests_and_rejects_unknown_agents() -> None:
    agents = FakeCoralAgents()
    tool = CallCoralAgentTool(agents, {"weather": "current weather by city"})
    assert "weather: current weather by city" in tool.metadata.description
    reply = await tool.execute(agent_name="weather", request="Lumeport today?")
    assert reply == "weather says: 21 degrees"
    with pytest.raises(InvalidToolCommand, match="unknown agent"):
        await tool.execute(agent_name="stocks", request="AAPL")
    assert agents.calls == [("weather", "Lumeport today?")]


async def test_planner_can_delegate_to_an_agent_inside_the_loop(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.script = {
        "planner": ["Context: none\nSub-Goal: ask weather\nTool Name: coral_agent"],
        "executor": [
            'Command:\n```python\nexecution = tool.execute(agent_name="weather", '
            'request="Lumeport today?")\n```'
        ],
        "verifier": ["Conclusion: STOP"],
        "direct": ["21 degrees"],
    }
    agents = FakeCoralAgents()
    config = OpenAIEngineConfig(base_url=scripted_llm.base_url, max_retries=0)
    async with OpenAICompatibleEngine(config) as engine:
        tool = CallCoralAgentTool(agents, {"weather": "current weather by city"})
        solver = build_solver(engine, tools=list(Toolbox.of([tool]).tools.values()))
        result = await solver.solve("How warm is Lumeport today?")
    assert result.memory[0].result == "weather says: 21 degrees"
    assert agents.calls == [("weather", "Lumeport today?")]
    assert result.direct_output == "21 degrees"
