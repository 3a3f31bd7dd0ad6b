"""An a2a-sdk reference server (no Coral code) with a trivial executor, for tests and benchmarks.

It follows the SDK's own recipe: DefaultRequestHandler + InMemoryTaskStore,
Starlette JSON-RPC and REST routes under uvicorn, and the SDK's GrpcHandler.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import uvicorn
from a2a.helpers.proto_helpers import get_message_text, new_task
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler, GrpcHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes, create_rest_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import a2a_pb2, a2a_pb2_grpc
from starlette.applications import Starlette


class ReverseExecutor(AgentExecutor):
    """Answers with the text reversed, as one artifact, then completes."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None and context.task_id and context.context_id
        if context.current_task is None:
            await event_queue.enqueue_event(
                new_task(
                    context.task_id,
                    context.context_id,
                    a2a_pb2.TaskState.TASK_STATE_SUBMITTED,
                    history=[context.message],
                )
            )
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        text = get_message_text(context.message)
        await updater.add_artifact([a2a_pb2.Part(text=text[::-1])], name="response")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id and context.context_id
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


@dataclass
class ReferenceServer:
    """Where the running reference server listens."""

    http: str
    grpc: str

    @property
    def card_url(self) -> str:
        return f"{self.http}/.well-known/agent-card.json"


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def reference_server(name: str = "Reverser Agent") -> AsyncIterator[ReferenceServer]:
    """Run the reference server on 127.0.0.1 (HTTP and gRPC) for the block."""
    sock = _free_socket()
    http = f"http://127.0.0.1:{sock.getsockname()[1]}"
    grpc_server = grpc.aio.server()
    grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
    address = f"127.0.0.1:{grpc_port}"
    card = a2a_pb2.AgentCard(
        name=name,
        description="reverses text",
        version="1.0.0",
        supported_interfaces=[
            a2a_pb2.AgentInterface(
                url=f"{http}/jsonrpc", protocol_binding="JSONRPC", protocol_version="1.0"
            ),
            a2a_pb2.AgentInterface(
                url=f"{http}/rest", protocol_binding="HTTP+JSON", protocol_version="1.0"
            ),
            a2a_pb2.AgentInterface(url=address, protocol_binding="GRPC", protocol_version="1.0"),
        ],
        capabilities=a2a_pb2.AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            a2a_pb2.AgentSkill(
                id="reverse", name="reverse", description="reverses text", tags=["text"]
            )
        ],
    )
    handler = DefaultRequestHandler(
        agent_executor=ReverseExecutor(), task_store=InMemoryTaskStore(), agent_card=card
    )
    routes = create_agent_card_routes(agent_card=card)
    routes += create_jsonrpc_routes(request_handler=handler, rpc_url="/jsonrpc")
    routes += create_rest_routes(request_handler=handler, path_prefix="/rest")
    config = uvicorn.Config(Starlette(routes=routes), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    a2a_pb2_grpc.add_A2AServiceServicer_to_server(GrpcHandler(handler), grpc_server)  # type: ignore[no-untyped-call]
    await grpc_server.start()
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield ReferenceServer(http, address)
    finally:
        server.should_exit = True
        await serving
        await grpc_server.stop(0)
        sock.close()


async def _serve_forever() -> None:
    import json
    import sys

    async with reference_server() as server:
        print(json.dumps({"http": server.http, "grpc": server.grpc}), flush=True)
        await asyncio.Event().wait() if sys.stdin is None else await asyncio.to_thread(
            sys.stdin.read
        )


if __name__ == "__main__":
    # Serves until stdin closes; prints {"http", "grpc"} once listening (used by benchmarks).
    asyncio.run(_serve_forever())
