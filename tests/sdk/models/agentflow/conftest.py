"""Fixtures for AgentFlow tests (the scripted LLM server lives in scripted_llm.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.sdk.models.agentflow.scripted_llm import ScriptedLLM


@pytest.fixture
async def scripted_llm() -> AsyncIterator[ScriptedLLM]:
    server = ScriptedLLM()
    await server.start()
    try:
        yield server
    finally:
        await server.close()
