"""Dashboard endpoints on a real node: page, snapshot, live events, admin actions, request ids."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp

from coral.config import Config
from coral.node import Node
from coral.node.logs import RequestIdFilter
from coral.protocol.identity import Identity
from coral.protocol.message import EncryptedPart
from coral_sdk import AgentManifest, CoralApiError, CoralClient


async def registered(base: str, name: str, *caps: str) -> CoralClient:
    client = CoralClient(base, Identity.generate())
    await client.register(AgentManifest(name=name, capabilities=caps))
    return client


async def get_json(http: aiohttp.ClientSession, url: str, **kw: Any) -> Any:
    async with http.get(url, **kw) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def next_snapshot(stream: aiohttp.StreamReader) -> dict[str, Any]:
    """Read SSE lines until one complete ``snapshot`` event; skip keep-alives."""
    event, data = None, []
    while True:
        line = (await stream.readline()).decode().rstrip("\n")
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data.append(line.split(":", 1)[1].strip())
        elif line == "" and event == "snapshot" and data:
            return dict(json.loads("".join(data)))


async def test_page_and_assets_are_self_contained(start_node, http):
    _, ctx = await start_node()
    async with http.get(ctx.http_address + "/") as resp:
        page = await resp.text()
        assert resp.status == 200 and resp.content_type == "text/html"
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    # Nothing is fetched from elsewhere: every asset the page names is served by the node.
    assert "http://" not in page and "https://" not in page.replace("http://www.w3.org", "")
    for name, kind in (("dashboard.css", "text/css"), ("dashboard.js", "text/javascript")):
        async with http.get(f"{ctx.http_address}/dashboard/static/{name}") as resp:
            assert resp.status == 200 and resp.content_type == kind
            assert f"/dashboard/static/{name}" in page
    async with http.get(ctx.http_address + "/dashboard/static/../node.json") as resp:
        assert resp.status == 404


async def test_snapshot_shows_agents_threads_and_hides_ciphertext(start_node, http):
    _, ctx = await start_node()
    base = ctx.http_address
    alice = await registered(base, "alice", "chat", "math")
    bob = await registered(base, "bob", "chat")
    try:
        thread = await alice.create_thread("planning", [bob.did])
        await alice.send(thread.id, "hello bob", mentions=[bob.did])
        secret = EncryptedPart(alg="x", key_id="k1", nonce="AAAA", ciphertext="c2VjcmV0LXRleHQ")
        await bob.send(thread.id, parts=[secret])
        snap = await get_json(http, base + "/v1/dashboard/snapshot")
    finally:
        await alice.close()
        await bob.close()
    assert snap["node"]["node_id"] == ctx.identity.did and snap["views_need_token"] is False
    local = {a["name"]: a for a in snap["agents"]["local"]}
    assert local["alice"]["capabilities"] == ["chat", "math"] and local["bob"]["did"] == bob.did
    [shown] = [t for t in snap["threads"]["recent"] if t["id"] == thread.id]
    assert shown["state"] == "open" and shown["participants"] == [alice.did, bob.did]
    texts = [p for m in shown["messages"] for p in m["parts"]]
    assert {"type": "text", "text": "hello bob"} in texts
    assert {"type": "encrypted", "text": "encrypted"} in texts
    assert "c2VjcmV0LXRleHQ" not in json.dumps(snap)
    assert snap["threads"]["totals"]["threads_open"] == 1
    assert snap["actions"]["close_thread"] is True
    assert set(snap["rates"]["series"]) == {
        "messages_per_s",
        "requests_per_s",
        "latency_p50_ms",
        "latency_p95_ms",
    }


async def test_events_push_a_new_message_without_polling(start_node, http):
    _, ctx = await start_node()
    base = ctx.http_address
    alice = await registered(base, "alice")
    bob = await registered(base, "bob")
    try:
        thread = await alice.create_thread("live", [bob.did])
        async with http.get(base + "/v1/dashboard/events") as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            first = await next_snapshot(resp.content)
            assert first["threads"]["totals"]["entries"] >= 1
            await alice.send(thread.id, "pushed live", mentions=[bob.did])
            seen_at = asyncio.get_running_loop().time()
            while True:
                snap = await asyncio.wait_for(next_snapshot(resp.content), 10)
                texts = [
                    p["text"]
                    for t in snap["threads"]["recent"]
                    for m in t["messages"]
                    for p in m["parts"]
                ]
                if "pushed live" in texts:
                    break
            assert asyncio.get_running_loop().time() - seen_at < 5
    finally:
        await alice.close()
        await bob.close()


async def test_admin_close_needs_the_token_and_records_the_operator(start_node, http):
    _, ctx = await start_node()
    base = ctx.http_address
    alice = await registered(base, "alice")
    bob = await registered(base, "bob")
    try:
        thread = await alice.create_thread("to-close", [bob.did])
        url = f"{base}/v1/dashboard/admin/threads/{thread.id}/close"
        async with http.post(url, json={"summary": "done"}) as resp:
            assert resp.status == 401 and (await resp.json())["reason"] == "admin_required"
        async with http.post(url, json={}, headers={"Authorization": "Bearer nope"}) as resp:
            assert resp.status == 401 and (await resp.json())["reason"] == "bad_admin_token"
        admin = {"Authorization": f"Bearer {ctx.admin_token}"}
        async with http.post(url, json={"summary": "stale work"}, headers=admin) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        assert body["state"] == "closed" and body["closed_by"] == ctx.identity.did
        assert body["summary"] == "[closed by the node operator] stale work"
        # The engine really closed it: participants can no longer post.
        try:
            await bob.send(thread.id, "too late")
            raise AssertionError("posting to a closed thread was accepted")
        except CoralApiError as exc:
            assert exc.status == 409 or "closed" in exc.reason
        async with http.post(url, json={}, headers=admin) as resp:
            assert resp.status >= 400  # closing twice is refused by the engine
        missing = f"{base}/v1/dashboard/admin/threads/nope/close"
        async with http.post(missing, json={}, headers=admin) as resp:
            assert resp.status == 404
    finally:
        await alice.close()
        await bob.close()


async def test_views_need_the_token_when_not_on_loopback(start_node, http):
    _, ctx = await start_node(host="0.0.0.0")
    base = ctx.http_address.replace("0.0.0.0", "127.0.0.1")
    async with http.get(base + "/") as resp:
        assert resp.status == 200  # the page itself holds no data
    async with http.get(base + "/v1/dashboard/snapshot") as resp:
        assert resp.status == 401
    async with http.get(base + "/v1/dashboard/events") as resp:
        assert resp.status == 401
    snap = await get_json(
        http,
        base + "/v1/dashboard/snapshot",
        headers={"Authorization": f"Bearer {ctx.admin_token}"},
    )
    assert snap["views_need_token"] is True
    async with http.get(base + "/v1/dashboard/events", params={"token": ctx.admin_token}) as resp:
        assert resp.status == 200
        assert (await next_snapshot(resp.content))["node"]["node_id"] == ctx.identity.did


async def test_request_ids_are_echoed_generated_and_logged(start_node, http):
    _, ctx = await start_node()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("coral.http.requests")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        async with http.get(ctx.http_address + "/healthz", headers={"X-Request-Id": "op-42"}) as r:
            assert r.headers["X-Request-Id"] == "op-42"
        async with http.get(ctx.http_address + "/v1/node") as resp:
            generated = resp.headers["X-Request-Id"]
            assert len(generated) == 16
        # Refusals (problem+json from the error middleware) and junk ids are covered too.
        bad = {"X-Request-Id": "has spaces and\ttabs"}
        async with http.post(ctx.http_address + "/v1/messages", data=b"{", headers=bad) as resp:
            assert resp.status == 400 and resp.headers["X-Request-Id"] != bad["X-Request-Id"]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    ids = [getattr(r, "request_id", None) for r in records]
    assert "op-42" in ids and generated in ids


async def test_ledger_panel_shows_issued_funds(start_node, http):
    _, ctx = await start_node()
    base = ctx.http_address
    alice = await registered(base, "alice")
    try:
        admin = {"Authorization": f"Bearer {ctx.admin_token}"}
        body = {"account": alice.did, "amount": 250}
        async with http.post(base + "/v1/admin/ledger/issue", json=body, headers=admin) as resp:
            assert resp.status < 300, await resp.text()
        snap = await get_json(http, base + "/v1/dashboard/snapshot")
    finally:
        await alice.close()
    assert snap["actions"]["issue_funds"] is True  # dev_mode is on by default
    balances = {a["id"]: a["balance"] for a in snap["ledger"]["accounts"]}
    assert balances[alice.did] == 250
    assert sum(balances.values()) == 0  # double entry: the operator account went negative
    [recent] = snap["ledger"]["recent"]
    assert (recent["to"], recent["amount"]) == (alice.did, 250)
    assert snap["ledger"]["pending"] == []


async def test_peers_panel_lists_a_peer_and_shows_its_removal(start_node, http):
    _, a = await start_node("a")
    node_b = Node(
        Config(
            data_dir=a.config.data_dir.parent / "b",
            grpc_port=0,
            http_port=0,
            bootstrap_peers=[a.grpc_address],
        )
    )
    b = await node_b.start()
    try:
        peers: list[dict[str, Any]] = []
        for _ in range(100):
            peers = (await get_json(http, a.http_address + "/v1/dashboard/snapshot"))["peers"]
            if any(p["node"] == b.identity.did for p in peers):
                break
            await asyncio.sleep(0.1)
        [peer] = [p for p in peers if p["node"] == b.identity.did]
        assert peer["banned"] is False and peer["addresses"]["grpc"]
        admin = {"Authorization": f"Bearer {a.admin_token}"}
        url = f"{a.http_address}/v1/admin/peers/{b.identity.did}"
        async with http.delete(url, headers=admin) as resp:
            assert resp.status == 200
        snap = await get_json(http, a.http_address + "/v1/dashboard/snapshot")
        [peer] = [p for p in snap["peers"] if p["node"] == b.identity.did]
        assert peer["banned"] is True and peer["active"] is False
        assert snap["actions"]["remove_peer"] is True
    finally:
        await node_b.stop()


async def test_team_panel_and_team_threads_show_ciphertext_only(start_node, http):
    from coral.protocol.agent import Price
    from coral.teams import Money, RoleSpec
    from coral_sdk.teams import TeamClient, accept_invitations

    _, ctx = await start_node()
    base = ctx.http_address
    alice = await registered(base, "alice")
    carol = CoralClient(base, Identity.generate())
    await carol.register(
        AgentManifest(
            name="carol", capabilities=("review",), prices=(Price(capability="review", amount=5),)
        )
    )
    admin = {"Authorization": f"Bearer {ctx.admin_token}"}
    funds = {"account": alice.did, "amount": 100}  # the team budget is held in escrow
    async with http.post(base + "/v1/admin/ledger/issue", json=funds, headers=admin) as resp:
        assert resp.status < 300
    stop = asyncio.Event()
    answering = asyncio.create_task(accept_invitations(carol, lambda offer: 5, stop=stop))
    try:
        team = await TeamClient(alice).form_team(
            goal="review the plan",
            roles=(RoleSpec(name="reviewer", capabilities=("review",)),),
            budget=Money(amount=10),
            timeout_s=20,
        )
        await TeamClient(alice).send_team_message(team.team_id, "unique-team-plaintext-42")
        snap = await get_json(http, base + "/v1/dashboard/snapshot")
        url = f"{base}/v1/dashboard/admin/threads/{team.thread_id}/close"
        async with http.post(url, json={}, headers=admin) as resp:
            assert resp.status == 403 and (await resp.json())["reason"] == "team_thread"
    finally:
        stop.set()
        answering.cancel()
        await asyncio.gather(answering, return_exceptions=True)
        await alice.close()
        await carol.close()
    [shown_team] = [t for t in snap["teams"] if t["team_id"] == team.team_id]
    assert shown_team["goal"] == "review the plan" and shown_team["key_epoch"] == 1
    assert {m["did"]: m["role"] for m in shown_team["members"]}[carol.did] == "reviewer"
    [thread] = [t for t in snap["threads"]["recent"] if t["id"] == team.thread_id]
    assert thread["team_id"] == team.team_id
    posts = [m for m in thread["messages"] if not m["system"]]
    assert posts and all(p["type"] == "encrypted" for m in posts for p in m["parts"])
    assert "unique-team-plaintext-42" not in json.dumps(snap)
    # The team budget sits in escrow: a pending transfer out of alice's account.
    assert [(p["from"], p["amount"]) for p in snap["ledger"]["pending"]] == [(alice.did, 10)]


async def test_event_streams_are_capped(start_node, http, monkeypatch):
    from coral.api.dashboard import routes

    monkeypatch.setattr(routes, "MAX_EVENT_STREAMS", 1)
    _, ctx = await start_node()
    url = ctx.http_address + "/v1/dashboard/events"
    async with http.get(url) as first:
        await next_snapshot(first.content)
        async with http.get(url) as second:
            assert second.status == 429
            assert (await second.json())["reason"] == "too_many_streams"
