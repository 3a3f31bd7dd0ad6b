"""The server interceptor applied once to every gRPC method, ours and third parties'.

For each asynchronous unary-unary and unary-stream method, and each coral.v1
bidirectional-streaming one (``SubmitStream``), it:

- decodes the request itself, so bytes that are not the method's protobuf are
  a client error (INVALID_ARGUMENT ``malformed_protobuf``, logged at info
  without a traceback) instead of grpc's UNKNOWN with a logged stack trace;
  on a request stream, each request as it is read (a bad one ends the stream);
- checks the caller rule of coral.v1 methods (``coral.api.grpc.auth``) before
  the handler runs (a request stream's signature covers an empty body);
- maps what a handler lets escape: typed errors to their status with the
  reason in ``coral-reason`` trailing metadata, storage failures to
  UNAVAILABLE ``storage_unavailable``; anything else is a bare INTERNAL with
  the traceback in the node's log;
- counts the call in ``coral_requests{api="grpc", method, status}`` (and
  unary calls in ``coral_request_seconds``; a stream's lifetime is not a
  latency) and refusals in ``coral_rejections``.

A cancelled call (client gone, deadline, shutdown) is counted with status
``CANCELLED``, is neither a rejection nor logged, and the cancellation keeps
propagating. Synchronous handlers (the health servicer's, run on grpc's thread
pool) and the other request-streaming ones (reflection) pass through untouched.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, NoReturn, TypeAlias

import grpc
from google.protobuf.message import DecodeError

from coral.api.context import NodeContext
from coral.api.errors import GRPC_REASON_KEY, as_coral_error, grpc_status
from coral.api.grpc.auth import METHOD_RULES, Rule, authenticate_call
from coral.protocol.errors import CoralError, MalformedProtobuf

log = logging.getLogger("coral.grpc")

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
Deserializer: TypeAlias = Callable[[bytes], Any] | None

#: The ``status`` label of a call cancelled before it finished.
CANCELLED = "CANCELLED"
#: The ``status`` label of a call its handler ended with ``context.abort``.
ABORTED_BY_HANDLER = "ABORTED_BY_HANDLER"


class CoralServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Decoding, caller rules, error mapping and metrics for every method, in one place."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.metrics = ctx.metrics
        # method path -> (the handler grpc found, our wrapper of it): one wrapper per
        # method instead of one per call.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """The wrapped handler of the called method (grpc's own when we leave it alone)."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = str(handler_call_details.method)
        if handler.request_streaming and method not in METHOD_RULES:
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        rule = METHOD_RULES.get(method, Rule.PUBLIC)
        deserialize = handler.request_deserializer
        if inspect.iscoroutinefunction(handler.unary_unary):
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, deserialize, method, rule),
                response_serializer=handler.response_serializer,
            )
        if inspect.isasyncgenfunction(handler.unary_stream) or inspect.iscoroutinefunction(
            handler.unary_stream
        ):
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, deserialize, method, rule),
                response_serializer=handler.response_serializer,
            )
        if inspect.isasyncgenfunction(handler.stream_stream):
            return grpc.stream_stream_rpc_method_handler(
                self._bidi(handler.stream_stream, deserialize, method, rule),
                response_serializer=handler.response_serializer,
            )
        return handler

    def _unary(
        self, inner: Callable[..., Any], deserialize: Deserializer, method: str, rule: Rule
    ) -> Callable[[bytes, Context], Awaitable[Any]]:
        label = method.rsplit("/", 1)[-1]
        requests = self.metrics.requests
        seconds = self.metrics.request_seconds.labels("grpc")
        ok = requests.labels("grpc", label, "OK")  # looked up once: most calls end OK

        async def unary(raw: bytes, context: Context) -> Any:
            started = time.perf_counter()
            status = "OK"
            try:
                request = self._admit(raw, deserialize, context, method, rule)
                return await inner(request, context)
            except asyncio.CancelledError:
                status = CANCELLED
                raise
            except grpc.aio.AbortError:
                status = ABORTED_BY_HANDLER
                raise
            except Exception as exc:
                error = as_coral_error(exc)
                status = "INTERNAL" if error is None else grpc_status(error).name
                await self._abort(context, method, error)
            finally:
                (ok if status == "OK" else requests.labels("grpc", label, status)).inc()
                if status != CANCELLED:
                    seconds.observe(time.perf_counter() - started)

        return unary

    def _streaming(
        self, inner: Callable[..., Any], deserialize: Deserializer, method: str, rule: Rule
    ) -> Callable[[bytes, Context], AsyncIterator[Any]]:
        label = method.rsplit("/", 1)[-1]
        requests = self.metrics.requests

        async def streaming(raw: bytes, context: Context) -> AsyncIterator[Any]:
            status = "OK"
            try:
                request = self._admit(raw, deserialize, context, method, rule)
                result = inner(request, context)
                if inspect.isasyncgen(result):
                    # aclosing: the handler's own cleanup (a wait slot) runs when the
                    # call ends, not when the generator is collected.
                    async with aclosing(result):
                        async for item in result:
                            yield item
                else:  # a coroutine that writes through context.write
                    await result
            except (asyncio.CancelledError, GeneratorExit):
                status = CANCELLED
                raise
            except grpc.aio.AbortError:
                status = ABORTED_BY_HANDLER
                raise
            except Exception as exc:
                error = as_coral_error(exc)
                status = "INTERNAL" if error is None else grpc_status(error).name
                await self._abort(context, method, error)
            finally:
                requests.labels("grpc", label, status).inc()

        return streaming

    def _bidi(
        self, inner: Callable[..., Any], deserialize: Deserializer, method: str, rule: Rule
    ) -> Callable[[AsyncIterator[bytes], Context], AsyncIterator[Any]]:
        label = method.rsplit("/", 1)[-1]
        requests = self.metrics.requests

        async def decoded(raw: AsyncIterator[bytes], context: Context) -> AsyncIterator[Any]:
            async for frame in raw:
                yield self._decode(frame, deserialize, context, method)

        async def bidi(raw: AsyncIterator[bytes], context: Context) -> AsyncIterator[Any]:
            status = "OK"
            try:
                self._authenticate(context, method, rule, b"")
                # aclosing: the handler's cleanup runs when the call ends, not at GC.
                async with aclosing(inner(decoded(raw, context), context)) as result:
                    async for item in result:
                        yield item
            except (asyncio.CancelledError, GeneratorExit):
                status = CANCELLED
                raise
            except grpc.aio.AbortError:
                status = ABORTED_BY_HANDLER
                raise
            except Exception as exc:
                error = as_coral_error(exc)
                status = "INTERNAL" if error is None else grpc_status(error).name
                await self._abort(context, method, error)
            finally:
                # A client that cancels between two requests ends the request stream as if
                # it had finished writing: such a stream ends, and is counted, as OK.
                requests.labels("grpc", label, status).inc()

        return bidi

    def _admit(
        self, raw: bytes, deserialize: Deserializer, context: Context, method: str, rule: Rule
    ) -> Any:
        """The decoded request once its caller passed the method's rule."""
        request = self._decode(raw, deserialize, context, method)
        self._authenticate(context, method, rule, raw)
        return request

    @staticmethod
    def _decode(raw: bytes, deserialize: Deserializer, context: Context, method: str) -> Any:
        """The method's protobuf from ``raw``; MalformedProtobuf when it is not one."""
        if deserialize is None:
            return raw
        try:
            return deserialize(raw)
        except (DecodeError, RuntimeError, ValueError) as exc:
            log.info("undecodable request to %s from %s: %s", method, context.peer(), exc)
            raise MalformedProtobuf(f"cannot parse the request: {exc}") from None

    def _authenticate(self, context: Context, method: str, rule: Rule, body: bytes) -> None:
        if rule is not Rule.PUBLIC:
            metadata = {key: str(value) for key, value in context.invocation_metadata() or ()}
            authenticate_call(self.ctx, rule, metadata, method, body)

    async def _abort(self, context: Context, method: str, error: CoralError | None) -> NoReturn:
        """Abort the call for what its handler let escape (``None``: a server bug)."""
        if error is None:
            log.exception("unhandled error in %s", method)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            raise AssertionError("context.abort returned")
        if error.category == "unavailable":
            log.warning("%s: %s", method, error.detail)
        self.metrics.rejections.labels("grpc", error.reason).inc()
        context.set_trailing_metadata(((GRPC_REASON_KEY, error.reason),))
        await context.abort(grpc_status(error), f"{error.reason}: {error.detail}")
        raise AssertionError("context.abort returned")
