"""The one engine interface every AgentFlow module talks to, plus response caching.

An engine turns a prompt into a :class:`Completion`. Engines count the tokens
they spend; :class:`CachedEngine` wraps any engine and answers repeated requests
from a cache keyed by a hash of (model, system, prompt, params).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Completion:
    """Text produced by an engine, with the tokens it cost."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass
class EngineStats:
    """Running counters an engine keeps: calls, tokens, retries, cache hits and misses."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    cache_hits: int = 0
    cache_misses: int = 0

    def record(self, completion: Completion) -> None:
        """Count one completed call and its tokens."""
        self.calls += 1
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens

    @property
    def cache_hit_rate(self) -> float:
        """Fraction of cache lookups answered from the cache (0.0 when none were made)."""
        lookups = self.cache_hits + self.cache_misses
        return self.cache_hits / lookups if lookups else 0.0


@runtime_checkable
class LLMEngine(Protocol):
    """Anything that completes a prompt asynchronously."""

    model: str
    stats: EngineStats

    async def generate(self, prompt: str, system: str | None = None, **params: Any) -> Completion:
        """Complete ``prompt`` (optionally under a ``system`` message).

        Raises EngineError when no completion can be produced.
        """
        ...


def estimate_tokens(text: str) -> int:
    """Rough token count (whitespace words) for services that do not report usage."""
    return len(text.split())


def cache_key(model: str, prompt: str, system: str | None, params: dict[str, Any]) -> str:
    """Stable SHA-256 of the request (model, system, prompt, sorted params).

    Sorted-key ``json.dumps`` is deterministic for these values and several times
    faster than full RFC 8785 on multi-kilobyte prompts, which matters on cache hits.
    """
    request = {"model": model, "system": system, "prompt": prompt, "params": params}
    encoded = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


class CachedEngine:
    """Answer repeated identical requests from memory (and optionally a directory on disk).

    Concurrent identical requests share one inner call. Only successful
    completions are cached; errors propagate and are retried by the caller.
    """

    def __init__(
        self,
        inner: LLMEngine,
        *,
        max_entries: int = 10_000,
        cache_dir: Path | None = None,
    ) -> None:
        self.inner = inner
        self.model = inner.model
        self.stats = EngineStats()
        self._max_entries = max_entries
        self._entries: OrderedDict[str, Completion] = OrderedDict()
        self._in_flight: dict[str, asyncio.Future[Completion]] = {}
        self._cache_dir = cache_dir
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)

    async def generate(self, prompt: str, system: str | None = None, **params: Any) -> Completion:
        """Return the cached completion for this request, or ask the inner engine once."""
        key = cache_key(self.model, prompt, system, params)
        cached = self._lookup(key)
        if cached is not None:
            self.stats.cache_hits += 1
            return cached
        pending = self._in_flight.get(key)
        if pending is not None:
            self.stats.cache_hits += 1
            return await asyncio.shield(pending)
        self.stats.cache_misses += 1
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            completion = await self.inner.generate(prompt, system, **params)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        finally:
            del self._in_flight[key]
        future.set_result(completion)
        self.stats.record(completion)
        self._store(key, completion)
        return completion

    def _lookup(self, key: str) -> Completion | None:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        if self._cache_dir is not None:
            path = self._cache_dir / f"{key}.json"
            if path.is_file():
                try:
                    completion = Completion(**json.loads(path.read_text("utf-8")))
                except (ValueError, TypeError):
                    return None  # a torn or foreign file is a miss, not a crash
                self._remember(key, completion)
                return completion
        return None

    def _store(self, key: str, completion: Completion) -> None:
        self._remember(key, completion)
        if self._cache_dir is not None:
            path = self._cache_dir / f"{key}.json"
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(asdict(completion)), "utf-8")
            temporary.replace(path)  # atomic, so readers never see half a file

    def _remember(self, key: str, completion: Completion) -> None:
        self._entries[key] = completion
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
