"""Bad session requests get a clear 4xx and leave nothing behind; deferred sessions wait."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.coralserver.conftest import DropIn, agent_request, session_request
from tests.support.nodeproc import NodeProcess


async def _nothing_started(api: httpx.AsyncClient, node_http: str, agents_before: int) -> None:
    namespaces = (await api.get("/api/v1/local/namespace")).json()
    assert [n["name"] for n in namespaces if n["name"].startswith("bad")] == []
    async with httpx.AsyncClient(timeout=30) as plain:
        agents = (await plain.get(f"{node_http}/v1/agents")).json()
    assert len(agents["agents"]) == agents_before  # no session agent was registered


async def _agent_count(node_http: str) -> int:
    async with httpx.AsyncClient(timeout=30) as plain:
        return len((await plain.get(f"{node_http}/v1/agents")).json()["agents"])


def _docker_daemon() -> bool:
    from coral.sessions.runtime import DockerContainer, RuntimeUnavailable

    try:
        DockerContainer.client()
    except RuntimeUnavailable:
        return False
    return True


def answerer(options: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return agent_request(
        "answerer",
        "answerer",
        options if options is not None else {"FACTOR": {"type": "i32", "value": 2}},
        **extra,
    )


async def test_each_bad_request_is_a_clear_4xx_and_starts_nothing(drop_in: DropIn):
    before = await _agent_count(drop_in.node.http)
    cases: list[tuple[str, Any, int, str]] = [
        ("not json", b"{", 400, "not valid JSON"),
        ("old v0 format", {"applicationId": "a", "privacyKey": "k", "agentGraph": {}}, 400, ""),
        (
            "group names a missing agent",
            session_request([answerer()], "bad-groups", groups=[["answerer", "ghost"]]),
            400,
            "groups contain missing agents: ['ghost']",
        ),
        (
            "duplicate names",
            session_request([answerer(), answerer()], "bad-dupes", groups=[]),
            400,
            "duplicate agent names",
        ),
        (
            "custom tool not provided",
            session_request([answerer(customToolAccess=["search"])], "bad-tools"),
            400,
            "uses custom tools that were not provided: ['search']",
        ),
        (
            "unknown agent",
            session_request([agent_request("x", "no-such-agent")], "bad-unknown"),
            400,
            "no-such-agent:0.1.0 is not in the registry",
        ),
        (
            "option of the wrong type",
            session_request(
                [answerer({"FACTOR": {"type": "string", "value": "seven"}})], "bad-type"
            ),
            400,
            "'FACTOR' is a i32, not a string",
        ),
        (
            "option out of range",
            session_request([answerer({"FACTOR": {"type": "i32", "value": 2**40}})], "bad-range"),
            400,
            "is not a valid i32",
        ),
        (
            "missing required option",
            session_request([answerer({})], "bad-required"),
            400,
            "missing required options: FACTOR",
        ),
        (
            "unknown option",
            session_request(
                [
                    answerer(
                        {
                            "FACTOR": {"type": "i32", "value": 1},
                            "NOPE": {"type": "bool", "value": True},
                        }
                    )
                ],
                "bad-option",
            ),
            400,
            "unknown options: NOPE",
        ),
        (
            "runtime the agent lacks",
            session_request(
                [answerer(provider={"type": "local", "runtime": "docker"})], "bad-runtime"
            ),
            400,
            "has no docker runtime",
        ),
        (
            "remote provider",
            session_request(
                [answerer(provider={"type": "remote_request", "runtime": "executable"})],
                "bad-remote",
            ),
            400,
            "not supported",
        ),
        (
            "unknown namespace",
            {
                **session_request([answerer()]),
                "namespaceProvider": {"type": "use_existing", "name": "bad-none"},
            },
            404,
            "namespace 'bad-none' not found",
        ),
    ]
    async with drop_in.client() as api:
        for label, body, status, detail in cases:
            if isinstance(body, bytes):
                response = await api.post("/api/v1/local/session", content=body)
            else:
                response = await api.post("/api/v1/local/session", json=body)
            assert response.status_code == status, (label, response.text)
            assert detail in response.json()["message"], (label, response.json())
        async with drop_in.client("app-key-3") as wrong:
            refused = await wrong.post("/api/v1/local/session", json=session_request([answerer()]))
            assert refused.status_code == 401
        await _nothing_started(api, drop_in.node.http, before)
        docker = agent_request("boxed", "boxed", provider={"type": "local", "runtime": "docker"})
        boxed = await api.post("/api/v1/local/session", json=session_request([docker], "bad-d"))
        if not _docker_daemon():
            assert boxed.status_code == 400
            assert boxed.json()["message"].startswith("docker runtime skipped:")
        else:  # a daemon is there: the launch is attempted (the image need not exist)
            assert boxed.status_code == 200
            ident = boxed.json()
            await api.delete(f"/api/v1/local/session/{ident['namespace']}/{ident['sessionId']}")


async def test_a_deferred_session_waits_for_its_start_and_can_be_deleted_unstarted(
    drop_in: DropIn,
):
    async with drop_in.client("app-key-2") as api:
        made = await api.post("/api/v1/local/namespace", json={"name": "later"})
        assert made.status_code == 200
        again = await api.post("/api/v1/local/namespace", json={"name": "later"})
        assert again.status_code == 409
        request = session_request([answerer()], execution={"mode": "defer"})
        request["namespaceProvider"] = {"type": "use_existing", "name": "later"}
        created = (await api.post("/api/v1/local/session", json=request)).json()
        path = f"/api/v1/local/session/later/{created['sessionId']}"
        state = (await api.get(path + "/extended")).json()
        assert state["base"]["status"] == {"type": "pending_execution"}
        assert state["agents"][0]["status"] == {"type": "waiting"}
        listed = (await api.get("/api/v1/local/namespace/later")).json()
        assert [s["id"] for s in listed] == [created["sessionId"]]
        bad_start = await api.post(path, json={"ttl": -5})
        assert bad_start.status_code == 400
        assert (await api.get(path)).json()["status"]["type"] == "pending_execution"
        assert (await api.delete(path)).status_code == 200
        assert (await api.get(path)).status_code == 404
        # deleteOnLastSessionExit (default true) removed the namespace with its last session.
        assert (await api.get("/api/v1/local/namespace/later")).status_code == 404


def test_a_bad_coral_server_config_stops_the_start_with_a_clear_error(tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text("[network]\nbindPort = 99999\n")
    node = NodeProcess(tmp_path / "node", env={"CONFIG_FILE_PATH": str(config)})
    with pytest.raises(RuntimeError) as caught:
        node.start(timeout=60)
    assert "[network] bindPort must be 0..65535" in str(caught.value)
    assert "Traceback" not in str(caught.value)
    typo = NodeProcess(tmp_path / "node2", extra_args=["--bogus"])
    with pytest.raises(RuntimeError) as caught:
        typo.start(timeout=60)
    assert "unknown argument '--bogus'" in str(caught.value)
