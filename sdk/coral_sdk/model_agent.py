"""ModelAgent: host a model as a Coral agent, with lazy weights, batching and metrics.

Subclass and implement three hooks::

    class Doubler(ModelAgent[int, int]):
        def parse_request(self, payload):          # validate one request (raise to refuse)
            return int(payload["x"])
        def infer_batch(self, requests):           # runs in the batcher's worker thread
            return [2 * x for x in requests]
        def render(self, result):                   # JSON data part of the reply
            return {"y": result}

Concurrent mentions are queued into a ``DynamicBatcher`` so one model call
answers many; the model loads on the first batch (``load_model``), on CUDA
when present with bf16 autocast there. A request that cannot be parsed gets
an error reply ``{"error": {"reason", "detail"}}`` instead of silence.
Replicas: see ``ReplicaShard``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import unquote, urlparse

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from coral.coordination.model import ThreadEntry
from coral.protocol.agent import AgentManifest, AgentRecord, Price
from coral.protocol.errors import CoralError
from coral.protocol.identity import Identity
from coral.protocol.message import FilePart
from coral_sdk.agent import Agent, Incoming, Reply
from coral_sdk.client import CoralApiError
from coral_sdk.runtime.batcher import DynamicBatcher
from coral_sdk.types import Forwarded

log = logging.getLogger("coral_sdk.model_agent")

Req = TypeVar("Req")
Res = TypeVar("Res")


class RequestRejected(ValueError):
    """A request this agent will not run; ``reason`` is a machine-readable code."""

    def __init__(self, detail: str, reason: str = "invalid_request") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ReplicaShard:
    """Replica ``index`` of ``count`` sharing one agent identity and inbox.

    Every replica sees every mention; each answers only the messages whose id
    hashes to its index, so each request is handled by exactly one replica.
    """

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"replica index {self.index} is not in 0..{self.count - 1}")

    def owns(self, message_id: str) -> bool:
        """Whether this replica answers the message with this id (stable across processes)."""
        if self.count == 1:
            return True
        digest = hashlib.sha256(message_id.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index


def error_reply(reason: str, detail: str) -> dict[str, Any]:
    """The JSON data part of a refusal."""
    return {"error": {"reason": reason, "detail": detail}}


def request_payload(incoming: Incoming) -> Any:
    """The request inside a message: its first JSON data part, else a file reference, else text.

    Text that is a JSON object or list is parsed; a file part becomes ``{"file": path}``
    merged over a JSON data part when both are present.
    """
    data = incoming.data
    files = [p for p in incoming.message.parts if isinstance(p, FilePart)]
    if files:
        uri = urlparse(files[0].uri)
        path = unquote(uri.path) if uri.scheme == "file" else files[0].uri
        base = data[0] if data and isinstance(data[0], dict) else {}
        question = incoming.text.strip()
        extra = {"question": question} if question and "question" not in base else {}
        return {**base, **extra, "file": path}
    if data:
        return data[0]
    text = incoming.text.strip()
    if text[:1] in ("{", "["):
        with contextlib.suppress(ValueError):
            return json.loads(text)
    return text


class ModelAgent(Agent, Generic[Req, Res]):
    """A Coral agent that answers mentions with a model, batching concurrent requests."""

    #: Largest batch handed to ``infer_batch`` and how long to wait to fill one.
    max_batch_size: int = 16
    max_wait_ms: float = 5.0
    #: False for agents that never touch torch (then no device or autocast).
    uses_torch: bool = True
    concurrency: int = 32

    def __init__(
        self,
        node_url: str,
        *,
        key_file: str | Path | None = None,
        identity: Identity | None = None,
        manifest: AgentManifest | None = None,
        options: Mapping[str, Any] | None = None,
        replica: ReplicaShard | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self.replica = replica or ReplicaShard()
        super().__init__(node_url, key_file=key_file, identity=identity, manifest=manifest)
        self.options: dict[str, Any] = dict(options or {})
        self.metrics_port = metrics_port
        self.metrics_url: str | None = None
        self.device: Any = None
        self.model_loaded = False
        self.load_error: str | None = None
        self.registry = CollectorRegistry()
        name = self.manifest.name
        self._requests = Counter(
            "coral_model_agent_requests",
            "Requests by outcome",
            ["agent", "outcome"],
            registry=self.registry,
        )
        self._loaded_gauge = Gauge(
            "coral_model_agent_loaded",
            "1 once the model is loaded",
            ["agent"],
            registry=self.registry,
        ).labels(name)
        self.batcher: DynamicBatcher[Req, Res] = DynamicBatcher(
            self._run_batch,
            max_batch_size=int(self.options.get("max_batch_size", self.max_batch_size)),
            max_wait_ms=float(self.options.get("max_wait_ms", self.max_wait_ms)),
            registry=self.registry,
            name=name,
        )
        self._metrics_runner: web.AppRunner | None = None

    # -- override these ----------------------------------------------------

    def load_model(self, device: Any) -> None:
        """Load weights onto ``device`` (once, in the worker thread, before the first batch)."""

    def parse_request(self, payload: Any) -> Req:
        """Validate one request payload; raise ``RequestRejected`` (or ValueError) to refuse it."""
        raise NotImplementedError

    def infer_batch(self, requests: list[Req]) -> list[Res]:
        """Answer a batch, one result per request, in order (runs off the event loop)."""
        raise NotImplementedError

    def render(self, result: Res) -> dict[str, Any]:
        """The JSON data part of a successful reply."""
        return result if isinstance(result, dict) else {"result": result}

    def summarize(self, data: dict[str, Any]) -> str:
        """The short text part of a reply."""
        if "error" in data:
            return f"error ({data['error']['reason']}): {data['error']['detail']}"
        return f"{self.manifest.name}: done"

    async def answer(self, request: Req) -> Res:
        """Produce the result for one parsed request (default: through the batcher)."""
        return await self.batcher.submit(request)

    # -- the agent side ------------------------------------------------------

    @property
    def prices(self) -> tuple[Price, ...]:
        """The price list this agent registers (from its manifest)."""
        return self.manifest.prices

    def price_of(self, capability: str) -> Price | None:
        """The price of one unit of ``capability``, if the manifest lists one."""
        return next((p for p in self.manifest.prices if p.capability == capability), None)

    async def register(self) -> AgentRecord:
        """Register (waiting for the node if it is not up yet); a priced agent opens its account."""
        delay = 0.5
        while True:
            try:
                record = await super().register()
                break
            except OSError as exc:  # node not reachable (yet): launched agents may start first
                if self._stopping.is_set():
                    raise
                log.warning("%s: node unreachable (%s); retrying", self.manifest.name, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                if self._stopping.is_set():
                    raise
                delay = min(5.0, delay * 2)
        if any(price.amount > 0 for price in self.prices):
            from coral_sdk.ledger import LedgerClient

            try:
                await LedgerClient(self.client).balance()
            except (CoralApiError, OSError) as exc:
                log.warning("%s: could not open a ledger account: %s", self.manifest.name, exc)
        return record

    async def run(self) -> None:
        """Start the batcher (and metrics server), then serve mentions until ``stop()``."""
        await self.batcher.start()
        if self.metrics_port is not None:
            await self._start_metrics(self.metrics_port)
        try:
            await super().run()
        except OSError:
            if not self._stopping.is_set():
                raise
            # Stopped while still waiting for the node to come up: a clean exit.
            await self.client.close()
        finally:
            await self.batcher.aclose()
            if self._metrics_runner is not None:
                await self._metrics_runner.cleanup()
                self._metrics_runner = None

    async def on_mention(self, message: Incoming) -> Reply:
        """Answer the request in a mention owned by this replica (others are left to theirs)."""
        if not self.replica.owns(message.message.id):
            return None
        return await self.handle_payload(request_payload(message))

    async def handle_payload(self, payload: Any) -> dict[str, Any]:
        """Parse, answer through the model, render; an error reply for any refusal or failure."""
        started = time.perf_counter()
        try:
            request = self.parse_request(payload)
        except (RequestRejected, CoralError, ValueError) as exc:
            self._requests.labels(self.manifest.name, "rejected").inc()
            return error_reply(_reason_of(exc), _detail_of(exc))
        try:
            result = await self.answer(request)
        except Exception as exc:
            log.exception("%s: inference failed", self.manifest.name)
            self._requests.labels(self.manifest.name, "failed").inc()
            return error_reply("inference_failed", f"{type(exc).__name__}: {exc}")
        self._requests.labels(self.manifest.name, "answered").inc()
        log.debug("answered in %.1f ms", 1e3 * (time.perf_counter() - started))
        return self.render(result)

    async def reply(self, to: Incoming, reply: Reply) -> ThreadEntry | Forwarded:
        """Reply with a short text part plus the JSON data part, mentioning the sender."""
        if not isinstance(reply, dict):
            return await super().reply(to, reply)
        return await self.client.send(
            to.thread_id, self.summarize(reply), data=reply, mentions=[to.sender]
        )

    def health(self) -> dict[str, Any]:
        """Liveness and load: model state, device, queue depth and batch statistics."""
        stats = self.batcher.stats()
        status = "error" if self.load_error else "ok" if self.model_loaded else "idle"
        return {
            "agent": self.manifest.name,
            "did": self.did,
            "status": status,
            "load_error": self.load_error,
            "device": str(self.device) if self.device is not None else None,
            "replica": {"index": self.replica.index, "count": self.replica.count},
            "queue_depth": stats.queue_depth,
            "batches": stats.batches,
            "items": stats.items,
            "mean_batch_size": stats.mean_batch_size,
            "mean_latency_ms": stats.mean_latency_ms,
            "prices": [p.model_dump() for p in self.prices],
        }

    def metrics_text(self) -> bytes:
        """Prometheus exposition of this agent's metrics."""
        return generate_latest(self.registry)

    # -- internals -----------------------------------------------------------

    def _run_batch(self, requests: list[Req]) -> list[Res]:
        # Runs in the batcher's single worker thread, so loading happens once.
        if not self.model_loaded:
            self._load()
        if self.uses_torch:
            import torch

            from coral_sdk.runtime.device import autocast_for

            with torch.inference_mode(), autocast_for(self.device):
                return self.infer_batch(requests)
        return self.infer_batch(requests)

    def _load(self) -> None:
        try:
            if self.uses_torch:
                import torch

                from coral_sdk.runtime.device import pick_device

                threads = self.options.get("torch_threads")
                if threads:
                    torch.set_num_threads(int(threads))
                self.device = pick_device(self.options.get("device") or None)
            started = time.perf_counter()
            self.load_model(self.device)
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            raise
        self.model_loaded = True
        self.load_error = None
        self._loaded_gauge.set(1)
        log.info(
            "%s: model loaded on %s in %.2f s",
            self.manifest.name,
            self.device,
            time.perf_counter() - started,
        )

    def _cursor_path(self) -> Path | None:
        # Replicas share the key file but each keeps its own inbox cursor.
        path = super()._cursor_path()
        if path is None or self.replica.count == 1:
            return path
        # The name keeps ".cursor" last, so each replica's temporary file is distinct too.
        shard = f"replica-{self.replica.index}-of-{self.replica.count}"
        return path.with_name(f"{path.stem}.{shard}{path.suffix}")

    async def _start_metrics(self, port: int) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics_handler)
        app.router.add_get("/healthz", self._health_handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        self._metrics_runner = runner
        self.metrics_url = f"http://127.0.0.1:{bound}"
        log.info("%s: metrics at %s/metrics", self.manifest.name, self.metrics_url)

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics_text(), content_type="text/plain")

    async def _health_handler(self, request: web.Request) -> web.Response:
        health = self.health()
        return web.json_response(health, status=500 if health["status"] == "error" else 200)


def _reason_of(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return reason if isinstance(reason, str) and reason else "invalid_request"


def _detail_of(exc: Exception) -> str:
    detail = getattr(exc, "detail", None)
    return detail if isinstance(detail, str) and detail else str(exc)
