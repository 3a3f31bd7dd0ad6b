"""Builds the grpc.aio server: coral.v1 services, health and reflection."""

from __future__ import annotations

from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from coral.api.context import NodeContext
from coral.api.grpc.auth import unruled_methods
from coral.api.grpc.interceptors import CoralServerInterceptor
from coral.api.grpc.node_service import NodeServicer
from coral.v1 import node_pb2, node_pb2_grpc

ServiceInstaller = Callable[[grpc.aio.Server, NodeContext], list[str]]


def build_grpc_server(
    ctx: NodeContext, installers: list[ServiceInstaller] | None = None
) -> tuple[grpc.aio.Server, health.HealthServicer, list[str]]:
    """Create (not start) the server; installers add services and return their full names.

    One interceptor decodes, authenticates, maps errors and counts every call.

    Raises:
        ValueError: an installed coral.v1 method has no caller rule in
            ``coral.api.grpc.auth.METHOD_RULES``.
    """
    max_bytes = ctx.verifier.limits.max_message_bytes * 2 + 4096
    server = grpc.aio.server(
        interceptors=[CoralServerInterceptor(ctx)],
        options=[
            ("grpc.max_receive_message_length", max_bytes),
            ("grpc.max_send_message_length", 16 * 1024 * 1024),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.max_connection_idle_ms", 300_000),
            # grpc enables SO_REUSEPORT by default: a second node on the same port would then
            # bind silently and take a share of this node's calls. Fail its start instead.
            ("grpc.so_reuseport", 0),
        ],
    )
    node_pb2_grpc.add_NodeServiceServicer_to_server(NodeServicer(ctx), server)
    names = [node_pb2.DESCRIPTOR.services_by_name["NodeService"].full_name]
    for install in installers or []:
        names.extend(install(server, ctx))
    missing = unruled_methods(names)
    if missing:
        raise ValueError(f"gRPC methods without a caller rule: {', '.join(missing)}")
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    for name in ["", *names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    return server, health_servicer, names


def set_serving(health_servicer: health.HealthServicer, names: list[str], serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ["", *names]:
        health_servicer.set(name, status)
