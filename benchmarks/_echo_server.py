"""A bare grpc.aio echo server in its own process: the baseline routing is compared with.

Run: python benchmarks/_echo_server.py  (prints its port, serves until killed)

Method ``/bench.Echo/Echo`` returns the request bytes unchanged (unary) and
``/bench.Echo/Stream`` echoes each message of a bidirectional stream. A bare
relay does the gRPC work a routed message costs the node and nothing else:
``/bench.Echo/Listen`` (server stream; the request is a key) receives every
``/bench.Echo/Relay`` request (unary, answered with itself) whose bytes start
with that key and a newline. It uses the same event loop policy as the node
(uvloop when installed), so the comparison isolates what the node does beyond
gRPC itself.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc


async def _stream(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request


async def _unary(request: bytes, context: Any) -> bytes:
    return request


_listeners: dict[bytes, asyncio.Queue[bytes]] = {}


async def _listen(key: bytes, context: Any) -> AsyncIterator[bytes]:
    queue = _listeners.setdefault(key, asyncio.Queue())
    try:
        while True:
            yield await queue.get()
    finally:
        _listeners.pop(key, None)


async def _relay(request: bytes, context: Any) -> bytes:
    queue = _listeners.get(request.partition(b"\n")[0])
    if queue is not None:
        queue.put_nowait(request)
    return request


async def serve() -> None:
    server = grpc.aio.server()
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(_unary),
        "Stream": grpc.stream_stream_rpc_method_handler(_stream),
        "Relay": grpc.unary_unary_rpc_method_handler(_relay),
        "Listen": grpc.unary_stream_rpc_method_handler(_listen),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    from coral.node.eventloop import run

    run(serve())
