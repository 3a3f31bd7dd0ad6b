"""The one HTTP client of the ``coral-node`` commands that talk to a running node.

``RunningNode`` finds the node a data dir started (its runtime file) and the
operator's admin token; ``NodeClient`` makes the calls (httpx, synchronous)
with the right credential: none, the admin bearer token, or a request signed
with an agent's key (``Authorization: Coral ...``, as the SDK signs). Every
failure is a ``NodeCallError`` whose ``str()`` is one line fit for a terminal:
the node cannot be reached, it did not answer in time, or it refused the call
(its problem+json ``reason`` and ``detail``). ``node_errors()`` turns those
into that line on stderr and exit code 1.

HTTPS is verified as Python's ``ssl`` verifies by default (the system's trust
store); the node's own certificate (``tls_cert_file`` of its config) is
trusted as well, so a self-signed node works from its own data dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlencode

import typer

from coral.config import Config, ConfigError, load_config
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms
from coral.protocol.request_auth import sign_request

if TYPE_CHECKING:
    import httpx

#: Seconds a call may take before it fails with NodeTimeout.
DEFAULT_TIMEOUT_S = 30.0

Auth = Literal["none", "admin", "agent"]


class NodeCallError(Exception):
    """A call to a node failed; ``str()`` is one line fit for a terminal."""


class NoRunningNode(NodeCallError):
    """No node runs from this data dir (no runtime file), or its admin token is unreadable."""


class NodeUnreachable(NodeCallError):
    """Nothing answered at the node's address (refused, reset, unknown host, TLS failure)."""

    def __init__(self, url: str, cause: BaseException) -> None:
        detail = " ".join(str(cause).split()) or type(cause).__name__
        super().__init__(f"node at {url} is not reachable: {detail}")
        self.url = url


class NodeTimeout(NodeCallError):
    """The node took longer than the client's timeout to connect or answer."""

    def __init__(self, url: str, timeout_s: float) -> None:
        super().__init__(f"node at {url} did not answer within {timeout_s:g} s")
        self.url = url


class NodeRefused(NodeCallError):
    """The node answered with an error status; ``reason`` is its machine-readable code."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"refused: {reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail


def path_segment(value: str) -> str:
    """``value`` escaped for one URL path segment (``:`` in dids stays, as the node signs it)."""
    return quote(value, safe=":@")


def tls_verify(cfg: Config | None = None) -> ssl.SSLContext:
    """The system's trust store, plus the node's own certificate when ``cfg`` names one."""
    context = ssl.create_default_context()
    cert = cfg.tls_cert_file if cfg is not None else None
    if cert is not None and cert.is_file():
        # Not a usable certificate: verify with the system's store alone.
        with contextlib.suppress(OSError, ssl.SSLError):
            context.load_verify_locations(cafile=str(cert))
    return context


@dataclass(frozen=True)
class RunningNode:
    """A node started from a data dir: where it listens and how to authenticate to it."""

    url: str
    node_id: str
    config: Config

    @classmethod
    def find(cls, cfg: Config, *, or_url: bool = False) -> RunningNode:
        """The node whose runtime file is in ``cfg.data_dir``.

        Raises:
            NoRunningNode: there is none (the hint names ``--url`` when ``or_url``).
        """
        try:
            runtime = json.loads(cfg.runtime_file.read_text())
            return cls(str(runtime["http_address"]).rstrip("/"), str(runtime["node_id"]), cfg)
        except (OSError, ValueError, KeyError, TypeError):
            hint = "start it with `coral-node start`" + (" or pass --url" if or_url else "")
            raise NoRunningNode(f"no running node found in {cfg.data_dir}; {hint}") from None

    @classmethod
    def from_data_dir(cls, data_dir: Path | None) -> RunningNode:
        """``find`` with the config of ``data_dir`` (the default data dir when None).

        Raises:
            NoRunningNode: the config is invalid or no node runs from it.
        """
        try:
            cfg = load_config(None, overrides={"data_dir": data_dir})
        except ConfigError as exc:
            raise NoRunningNode(f"no running node found ({exc})") from None
        return cls.find(cfg)

    def admin_token(self) -> str:
        """The operator's admin token from the data dir.

        Raises:
            NoRunningNode: the token file cannot be read.
        """
        path = self.config.keys_dir / "admin.token"
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise NoRunningNode(f"cannot read the admin token {path}: {exc.strerror}") from None

    def client(
        self,
        *,
        admin: bool = False,
        identity: Identity | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> NodeClient:
        """A client for this node, with the admin token and/or an agent identity.

        Raises:
            NoRunningNode: ``admin`` and the token file cannot be read.
        """
        return NodeClient(
            self.url,
            admin_token=self.admin_token() if admin else None,
            identity=identity,
            timeout_s=timeout_s,
            verify=tls_verify(self.config),
        )


class NodeClient:
    """Calls one node's HTTP API; every failure raises a ``NodeCallError``."""

    def __init__(
        self,
        base_url: str,
        *,
        admin_token: str | None = None,
        identity: Identity | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        verify: ssl.SSLContext | bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.admin_token = admin_token
        self.identity = identity
        self.timeout_s = timeout_s
        context = tls_verify() if verify is True else verify
        import httpx  # here, not at the top: `coral-node start` never pays for it

        self._http = httpx.Client(timeout=timeout_s, verify=context, transport=transport)

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        auth: Auth = "none",
    ) -> Any:
        """``method path`` with ``body`` as JSON; the decoded JSON answer (None when empty).

        ``auth`` picks the credential: ``admin`` (the bearer token) or
        ``agent`` (a request signed with the identity's key).

        Raises:
            NodeRefused: the node answered 4xx/5xx (with its reason and detail).
            NodeUnreachable: nothing answered at ``base_url``.
            NodeTimeout: the node did not answer within the timeout.
            NodeCallError: the answer is not JSON.
        """
        clean = {k: str(v) for k, v in (query or {}).items() if v is not None}
        target = path + ("?" + urlencode(clean) if clean else "")
        content = json.dumps(body).encode() if body is not None else b""
        headers = {"Accept": "application/json"}
        if content:
            headers["Content-Type"] = "application/json"
        if auth == "admin":
            headers["Authorization"] = f"Bearer {self.admin_token or ''}"
        elif auth == "agent":
            if self.identity is None:
                raise NodeCallError("this call is signed by an agent key; pass --key")
            headers["Authorization"] = sign_request(
                self.identity, method, target, content, now_ms()
            )
        import httpx

        try:
            response = self._http.request(
                method, self.base_url + target, content=content or None, headers=headers
            )
        except httpx.TimeoutException:
            raise NodeTimeout(self.base_url, self.timeout_s) from None
        except httpx.TransportError as exc:
            raise NodeUnreachable(self.base_url, exc) from None
        return _answer(response)

    def get(self, path: str, *, query: Mapping[str, Any] | None = None, auth: Auth = "none") -> Any:
        """``GET path``; see ``request``.

        Raises:
            NodeCallError: as ``request``.
        """
        return self.request("GET", path, query=query, auth=auth)

    def post(self, path: str, body: Any, *, auth: Auth = "none") -> Any:
        """``POST path`` with a JSON body; see ``request``.

        Raises:
            NodeCallError: as ``request``.
        """
        return self.request("POST", path, body=body, auth=auth)


def _answer(response: httpx.Response) -> Any:
    try:
        data = response.json() if response.content else None
    except ValueError:
        data = None
        if response.status_code < 400:
            raise NodeCallError(
                f"node at {response.url} answered {response.status_code} without JSON"
            ) from None
    if response.status_code >= 400:
        problem = data if isinstance(data, dict) else {}
        reason = str(problem.get("reason") or f"HTTP {response.status_code}")
        detail = str(problem.get("detail") or response.reason_phrase)
        raise NodeRefused(response.status_code, reason, " ".join(detail.split()))
    return data


def new_transfer_id() -> str:
    """A fresh random transfer id (128 bits); reuse it to retry the same transfer."""
    return "t" + os.urandom(16).hex()


@contextmanager
def node_errors() -> Iterator[None]:
    """Turn a ``NodeCallError`` into its one line on stderr and exit code 1."""
    try:
        yield
    except NodeCallError as exc:
        sys.stderr.write(f"{exc}\n")
        sys.stderr.flush()
        raise typer.Exit(1) from None
