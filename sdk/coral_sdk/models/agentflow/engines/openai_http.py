"""OpenAI-compatible chat engine over aiohttp (OpenAI, vLLM, Ollama, LiteLLM, ...).

Posts to ``{base_url}/chat/completions``. Retries 429, 5xx, connection errors
and timeouts with exponential backoff (honouring ``Retry-After``); any other
status fails at once with :class:`EngineRejected`.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from coral_sdk.models.agentflow.engines.base import Completion, EngineStats, estimate_tokens
from coral_sdk.models.agentflow.errors import EngineError, EngineRejected

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


@dataclass(frozen=True)
class OpenAIEngineConfig:
    """Where and how to reach an OpenAI-compatible service."""

    base_url: str = DEFAULT_BASE_URL
    model: str = "gpt-4o-mini"
    api_key: str | None = None
    request_timeout_s: float = 120.0
    max_retries: int = 4
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 20.0
    temperature: float = 0.0
    max_tokens: int = 2048

    @classmethod
    def from_env(cls, **overrides: Any) -> OpenAIEngineConfig:
        """Read AGENTFLOW_BASE_URL/OPENAI_BASE_URL, AGENTFLOW_MODEL and OPENAI_API_KEY.

        Keyword overrides that are not None win over the environment.
        """
        values: dict[str, Any] = {
            "base_url": os.environ.get("AGENTFLOW_BASE_URL")
            or os.environ.get("OPENAI_BASE_URL")
            or DEFAULT_BASE_URL,
            "model": os.environ.get("AGENTFLOW_MODEL", cls.model),
            "api_key": os.environ.get("AGENTFLOW_API_KEY") or os.environ.get("OPENAI_API_KEY"),
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


class OpenAICompatibleEngine:
    """Async chat-completions client with retries and token accounting.

    Use as an async context manager, or call :meth:`close` when done; a session
    passed in by the caller is left open.
    """

    def __init__(
        self,
        config: OpenAIEngineConfig,
        *,
        session: aiohttp.ClientSession | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self.model = config.model
        self.stats = EngineStats()
        self._session = session
        self._owns_session = session is None
        self._sleep = sleep

    async def __aenter__(self) -> OpenAICompatibleEngine:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if this engine created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.config.request_timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def generate(self, prompt: str, system: str | None = None, **params: Any) -> Completion:
        """POST one chat completion; retry transient failures, then raise EngineError."""
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
            **params,
        }
        headers = {"Content-Type": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        last_problem = "no attempt made"
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                self.stats.retries += 1
            retry_after: float | None = None
            try:
                async with self._client().post(url, json=body, headers=headers) as response:
                    if response.status == 200:
                        try:
                            payload = await response.json(content_type=None)
                        except ValueError:
                            raise EngineError(f"{url} answered 200 with non-JSON body") from None
                        completion = _completion_from(payload, prompt, system)
                        self.stats.record(completion)
                        return completion
                    detail = (await response.text())[:300]
                    if response.status not in RETRYABLE_STATUSES:
                        raise EngineRejected(f"{url} answered {response.status}: {detail}")
                    last_problem = f"{url} answered {response.status}: {detail}"
                    retry_after = _parse_retry_after(response.headers.get("Retry-After"))
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                last_problem = f"cannot reach {url}: {exc}"
            except TimeoutError:
                last_problem = f"{url} timed out after {self.config.request_timeout_s} s"
            if attempt < self.config.max_retries:
                await self._sleep(self._backoff(attempt, retry_after))
        raise EngineError(f"{last_problem} (gave up after {self.config.max_retries + 1} attempts)")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.config.backoff_max_s)
        delay = self.config.backoff_initial_s * (2.0**attempt)
        # Jitter keeps many agents from retrying in lockstep after a shared outage.
        return min(self.config.backoff_max_s, delay * (0.5 + random.random() / 2))


def _parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff


def _completion_from(payload: Any, prompt: str, system: str | None) -> Completion:
    try:
        text = payload["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        raise EngineError(f"malformed chat completion: {str(payload)[:200]}") from None
    usage = payload.get("usage") or {}
    prompt_tokens = usage.get("prompt_tokens")
    completion_tokens = usage.get("completion_tokens")
    return Completion(
        text=str(text),
        prompt_tokens=int(prompt_tokens)
        if isinstance(prompt_tokens, int)
        else estimate_tokens((system or "") + " " + prompt),
        completion_tokens=int(completion_tokens)
        if isinstance(completion_tokens, int)
        else estimate_tokens(str(text)),
    )
