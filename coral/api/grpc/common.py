"""Shared pieces of the gRPC adapter: error mapping and metrics."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from coral.api.context import NodeContext
from coral.api.errors import GRPC_REASON_KEY, as_coral_error, grpc_status
from coral.protocol.errors import CoralError

log = logging.getLogger("coral.grpc")

T = TypeVar("T")


async def abort_with(
    context: grpc.aio.ServicerContext[Any, Any], ctx: NodeContext, error: CoralError
) -> NoReturn:
    """Abort the call with the mapped status; the reason travels in trailing metadata."""
    ctx.metrics.rejections.labels("grpc", error.reason).inc()
    context.set_trailing_metadata(((GRPC_REASON_KEY, error.reason),))
    await context.abort(grpc_status(error), f"{error.reason}: {error.detail}")
    raise AssertionError("context.abort returned")


def rpc(method: str) -> Callable[[Callable[..., Awaitable[T]]], Callable[..., Awaitable[T]]]:
    """Decorate a servicer method: typed errors -> status codes, metrics, no stack traces."""

    def wrap(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        @functools.wraps(fn)
        async def handler(
            self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> T:
            ctx: NodeContext = self.ctx
            started = time.perf_counter()
            status = "OK"
            try:
                return await fn(self, request, context)
            except CoralError as exc:
                status = grpc_status(exc).name
                await abort_with(context, ctx, exc)
            except grpc.aio.AbortError:
                status = "ABORTED_BY_HANDLER"
                raise
            except Exception as exc:
                storage = as_coral_error(exc)
                if storage is not None:  # the database cannot serve: UNAVAILABLE
                    status = grpc_status(storage).name
                    log.warning("%s: %s", method, storage.detail)
                    await abort_with(context, ctx, storage)
                status = "INTERNAL"
                log.exception("unhandled error in %s", method)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")
                raise AssertionError("context.abort returned") from None
            finally:
                ctx.metrics.requests.labels("grpc", method, status).inc()
                ctx.metrics.request_seconds.labels("grpc").observe(time.perf_counter() - started)

        return handler

    return wrap
