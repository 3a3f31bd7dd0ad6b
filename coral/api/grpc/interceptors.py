"""Server interceptor applied once to every gRPC method, ours and third parties'.

It takes over request decoding, so bytes that are not the method's protobuf
are a client error (INVALID_ARGUMENT ``malformed_protobuf``, logged at info
without a traceback) instead of grpc's UNKNOWN with a logged stack trace. It
also maps what a handler lets escape: typed errors to their status, storage
failures to UNAVAILABLE ``storage_unavailable``; anything else stays a bare
INTERNAL with the traceback in the node's log.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeAlias

import grpc
from google.protobuf.message import DecodeError

from coral.api.errors import GRPC_REASON_KEY, as_coral_error, grpc_status
from coral.metrics import NodeMetrics
from coral.protocol.errors import CoralError, MalformedProtobuf

log = logging.getLogger("coral.grpc")

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class ClientErrorsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Decode requests and map escaping errors for every unary and server-streaming method."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler
        method = str(handler_call_details.method)
        # Only asynchronous handlers: grpc runs synchronous ones (the health
        # servicer's) on its thread pool, which a wrapper here would bypass.
        if inspect.iscoroutinefunction(handler.unary_unary):
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, handler.request_deserializer, method),
                response_serializer=handler.response_serializer,
            )
        if inspect.isasyncgenfunction(handler.unary_stream) or inspect.iscoroutinefunction(
            handler.unary_stream
        ):
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, handler.request_deserializer, method),
                response_serializer=handler.response_serializer,
            )
        return handler

    def _unary(
        self, inner: Callable[..., Any], deserialize: Callable[[bytes], Any] | None, method: str
    ) -> Callable[[bytes, Context], Awaitable[Any]]:
        async def unary(raw: bytes, context: Context) -> Any:
            request = await self._decode(raw, deserialize, context, method)
            try:
                return await inner(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await self._escaped(exc, context, method)

        return unary

    def _streaming(
        self, inner: Callable[..., Any], deserialize: Callable[[bytes], Any] | None, method: str
    ) -> Callable[[bytes, Context], AsyncIterator[Any]]:
        async def streaming(raw: bytes, context: Context) -> AsyncIterator[Any]:
            request = await self._decode(raw, deserialize, context, method)
            try:
                result = inner(request, context)
                if inspect.isasyncgen(result):
                    async for item in result:
                        yield item
                else:  # a coroutine that writes through context.write
                    await result
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await self._escaped(exc, context, method)

        return streaming

    async def _decode(
        self, raw: bytes, deserialize: Callable[[bytes], Any] | None, context: Context, method: str
    ) -> Any:
        if deserialize is None:
            return raw
        try:
            return deserialize(raw)
        except (DecodeError, RuntimeError, ValueError) as exc:
            log.info("undecodable request to %s from %s: %s", method, context.peer(), exc)
            await self._abort(context, MalformedProtobuf(f"cannot parse the request: {exc}"))

    async def _escaped(self, exc: Exception, context: Context, method: str) -> NoReturn:
        error = as_coral_error(exc)
        if error is None:
            log.exception("unhandled error in %s", method)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            raise AssertionError("context.abort returned")
        if error.category == "unavailable":
            log.warning("%s: %s", method, error.detail)
        await self._abort(context, error)

    async def _abort(self, context: Context, error: CoralError) -> NoReturn:
        self.metrics.rejections.labels("grpc", error.reason).inc()
        context.set_trailing_metadata(((GRPC_REASON_KEY, error.reason),))
        await context.abort(grpc_status(error), f"{error.reason}: {error.detail}")
        raise AssertionError("context.abort returned")
