"""Host and Origin checks for the browser-facing surfaces (dashboard, MCP endpoints).

A web page the operator opens can make the browser send requests to the
node's loopback port: directly (the Origin header then names the page) or by
DNS rebinding, where the page's own name resolves to 127.0.0.1 (the Host header
then names the attacker's domain). Both are refused here. A request passes when
its Host names this node, and its Origin, if it has one, names this node too.

"This node" is: the loopback names, the bound address (any IP literal when
bound to a wildcard address, since every interface is then an address of the
node), the advertised host, and the operator's ``allowed_hosts``. Ports are not
compared: rebinding changes the name, never the port, and local tools such as
the MCP Inspector serve their page from another loopback port. An IP-literal
Host cannot come from rebinding, but it is still checked against the bound
address so a proxy mistake shows up rather than hides.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from coral.config import Config
from coral.protocol.errors import Forbidden

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
#: An ``allowed_hosts`` entry that turns the checks off (behind a proxy that rewrites Host).
ANY_HOST = "*"


class HostNotAllowed(Forbidden):
    """The request's Host or Origin does not name this node (DNS rebinding or cross-site)."""

    reason = "host_not_allowed"


def _hostname(value: str) -> str | None:
    """The lower-cased host of a ``Host`` header value (``name[:port]``, ``[v6][:port]``)."""
    value = value.strip().lower()
    if not value:
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (len(value) > end + 1 and value[end + 1] != ":"):
            return None
        return value[1:end]
    if value.count(":") > 1:
        return value  # a bare IPv6 literal
    name, _, port = value.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class HostPolicy:
    """Which names a browser-facing request may use for this node (Host and Origin)."""

    names: frozenset[str]
    any_ip_literal: bool = False
    disabled: bool = False

    @classmethod
    def from_config(cls, config: Config) -> HostPolicy:
        """Loopback names, the bind address, ``advertise_host`` and ``allowed_hosts``."""
        entries: list[str] = [config.host, *(config.allowed_hosts or [])]
        if config.advertise_host:
            entries.append(config.advertise_host)
        return cls.of(entries, bound_to=config.host)

    @classmethod
    def of(cls, entries: Iterable[str], *, bound_to: str = "127.0.0.1") -> HostPolicy:
        """A policy from host names or IPs (``*`` disables the checks)."""
        names = set(LOOPBACK_NAMES)
        disabled = False
        for entry in entries:
            if entry.strip() == ANY_HOST:
                disabled = True
                continue
            name = _hostname(entry)
            if name:
                names.add(name)
        return cls(frozenset(names), bound_to.strip() in WILDCARD_HOSTS, disabled)

    def allows_name(self, name: str | None) -> bool:
        """Whether ``name`` (a bare host) is one of this node's names."""
        if name is None:
            return False
        if name in self.names:
            return True
        return self.any_ip_literal and _is_ip(name)

    def refusal(self, host: str | None, origin: str | None) -> str | None:
        """Why a request with these headers is refused, or None when it may proceed."""
        if self.disabled:
            return None
        if host is None or not self.allows_name(_hostname(host)):
            return f"Host {host!r} does not name this node (see allowed_hosts)"
        if origin is None:
            return None  # not sent by a browser on a cross-origin request
        parts = urlsplit(origin.strip())
        if parts.scheme not in ("http", "https") or not self.allows_name(_hostname(parts.netloc)):
            return f"Origin {origin!r} is not allowed (see allowed_hosts)"
        return None

    def check(self, request: web.Request) -> None:
        """Raise HostNotAllowed (403) unless the request's Host and Origin name this node."""
        why = self.refusal(request.headers.get("Host"), request.headers.get("Origin"))
        if why is not None:
            raise HostNotAllowed(why)


def guarded(policy: HostPolicy, handler: Handler) -> Handler:
    """``handler`` behind ``policy.check``: a refused request never reaches it."""

    async def checked(request: web.Request) -> web.StreamResponse:
        policy.check(request)
        return await handler(request)

    checked.__doc__ = handler.__doc__
    checked.__name__ = getattr(handler, "__name__", "checked")
    return checked
