"""OpenAI-compatible chat engine over aiohttp (OpenAI, vLLM, Ollama, LiteLLM, ...).

Posts to ``{base_url}/chat/completions``. Retries 429, 5xx, connection errors
and timeouts with jittered exponential backoff (honouring ``Retry-After``),
driven by tenacity; any other status fails at once with :class:`EngineRejected`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import tenacity

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
        """POST one chat completion, retrying transient failures.

        Raises:
            EngineRejected: the service refused the request (a 4xx other than 408/409/425/429).
            EngineError: a malformed answer, or transient failures past ``max_retries``.

        Cancellation stops the current attempt or back-off sleep; nothing is left open.
        """
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
        attempts = self.config.max_retries + 1
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(attempts),
            wait=_RetryAfterOr(self._backoff(), cap_s=self.config.backoff_max_s),
            retry=tenacity.retry_if_exception_type(_Transient),
            sleep=self._sleep,
            before_sleep=self._count_retry,
        )
        try:
            completion: Completion = await retrying(
                self._post_once, url, body, headers, prompt, system
            )
        except tenacity.RetryError as exc:
            problem = exc.last_attempt.exception()
            raise EngineError(f"{problem} (gave up after {attempts} attempts)") from None
        self.stats.record(completion)
        return completion

    async def _post_once(
        self,
        url: str,
        body: dict[str, Any],
        headers: dict[str, str],
        prompt: str,
        system: str | None,
    ) -> Completion:
        """One POST: the completion, EngineRejected/EngineError, or _Transient to retry."""
        try:
            async with self._client().post(url, json=body, headers=headers) as response:
                if response.status == 200:
                    try:
                        payload = await response.json(content_type=None)
                    except ValueError:
                        raise EngineError(f"{url} answered 200 with non-JSON body") from None
                    return _completion_from(payload, prompt, system)
                detail = (await response.text())[:300]
                problem = f"{url} answered {response.status}: {detail}"
                if response.status not in RETRYABLE_STATUSES:
                    raise EngineRejected(problem)
                retry_after = _parse_retry_after(response.headers.get("Retry-After"))
                raise _Transient(problem, retry_after)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise _Transient(f"cannot reach {url}: {exc}") from None
        except TimeoutError:
            raise _Transient(f"{url} timed out after {self.config.request_timeout_s} s") from None

    def _count_retry(self, retry_state: tenacity.RetryCallState) -> None:
        self.stats.retries += 1

    def _backoff(self) -> tenacity.wait.wait_base:
        """Exponential from ``backoff_initial_s``, capped at ``backoff_max_s``, half of it jitter.

        Jitter keeps many agents from retrying in lockstep after a shared outage.
        """
        half_initial, half_cap = self.config.backoff_initial_s / 2, self.config.backoff_max_s / 2
        return tenacity.wait_exponential(
            multiplier=half_initial, max=half_cap
        ) + tenacity.wait_random_exponential(multiplier=half_initial, max=half_cap)


class _Transient(Exception):
    """A failure worth another attempt: 408/429/5xx, a dropped connection, a timeout."""

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.retry_after = retry_after


class _RetryAfterOr(tenacity.wait.wait_base):
    """The server's ``Retry-After`` (capped) when it sent one, else ``backoff``."""

    def __init__(self, backoff: tenacity.wait.wait_base, *, cap_s: float) -> None:
        self.backoff = backoff
        self.cap_s = cap_s

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(failure, _Transient) and failure.retry_after is not None:
            return min(failure.retry_after, self.cap_s)
        return self.backoff(retry_state)


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
