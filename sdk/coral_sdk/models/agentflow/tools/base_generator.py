"""Base generator tool: ask the LLM engine directly (AgentFlow's ``Base_Generator_Tool``)."""

from __future__ import annotations

from typing import Any

from coral_sdk.models.agentflow.engines.base import LLMEngine
from coral_sdk.models.agentflow.tools.base import ToolDemo, ToolMetadata


class BaseGeneratorTool:
    """Answer a query from the model's own knowledge, without external data."""

    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine
        self.metadata = ToolMetadata(
            name="base_generator",
            description=(
                "Answers a general question or writes text using the language model's own "
                "knowledge. It cannot look up documents or compute exactly."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "query (str) - the question"}
                },
                "required": ["query"],
            },
            output_type="str - the model's answer",
            demo_commands=(
                ToolDemo(
                    command='execution = tool.execute(query="Summarise what BM25 does.")',
                    description="A general-knowledge question.",
                ),
            ),
            limitations="May be wrong on facts it was not trained on and on exact arithmetic.",
        )

    async def execute(self, **arguments: Any) -> str:
        """Return the engine's answer to ``query``."""
        completion = await self.engine.generate(str(arguments["query"]))
        return completion.text
