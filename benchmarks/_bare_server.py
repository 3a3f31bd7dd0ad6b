"""The startup baseline: a bare grpc.aio server plus an aiohttp app answering /healthz.

Run: python benchmarks/_bare_server.py GRPC_PORT HTTP_PORT  (serves until killed)
"""

from __future__ import annotations

import asyncio
import sys

import grpc
from aiohttp import web


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def serve(grpc_port: int, http_port: int) -> None:
    server = grpc.aio.server()
    server.add_insecure_port(f"127.0.0.1:{grpc_port}")
    await server.start()
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", http_port).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2])))
