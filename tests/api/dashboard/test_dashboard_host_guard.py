"""DNS rebinding and cross-site reads of the dashboard, against a real node process.

A page on attacker.example whose name the attacker re-points at 127.0.0.1 makes
the operator's browser send ``Host: attacker.example`` to the node; a page on any
other site sends its own ``Origin``. Both must get 403, not the thread texts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from coral.protocol.identity import Identity
from coral_sdk import AgentManifest, CoralClient
from tests.support.nodeproc import NodeProcess

SECRET_TEXT = "the private plan"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A loopback node (views open without a token) that also answers to dash.example.test."""
    flags = [
        "--allowed-host",
        "dash.example.test",
    ]  # the start flag; env is used in tests/api/interop
    proc = NodeProcess(tmp_path_factory.mktemp("dash-guard") / "node", extra_args=flags).start()
    yield proc
    proc.kill()


async def _post_secret(base: str) -> str:
    alice = CoralClient(base, Identity.generate())
    bob = CoralClient(base, Identity.generate())
    try:
        await alice.register(AgentManifest(name="guard-alice"))
        await bob.register(AgentManifest(name="guard-bob"))
        thread = await alice.create_thread("plans", [bob.did])
        await alice.send(thread.id, SECRET_TEXT, mentions=[bob.did])
    finally:
        await alice.close()
        await bob.close()
    return str(thread.id)


@pytest.fixture(scope="module")
def thread_with_a_secret(node: NodeProcess) -> str:
    """A thread whose message text must never reach a rebinding page."""
    return asyncio.run(_post_secret(node.http))


DASHBOARD_GETS = ("/", "/dashboard/static/dashboard.js", "/v1/dashboard/snapshot")


@pytest.mark.parametrize(
    "bad",
    [
        {"Host": "attacker.example"},
        {"Host": "attacker.example:7421"},
        {"Origin": "http://attacker.example"},
        {"Origin": "null"},
    ],
)
async def test_rebinding_host_or_foreign_origin_gets_403_and_no_thread_text(
    node: NodeProcess, thread_with_a_secret: str, bad: dict[str, str]
):
    async with httpx.AsyncClient(base_url=node.http, timeout=30) as http:
        for path in DASHBOARD_GETS:
            refused = await http.get(path, headers=bad)
            assert refused.status_code == 403, path
            assert refused.json()["reason"] == "host_not_allowed"
            assert SECRET_TEXT not in refused.text
        async with http.stream("GET", "/v1/dashboard/events", headers=bad) as stream:
            assert stream.status_code == 403
        close = await http.post(
            f"/v1/dashboard/admin/threads/{thread_with_a_secret}/close", headers=bad, json={}
        )
        assert close.status_code == 403


async def test_loopback_and_allowed_names_still_see_the_dashboard(
    node: NodeProcess, thread_with_a_secret: str
):
    port = node.http.rsplit(":", 1)[1]
    async with httpx.AsyncClient(base_url=node.http, timeout=30) as http:
        for headers in (
            {},  # Host: 127.0.0.1:port, as the browser sends it
            {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"},
            {"Host": "dash.example.test", "Origin": "https://dash.example.test"},
        ):
            snap = await http.get("/v1/dashboard/snapshot", headers=headers)
            assert snap.status_code == 200, headers
            assert SECRET_TEXT in snap.text
        page = await http.get("/", headers={"Host": f"[::1]:{port}"})
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
