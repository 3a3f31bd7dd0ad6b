"""Fault injection on real node processes: SIGKILL mid-burst, a full disk, a locked database.

Coordination/federation kills and ledger bursts are covered in
tests/integration (test_coordination_grpc, test_ledger_crash) and
tests/federation_nodes; this adds a mixed burst of thread posts and team
charters, and storage failures. A full disk is simulated with RLIMIT_FSIZE on
the node process (``prlimit``; CPython ignores SIGXFSZ, so writes fail with
EFBIG instead of killing it), a read-only/unavailable store with another
process holding SQLite's exclusive lock past the node's busy timeout.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sqlite3
import uuid
from typing import Any

import aiohttp

from coral.protocol.codec import message_to_json
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms
from coral.teams import Money, RoleSpec, draft_charter
from coral.teams.documents import document_json
from tests.hardening.support import agent_record, coral_auth, record_body, signed_message
from tests.support.nodeproc import NodeProcess

JSON = {"Content-Type": "application/json"}


async def _post(
    session: aiohttp.ClientSession, node: NodeProcess, path: str, body: bytes
) -> tuple[int, Any]:
    async with session.post(node.http + path, data=body, headers=JSON) as resp:
        raw = await resp.read()
        return resp.status, json.loads(raw) if raw else None


async def _get(
    session: aiohttp.ClientSession, node: NodeProcess, agent: Identity, path: str
) -> Any:
    headers = {"Authorization": coral_auth(agent, "GET", path)}
    async with session.get(node.http + path, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _setup(node: NodeProcess, alice: Identity) -> str:
    async with aiohttp.ClientSession() as session:
        status, _ = await _post(
            session, node, "/v1/agents", record_body(agent_record(alice, node.node_id, "alice"))
        )
        assert status == 201
        create = signed_message(
            alice, kind="thread.create", data={"name": "t", "participants": [alice.did]}
        )
        status, body = await _post(session, node, "/v1/messages", message_to_json(create))
        assert status == 201
        return str(body["thread"]["id"])


async def _history_ids(node: NodeProcess, alice: Identity, thread: str) -> list[str]:
    ids: list[str] = []
    after = 0
    async with aiohttp.ClientSession() as session:
        while True:
            page = await _get(
                session, node, alice, f"/v1/threads/{thread}/messages?after={after}&limit=500"
            )
            entries = page["entries"]
            if not entries:
                return ids
            ids += [e["message"]["id"] for e in entries if not e.get("system")]
            after = entries[-1]["seq"]


def _charter(alice: Identity, index: int) -> Any:
    return draft_charter(
        alice,
        goal=f"burst {index}",
        roles=(RoleSpec(name="writer"),),
        budget=Money(amount=1),
        deadline_ms=now_ms() + 3_600_000,
        now_ms=now_ms(),
    )


async def test_sigkill_during_a_burst_of_posts_and_team_charters(node_factory) -> None:
    node = node_factory("node")
    alice = Identity.generate()
    thread = await _setup(node, alice)
    acked_posts: dict[str, bytes] = {}
    acked_teams: list[str] = []
    sent = 0

    async def poster(worker: int) -> None:
        nonlocal sent
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            for i in range(10_000):
                sent += 1
                try:
                    if i % 4 == 3:
                        charter = _charter(alice, worker * 10_000 + i)
                        status, body = await _post(
                            session, node, "/v1/teams", document_json(charter)
                        )
                        if status == 201:
                            acked_teams.append(body["team_id"])
                    else:
                        raw = message_to_json(
                            signed_message(alice, thread=thread, text=f"{worker}-{i}")
                        )
                        status, body = await _post(session, node, "/v1/messages", raw)
                        if status == 201:
                            acked_posts[body["entry"]["message"]["id"]] = raw
                except (TimeoutError, aiohttp.ClientError):
                    return  # the node is gone

    workers = [asyncio.create_task(poster(w)) for w in range(4)]
    async with asyncio.timeout(60):
        while len(acked_posts) < 60:
            assert not all(w.done() for w in workers), "every worker stopped before the kill"
            await asyncio.sleep(0.05)
    node.kill()  # SIGKILL mid-burst: requests are in flight right now
    await asyncio.gather(*workers)
    assert acked_teams and acked_posts

    node.start()
    stored = await _history_ids(node, alice, thread)
    assert len(stored) == len(set(stored)), "a message was stored twice"
    missing = set(acked_posts) - set(stored)
    assert not missing, f"{len(missing)} acknowledged posts were lost"
    async with aiohttp.ClientSession() as session:
        for team_id in acked_teams:
            await _get(session, node, alice, f"/v1/teams/{team_id}")
        # A client retrying after the crash cannot make a duplicate.
        for raw in list(acked_posts.values())[:20]:
            status, body = await _post(session, node, "/v1/messages", raw)
            assert status == 409 and body["reason"] in ("replayed", "duplicate_message"), body
    assert sorted(await _history_ids(node, alice, thread)) == sorted(stored)


def _fill_disk(node: NodeProcess) -> None:
    """Make every file-extending write of the node fail (soft limit only, so it can be undone)."""
    assert node.proc is not None
    resource.prlimit(node.proc.pid, resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))


def _free_disk(node: NodeProcess) -> None:
    assert node.proc is not None
    resource.prlimit(
        node.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    )


async def _refused_writes(
    node: NodeProcess, alice: Identity, thread: str
) -> list[tuple[int, Any, str]]:
    """Try a post and a registration; return (status, body, message id) per attempt."""
    results = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        message = signed_message(alice, thread=thread, text="while storage is failing")
        status, body = await _post(session, node, "/v1/messages", message_to_json(message))
        results.append((status, body, message.id))
        record = record_body(
            agent_record(Identity.generate(), node.node_id, f"bob-{uuid.uuid4().hex[:8]}")
        )
        status, body = await _post(session, node, "/v1/agents", record)
        results.append((status, body, ""))
    return results


async def _recovers(
    node: NodeProcess, alice: Identity, thread: str, refused_ids: list[str]
) -> None:
    async with aiohttp.ClientSession() as session:
        message = signed_message(alice, thread=thread, text="after")
        status, body = await _post(session, node, "/v1/messages", message_to_json(message))
        assert status == 201, body
    stored = await _history_ids(node, alice, thread)
    assert message.id in stored
    assert not set(refused_ids) & set(stored), "a refused write was stored"


def _assert_clean_refusal(results: list[tuple[int, Any, str]]) -> None:
    for status, body, _ in results:
        assert status >= 400, body
        assert isinstance(body, dict) and "Traceback" not in json.dumps(body)


async def test_full_disk_refuses_writes_without_a_trace_and_recovers(node_factory) -> None:
    node = node_factory("node")
    alice = Identity.generate()
    thread = await _setup(node, alice)
    _fill_disk(node)
    try:
        results = await _refused_writes(node, alice, thread)
    finally:
        _free_disk(node)
    _assert_clean_refusal(results)
    assert node.proc is not None and node.proc.poll() is None, "the node died on a full disk"
    await _recovers(node, alice, thread, [mid for _, _, mid in results if mid])


async def test_locked_database_refuses_writes_without_a_trace_and_recovers(node_factory) -> None:
    node = node_factory("node")
    alice = Identity.generate()
    thread = await _setup(node, alice)
    lock = sqlite3.connect(node.data_dir / "coral.db", timeout=1, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        results = await _refused_writes(node, alice, thread)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    _assert_clean_refusal(results)
    await _recovers(node, alice, thread, [mid for _, _, mid in results if mid])


async def test_storage_failures_answer_503_storage_unavailable(node_factory) -> None:
    node = node_factory("node")
    alice = Identity.generate()
    thread = await _setup(node, alice)
    _fill_disk(node)
    try:
        results = await _refused_writes(node, alice, thread)
    finally:
        _free_disk(node)
    for status, body, _ in results:
        assert (status, body["reason"]) == (503, "storage_unavailable")
