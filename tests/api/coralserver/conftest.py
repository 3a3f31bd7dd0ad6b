"""A node started as a coral-server drop-in: ``CONFIG_FILE_PATH`` to a coral-server config.toml,
whose registry is the two example agents of ``examples/coral_server`` plus one broken toml."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.support.nodeproc import NodeProcess

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "coral_server"
KEY = "app-key-1"
WEBHOOK_SECRET = "webhook-secret-for-tests"


def python_first_path() -> str:
    """PATH with this interpreter's folder first: the agents' ``python3`` is the tests' own
    (with ``mcp`` installed) even when the virtualenv is not activated."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DropIn:
    """The node process and where its coral-server API listens."""

    node: NodeProcess
    api: str
    broken: Path
    #: Watched by the registry's rescan timer: agents written here appear later.
    late: Path

    def client(self, key: str | None = KEY) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        return httpx.AsyncClient(base_url=self.api, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def drop_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DropIn]:
    root = tmp_path_factory.mktemp("coralserver")
    broken = root / "broken" / "coral-agent.toml"
    broken.parent.mkdir()
    broken.write_text('edition = 4\n[agent]\nname = "broken"\nversion = "0.1.0\n')  # no closing "
    docker_only = root / "docker-only" / "coral-agent.toml"
    docker_only.parent.mkdir()
    docker_only.write_text(
        'edition = 4\n[agent]\nname = "boxed"\nversion = "0.1.0"\n'
        '[runtimes.docker]\nimage = "example/boxed:1"\ntransport = "sse"\n'
    )
    port = free_port()
    config = root / "config.toml"
    config.write_text(
        f"""
[network]
bindAddress = "127.0.0.1"
bindPort = {port}
webhookSecret = "replaced-by-the-command-line-override"

[auth]
keys = ["{KEY}", "app-key-2"]

[registry]
localAgents = [
    {json.dumps(str(EXAMPLES / "*"))},
    {json.dumps(str(broken.parent))},
    {json.dumps(str(docker_only.parent))},
    {json.dumps(str(root / "late" / "*"))},
]
localAgentRescanTimer = "1s"
includeCoralHomeAgents = false

[session]
defaultWaitTimeout = 20000

[payment]
wallets = []
"""
    )
    node = NodeProcess(
        root / "node",
        extra_args=[f"--network.webhookSecret={WEBHOOK_SECRET}"],  # coral-server CLI override
        env={"CONFIG_FILE_PATH": str(config), "PATH": python_first_path()},
    ).start(timeout=60)
    yield DropIn(node, f"http://127.0.0.1:{port}", broken, root / "late")
    node.terminate(timeout=60)


@dataclass
class WebhookReceiver:
    """A tiny app receiving session-end webhooks."""

    url: str = ""
    calls: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()

    async def handle(request: web.Request) -> web.Response:
        receiver.calls.append((await request.read(), dict(request.headers)))
        receiver.arrived.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/session-end", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{port}/session-end"
    yield receiver
    await runner.cleanup()


def agent_request(
    name: str, registry_name: str, options: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """One GraphAgentRequest exactly as coral-server's OpenAPI describes it."""
    return {
        "id": {"name": registry_name, "version": "0.1.0", "registrySourceId": {"type": "local"}},
        "name": name,
        "description": f"the {name}",
        "options": options or {},
        "systemPrompt": None,
        "blocking": True,
        "customToolAccess": [],
        "plugins": [],
        "provider": {"type": "local", "runtime": "executable"},
        "x402Budgets": [],
        "proxies": {},
        "annotations": {},
        **extra,
    }


def session_request(
    agents: list[dict[str, Any]],
    namespace: str = "demo",
    groups: list[list[str]] | None = None,
    execution: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A SessionRequest in coral-server 1.2's exact format."""
    return {
        "agentGraphRequest": {
            "agents": agents,
            "groups": groups if groups is not None else [[a["name"] for a in agents]],
            "customTools": {},
        },
        "namespaceProvider": {
            "type": "create_if_not_exists",
            "namespaceRequest": {
                "name": namespace,
                "deleteOnLastSessionExit": True,
                "annotations": {},
            },
        },
        "execution": execution or {"mode": "immediate", "runtimeSettings": {}},
        "annotations": {},
    }
