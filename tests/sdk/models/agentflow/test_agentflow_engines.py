"""Engines: OpenAI-compatible client retries and token accounting, response caching."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from coral_sdk.models.agentflow import (
    CachedEngine,
    EngineError,
    EngineRejected,
    OpenAICompatibleEngine,
    OpenAIEngineConfig,
)
from coral_sdk.models.agentflow.engines.base import cache_key
from tests.sdk.models.agentflow.scripted_llm import Reply, ScriptedLLM


def config_for(server: ScriptedLLM, **overrides: object) -> OpenAIEngineConfig:
    values: dict[str, object] = {
        "base_url": server.base_url,
        "model": "scripted",
        "max_retries": 3,
        "backoff_initial_s": 0.01,
    }
    values.update(overrides)
    return OpenAIEngineConfig(**values)  # type: ignore[arg-type]


async def test_reported_usage_is_counted_and_missing_usage_is_estimated(
    scripted_llm: ScriptedLLM,
) -> None:
    scripted_llm.script = {
        "other": [
            Reply("four words right here", usage={"prompt_tokens": 11, "completion_tokens": 4}),
            Reply("three more words"),
        ]
    }
    async with OpenAICompatibleEngine(config_for(scripted_llm, api_key="k")) as engine:
        first = await engine.generate("hello there", system="be brief")
        second = await engine.generate("one two three four five")
    assert (first.prompt_tokens, first.completion_tokens) == (11, 4)
    assert (second.prompt_tokens, second.completion_tokens) == (5, 3)
    assert engine.stats.calls == 2
    assert engine.stats.prompt_tokens == 16 and engine.stats.completion_tokens == 7
    sent = scripted_llm.requests[0]
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}
    assert sent["model"] == "scripted"


async def test_server_errors_and_rate_limits_are_retried_with_backoff(
    scripted_llm: ScriptedLLM,
) -> None:
    scripted_llm.script = {
        "other": [
            Reply(status=503),
            Reply(status=429, headers={"Retry-After": "0"}),
            Reply(status=500),
            Reply("finally"),
        ]
    }
    delays: list[float] = []

    async def record_sleep(seconds: float) -> None:
        delays.append(seconds)

    async with OpenAICompatibleEngine(config_for(scripted_llm), sleep=record_sleep) as engine:
        completion = await engine.generate("try hard")
    assert completion.text == "finally"
    assert len(scripted_llm.requests) == 4
    assert engine.stats.retries == 3
    assert delays[1] == 0.0  # Retry-After honoured
    assert 0.005 <= delays[0] <= 0.01 and 0.02 <= delays[2] <= 0.04  # exponential, jittered


async def test_retry_after_and_backoff_stay_under_the_cap(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.script = {
        "other": [
            Reply(status=429, headers={"Retry-After": "100"}),
            Reply(status=503),
            Reply(status=503),
            Reply("done"),
        ]
    }
    delays: list[float] = []

    async def record_sleep(seconds: float) -> None:
        delays.append(seconds)

    config = config_for(scripted_llm, backoff_initial_s=1.0, backoff_max_s=0.05)
    async with OpenAICompatibleEngine(config, sleep=record_sleep) as engine:
        assert (await engine.generate("patience")).text == "done"
    assert delays[0] == 0.05  # Retry-After capped
    assert all(0.025 <= d <= 0.05 for d in delays[1:])  # backoff capped, still jittered


async def test_client_errors_fail_at_once_without_retrying(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.script = {"other": [Reply(status=400)]}
    async with OpenAICompatibleEngine(config_for(scripted_llm)) as engine:
        with pytest.raises(EngineRejected):
            await engine.generate("bad request")
    assert len(scripted_llm.requests) == 1


async def test_persistent_failure_gives_up_after_the_retry_budget(
    scripted_llm: ScriptedLLM,
) -> None:
    scripted_llm.script = {"other": [Reply(status=502)]}
    async with OpenAICompatibleEngine(config_for(scripted_llm, max_retries=2)) as engine:
        with pytest.raises(EngineError, match="gave up after 3 attempts"):
            await engine.generate("never works")
    assert len(scripted_llm.requests) == 3


async def test_connection_errors_are_retried_then_reported() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = OpenAIEngineConfig(
        base_url=f"http://127.0.0.1:{port}/v1", max_retries=2, backoff_initial_s=0.01
    )
    async with OpenAICompatibleEngine(config) as engine:
        with pytest.raises(EngineError, match="cannot reach"):
            await engine.generate("anyone there?")
    assert engine.stats.retries == 2


async def test_cache_answers_repeats_without_calling_the_service(
    scripted_llm: ScriptedLLM,
) -> None:
    scripted_llm.script = {"other": [Reply("first"), Reply("second"), Reply("third")]}
    async with OpenAICompatibleEngine(config_for(scripted_llm)) as inner:
        cached = CachedEngine(inner)
        one = await cached.generate("same prompt")
        two = await cached.generate("same prompt")
        other_params = await cached.generate("same prompt", temperature=0.7)
        other_system = await cached.generate("same prompt", system="different")
    assert one == two and one.text == "first"
    assert other_params.text == "second" and other_system.text == "third"
    assert len(scripted_llm.requests) == 3
    assert (cached.stats.cache_hits, cached.stats.cache_misses) == (1, 3)
    assert cached.stats.cache_hit_rate == pytest.approx(0.25)


async def test_concurrent_identical_requests_share_one_call(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.script = {"other": [Reply("shared", delay_s=0.1)]}
    async with OpenAICompatibleEngine(config_for(scripted_llm)) as inner:
        cached = CachedEngine(inner)
        results = await asyncio.gather(*(cached.generate("same") for _ in range(5)))
    assert {completion.text for completion in results} == {"shared"}
    assert len(scripted_llm.requests) == 1
    assert cached.stats.cache_hits == 4


async def test_disk_cache_survives_a_new_engine(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    scripted_llm.script = {
        "other": [Reply("kept", usage={"prompt_tokens": 2, "completion_tokens": 1})]
    }
    async with OpenAICompatibleEngine(config_for(scripted_llm)) as inner:
        await CachedEngine(inner, cache_dir=tmp_path).generate("persist me")
        again = CachedEngine(inner, cache_dir=tmp_path)
        completion = await again.generate("persist me")
    assert completion.text == "kept" and completion.prompt_tokens == 2
    assert again.stats.cache_hits == 1
    assert len(scripted_llm.requests) == 1


async def test_failed_calls_are_not_cached(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.script = {"other": [Reply(status=400), Reply("recovered")]}
    async with OpenAICompatibleEngine(config_for(scripted_llm)) as inner:
        cached = CachedEngine(inner)
        with pytest.raises(EngineRejected):
            await cached.generate("flaky")
        assert (await cached.generate("flaky")).text == "recovered"


def test_config_reads_the_environment_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://openai.example/v1")
    monkeypatch.setenv("AGENTFLOW_BASE_URL", "http://vllm.local:8000/v1")
    monkeypatch.setenv("AGENTFLOW_MODEL", "qwen2.5-7b-instruct")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    config = OpenAIEngineConfig.from_env()
    assert config.base_url == "http://vllm.local:8000/v1"
    assert config.model == "qwen2.5-7b-instruct" and config.api_key == "sk-test"
    override = OpenAIEngineConfig.from_env(base_url="http://other/v1", model=None)
    assert override.base_url == "http://other/v1" and override.model == "qwen2.5-7b-instruct"


def test_cache_key_depends_on_model_prompt_system_and_params() -> None:
    base = cache_key("m", "p", None, {"temperature": 0.0})
    assert base == cache_key("m", "p", None, {"temperature": 0.0})
    assert (
        len(
            {
                base,
                cache_key("m2", "p", None, {"temperature": 0.0}),
                cache_key("m", "p2", None, {"temperature": 0.0}),
                cache_key("m", "p", "s", {"temperature": 0.0}),
                cache_key("m", "p", None, {"temperature": 0.5}),
            }
        )
        == 5
    )


async def test_api_key_is_sent_as_bearer_token_only_when_set(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.script = {"other": ["ok"]}
    async with OpenAICompatibleEngine(config_for(scripted_llm, api_key="sk-abc")) as engine:
        await engine.generate("hi")
    async with OpenAICompatibleEngine(config_for(scripted_llm)) as engine:
        await engine.generate("hi")
    assert scripted_llm.headers[0]["Authorization"] == "Bearer sk-abc"
    assert "Authorization" not in scripted_llm.headers[1]
