"""Serve HTTP routes and gRPC services that are built after the servers have started.

aiohttp freezes its router and grpc.aio its service table when they start;
these adapters are installed before that and forward to what is loaded later:

- ``LazyRoutes``: one catch-all route (or routes for named paths), resolved
  against an inner aiohttp app once it is loaded (requests that arrive earlier
  wait for it; paths that match nothing there are 404 as before).
- ``LazyGrpcServices``: a generic handler for named services; calls that
  arrive before the services load wait for them, then run the real handler.
- ``LazyServicer``: stands in for a servicer of unary methods, registered with
  its generated ``add_*Servicer_to_server`` (so interceptors see ordinary
  handlers); each call waits for the real servicer, then runs its method.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web

#: Longest a request waits for the late routes before it is refused (503).
LOAD_WAIT_S = 60.0


class LazyRoutes:
    """A catch-all route that serves an inner app's routes once that app is loaded."""

    def __init__(self) -> None:
        self._inner: web.Application | None = None
        self._loaded: asyncio.Future[web.Application] | None = None
        self._bound = False

    def _future(self) -> asyncio.Future[web.Application]:
        if self._loaded is None:
            self._loaded = asyncio.get_running_loop().create_future()
        return self._loaded

    @property
    def loaded_app(self) -> web.Application | None:
        """The inner app once loaded (its routes are the ones this route serves), else None."""
        return self._inner

    def install(self, app: web.Application) -> None:
        """Add the catch-all route (last resort: every other route of ``app`` matches first)."""
        app.router.add_route("*", "/{coral_late_path:.*}", self._dispatch)

    def install_paths(self, app: web.Application, paths: tuple[str, ...]) -> None:
        """Route ``paths`` (and everything below each; ``/`` only itself) to the inner app.

        More specific routes of ``app`` still match first (aiohttp tries the
        longest path prefix first), and so do these before a catch-all.
        """
        self._bound = True
        for path in paths:
            if path == "/":  # the root alone: a tail here would take every path
                app.router.add_route("*", "/", self._dispatch)
                continue
            base = path.rstrip("/")
            app.router.add_route("*", base, self._dispatch)
            app.router.add_route("*", base + "/{coral_late_path:.*}", self._dispatch)

    def load(self, inner: web.Application) -> None:
        """Serve ``inner``'s routes from now on; waiting requests proceed."""
        inner.freeze()
        self._inner = inner
        if not self._future().done():
            self._future().set_result(inner)

    def fail(self, error: BaseException) -> None:
        """Loading failed: waiting and later requests get 503."""
        if not self._future().done():
            self._future().set_exception(error)
            self._future().exception()  # retrieved here; each waiter sees it too

    async def ready(self) -> None:
        """Wait until the inner app is loaded (raises what loading raised)."""
        await asyncio.shield(self._future())

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        # Routes added to the app after this one (same index key, e.g. "/") come first:
        # the catch-all must not shadow them, nor make them wait for the late routes.
        later = None if self._bound else await _resolve_elsewhere(request, self._dispatch)
        if later is not None:
            later.add_app(request.app)
            return await _call(request, later)
        inner = self._inner
        if inner is None:
            try:
                inner = await asyncio.wait_for(asyncio.shield(self._future()), LOAD_WAIT_S)
            except TimeoutError:
                raise web.HTTPServiceUnavailable(text="still starting; retry") from None
            except asyncio.CancelledError:
                raise
            except Exception:
                raise web.HTTPServiceUnavailable(text="this front door failed to load") from None
        match = await inner.router.resolve(request)
        if match.http_exception is not None:
            if isinstance(match.http_exception, web.HTTPNotFound):
                await _refuse_like_the_outer_router(request)
            raise match.http_exception
        match.add_app(inner)
        # As for a sub-app: handlers see ``inner`` as their app, and the node app's
        # keys (shutdown bookkeeping) through ``request.config_dict``.
        match.add_app(request.app)
        return await _call(request, match)


async def _call(request: web.Request, match: Any) -> web.StreamResponse:
    # aiohttp has no public way to re-route a request: a clone (fresh cached
    # properties, same body stream) gets the new match, as Application._handle
    # would set it, so handlers see their own match_info and app.
    match.freeze()
    routed = request.clone()
    routed._match_info = match
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]] = match.handler
    return await handler(routed)


async def _resolve_elsewhere(request: web.Request, skip: Any) -> Any:
    """The match of another route of ``request.app`` for this request, or None."""
    for resource in request.app.router.resources():
        if any(route.handler == skip for route in resource):
            continue
        match, _ = await resource.resolve(request)
        if match is not None:
            return match
    return None


async def _refuse_like_the_outer_router(request: web.Request) -> None:
    """405 when another route of the app has this path under other methods (as without us)."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        match, methods = await resource.resolve(request)
        if match is None and methods and "*" not in methods:
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)


class RecordingServer:
    """Stands in for a grpc.aio server to collect the handlers an installer adds."""

    def __init__(self) -> None:
        self.generic: list[grpc.GenericRpcHandler] = []
        self.methods: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        """Record generic handlers (what generated ``add_*Servicer_to_server`` calls)."""
        self.generic.extend(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        """Record per-method handlers under their full method paths."""
        for method, handler in handlers.items():
            self.methods[f"/{service}/{method}"] = handler


class LazyGrpcServices(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Serves calls to ``services`` with handlers loaded later (``load``)."""

    def __init__(self, services: list[str], wait: Callable[[], Awaitable[None]]) -> None:
        self.prefixes = tuple(f"/{s}/" for s in services)
        self._wait = wait
        self._loaded: RecordingServer | None = None

    def load(self, recorded: RecordingServer) -> None:
        """Serve with the handlers an installer added to ``recorded``."""
        self._loaded = recorded

    def _lookup(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        assert self._loaded is not None
        found = self._loaded.methods.get(details.method)
        if found is not None:
            return found
        for handler in self._loaded.generic:
            found = handler.service(details)
            if found is not None:
                return found
        return None

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        """The real handler once loaded; before that, one that waits for it."""
        if self._loaded is not None:
            return self._lookup(handler_call_details)
        if not handler_call_details.method.startswith(self.prefixes):
            return None

        async def relay(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
            await self._wait()
            real = self._lookup(handler_call_details)
            if real is None:
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, "method not found")
                return
            async for raw in _run(real, requests, context):
                yield raw

        return grpc.stream_stream_rpc_method_handler(relay)


async def _run(
    real: grpc.RpcMethodHandler, requests: AsyncIterator[bytes], context: Any
) -> AsyncIterator[bytes]:
    """Run ``real`` on raw request bytes, yielding raw response bytes."""
    decode = real.request_deserializer or (lambda b: b)
    encode = real.response_serializer or (lambda m: m)

    async def decoded() -> AsyncIterator[Any]:
        async for raw in requests:
            yield decode(raw)

    if real.request_streaming:
        argument: Any = decoded()
    else:
        argument = None
        async for first in decoded():
            argument = first
            break
    if real.response_streaming:
        method = real.stream_stream if real.request_streaming else real.unary_stream
        async for response in method(argument, context):
            yield encode(response)
    else:
        method = real.stream_unary if real.request_streaming else real.unary_unary
        yield encode(await method(argument, context))


class LazyServicer:
    """A servicer whose unary methods wait for the real servicer, then call it.

    Pass it to the generated ``add_*Servicer_to_server``: each method becomes an
    ordinary unary handler (so interceptors, decoding and caller rules apply as
    for any other service), and a call that arrives before ``load`` waits for it.
    Only for services whose methods are all unary-unary.
    """

    def __init__(self, wait: Callable[[], Awaitable[None]]) -> None:
        self._wait = wait
        self._real: Any = None

    def load(self, real: Any) -> None:
        """Serve calls with ``real`` from now on."""
        self._real = real

    def __getattr__(self, name: str) -> Callable[[Any, Any], Awaitable[Any]]:
        if name.startswith("_"):
            raise AttributeError(name)

        async def call(request: Any, context: Any) -> Any:
            if self._real is None:
                await self._wait()
            return await getattr(self._real, name)(request, context)

        call.__name__ = name
        return call
