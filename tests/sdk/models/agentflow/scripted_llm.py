"""A scripted OpenAI-compatible LLM server for AgentFlow tests.

No LLM service runs on these machines, so the loop is driven by a scripted
OpenAI-compatible HTTP server started on 127.0.0.1 with aiohttp: the one
allowed stand-in, at the edge of the world. Everything on our side (engine
client, parsing, tools, sandbox, memory, solver) is the real code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# Every module prompt opens with its own "Task:" line; the server routes on it.
ROLE_MARKERS = {
    "Task: Analyze the query": "analysis",
    "Task: Determine the optimal next step": "planner",
    "Task: Generate a precise command": "executor",
    "Task: Evaluate whether": "verifier",
    "Task: Write the final solution": "final",
    "Task: Give the direct answer": "direct",
}


@dataclass
class Reply:
    """A scripted reply: text with HTTP 200, or an error status; optional delay and usage."""

    text: str = ""
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    usage: dict[str, int] | None = None


Script = str | Reply | Callable[[str], str | Reply]


class ScriptedLLM:
    """An OpenAI-compatible /v1/chat/completions server that answers from a per-role script.

    ``script[role]`` is a list consumed in order (the last entry repeats). Roles are
    the module names above plus ``other`` for prompts without a marker.
    """

    def __init__(self) -> None:
        self.script: dict[str, list[Script]] = {}
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.roles: list[str] = []
        self._used: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def prompts(self, role: str) -> list[str]:
        """User prompts received for ``role``, in order."""
        return [
            request["messages"][-1]["content"]
            for request, seen in zip(self.requests, self.roles, strict=True)
            if seen == role
        ]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        prompt = body["messages"][-1]["content"]
        role = next((r for marker, r in ROLE_MARKERS.items() if prompt.startswith(marker)), "other")
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        self.roles.append(role)
        entries = self.script.get(role) or ["(no script for this role)"]
        index = self._used.get(role, 0)
        self._used[role] = index + 1
        entry = entries[min(index, len(entries) - 1)]
        reply = entry(prompt) if callable(entry) else entry
        if isinstance(reply, str):
            reply = Reply(reply)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.status != 200:
            return web.Response(status=reply.status, text="scripted failure", headers=reply.headers)
        payload: dict[str, Any] = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "model": body.get("model", "scripted"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": "stop",
                }
            ],
        }
        if reply.usage is not None:
            payload["usage"] = reply.usage
        return web.json_response(payload)
