"""LLM engines for AgentFlow: one async interface, several backends, optional caching."""

from coral_sdk.models.agentflow.engines.base import (
    CachedEngine,
    Completion,
    EngineStats,
    LLMEngine,
    cache_key,
    estimate_tokens,
)
from coral_sdk.models.agentflow.engines.openai_http import (
    OpenAICompatibleEngine,
    OpenAIEngineConfig,
)

__all__ = [
    "CachedEngine",
    "Completion",
    "EngineStats",
    "LLMEngine",
    "OpenAICompatibleEngine",
    "OpenAIEngineConfig",
    "cache_key",
    "estimate_tokens",
]
