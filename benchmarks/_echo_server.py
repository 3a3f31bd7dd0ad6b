"""A bare grpc.aio echo server in its own process: the baseline routing is compared with.

Run: python benchmarks/_echo_server.py  (prints its port, serves until killed)

Method ``/bench.Echo/Echo`` returns the request bytes unchanged (unary) and
``/bench.Echo/Stream`` echoes each message of a bidirectional stream. It uses
the same event loop policy as the node (uvloop when installed), so the
comparison isolates what the node does beyond gRPC itself.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc


async def _stream(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request


async def _unary(request: bytes, context: Any) -> bytes:
    return request


async def serve() -> None:
    server = grpc.aio.server()
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(_unary),
        "Stream": grpc.stream_stream_rpc_method_handler(_stream),
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
