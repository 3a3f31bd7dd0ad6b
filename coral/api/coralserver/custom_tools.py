"""The HTTP client side of graph custom tools and session-end webhooks (aiohttp)."""

from __future__ import annotations

import aiohttp


class AppClient:
    """One aiohttp session for calls from the node to apps (custom tools, webhooks)."""

    def __init__(self, timeout_s: float = 60.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        """POST ``body``; the status and the response text."""
        async with self._client().post(url, data=body, headers=headers) as response:
            return response.status, await response.text()

    async def post_webhook(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        """POST a webhook; raises when the receiver does not answer 2xx."""
        status, _ = await self.post(url, body, headers)
        if status >= 300:
            raise RuntimeError(f"HTTP {status}")

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None
