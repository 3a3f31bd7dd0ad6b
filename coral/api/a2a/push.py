"""A2A push notifications: webhook target policy and authenticated delivery with retries.

A webhook URL is accepted only when every address its host resolves to is
public, or the host / address is on the operator's allow-list
(``[a2a] push_allow``: host names, addresses or CIDR ranges). Loopback,
private, link-local, multicast and reserved ranges are refused otherwise, so
the node cannot be used to reach internal services. The policy is checked
when a config is created and again at each delivery (DNS may change).

Each notification is a ``StreamResponse`` JSON POST carrying the config's
``token`` as ``X-A2A-Notification-Token`` and, when the config has
``authentication``, ``Authorization: <scheme> <credentials>``. A failed
delivery (network error or 5xx/429) is retried with exponential back-off.
Delivery runs beside the task (one ordered queue per task), so a slow or
dead webhook never holds up the task's state changes or its streams.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx
from a2a.server.tasks import PushNotificationConfigStore, PushNotificationSender
from a2a.server.tasks.push_notification_sender import PushNotificationEvent
from a2a.types import a2a_pb2
from a2a.utils.proto_utils import to_stream_response
from google.protobuf.json_format import MessageToDict

log = logging.getLogger("coral.a2a.push")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class WebhookPolicy:
    """Which webhook URLs the node may call."""

    def __init__(self, allow: Sequence[str] = ()) -> None:
        self.hosts: set[str] = set()
        self.networks: list[IpNetwork] = []
        for entry in allow:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower().rstrip("."))

    def _address_allowed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if any(ip in net for net in self.networks):
            return True
        return ip.is_global and not ip.is_multicast

    async def allows(self, url: str) -> bool:
        """True when ``url`` is http(s) and its host is public or allow-listed."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower().rstrip(".")
            port = parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not host:
            return False
        if host in self.hosts:
            return True
        try:
            return self._address_allowed(host)
        except ValueError:
            pass  # a name: check what it resolves to
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port or 443, type=socket.SOCK_STREAM
            )
        except OSError:
            return False
        addresses = {str(info[4][0]) for info in infos}
        return bool(addresses) and all(self._address_allowed(a) for a in addresses)


class RetryingPushSender(PushNotificationSender):
    """Delivers task events to every registered webhook of the task."""

    def __init__(
        self,
        configs: PushNotificationConfigStore,
        policy: WebhookPolicy,
        *,
        attempts: int = 3,
        first_delay_s: float = 0.5,
        timeout_s: float = 10.0,
    ) -> None:
        self.configs = configs
        self.policy = policy
        self.attempts = attempts
        self.first_delay_s = first_delay_s
        self.client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self._queues: dict[str, asyncio.Queue[PushNotificationEvent]] = {}
        self._workers: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Stop delivering (pending notifications are dropped) and close the HTTP client."""
        for worker in list(self._workers):
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        await self.client.aclose()

    async def send_notification(self, task_id: str, event: PushNotificationEvent) -> None:
        """Queue ``event`` for the task's webhooks; returns at once, never raises."""
        queue = self._queues.get(task_id)
        if queue is None:
            queue = self._queues[task_id] = asyncio.Queue()
            worker = asyncio.create_task(self._drain(task_id, queue), name=f"push-{task_id}")
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        queue.put_nowait(event)

    async def _drain(self, task_id: str, queue: asyncio.Queue[PushNotificationEvent]) -> None:
        try:
            while not queue.empty():
                event = queue.get_nowait()
                try:
                    configs = await self.configs.get_info_for_dispatch(task_id)
                    if not configs:
                        continue  # most tasks have no webhook: skip building the body
                    body = MessageToDict(to_stream_response(event))
                    for config in configs:
                        await self._deliver(config, body)
                except Exception:
                    log.exception("push delivery for task %s failed", task_id)
        finally:
            del self._queues[task_id]

    async def _deliver(
        self, config: a2a_pb2.TaskPushNotificationConfig, body: dict[str, object]
    ) -> bool:
        if not await self.policy.allows(config.url):
            log.warning("push to %s refused: the target is not allowed", config.url)
            return False
        headers = {"Content-Type": "application/json"}
        if config.token:
            headers["X-A2A-Notification-Token"] = config.token
        auth = config.authentication
        if config.HasField("authentication") and auth.scheme:
            headers["Authorization"] = f"{auth.scheme} {auth.credentials}".strip()
        delay = self.first_delay_s
        for attempt in range(1, self.attempts + 1):
            try:
                response = await self.client.post(config.url, json=body, headers=headers)
                if response.status_code < 300:
                    return True
                if response.status_code < 500 and response.status_code != 429:
                    log.warning("push to %s refused with %s", config.url, response.status_code)
                    return False
                reason = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                reason = type(exc).__name__
            if attempt < self.attempts:
                await asyncio.sleep(delay)
                delay *= 2
        log.warning("push to %s failed after %d attempts (%s)", config.url, self.attempts, reason)
        return False
