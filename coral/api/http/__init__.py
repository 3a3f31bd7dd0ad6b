"""The aiohttp HTTP/JSON adapter."""
