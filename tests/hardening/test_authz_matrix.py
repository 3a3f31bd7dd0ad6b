"""Authorization matrix: every HTTP route and gRPC method, called by the wrong people.

Routes and methods are enumerated from the running node (aiohttp router, gRPC
service descriptors) and must equal the matrix rows: a route without a row
fails by name, so a new front door cannot ship without saying who may call
it, and a row whose route is no longer served fails too (never skips), so a
front door cannot silently disappear. Each protected
entry is called with no identity, a malformed one, a forged signature, a
stale timestamp and another agent's did (all 401 / UNAUTHENTICATED), and,
where a resource belongs to someone, by a valid agent who is not its owner
(403 or 404 / PERMISSION_DENIED or NOT_FOUND). Every refusal leaves the
database row counts unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory

from coral.agents.keyrotation import KeyHandover, build_agent_rotation, issue_handover
from coral.protocol.codec import message_to_json, message_to_proto
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms
from coral.teams import Money, RoleSpec, draft_charter
from coral.teams.documents import Invitation, document_json
from coral.v1 import agents_pb2, coordination_pb2, node_pb2
from tests.hardening.support import (
    ThreadedNode,
    agent_record,
    coral_auth,
    db_fingerprint,
    impersonating_auth,
    record_body,
    settled_fingerprint,
    signed_message,
    tampered_auth,
)

PUBLIC = "public"  # anyone who can reach the port (directory reads, health, static)
A2A = "a2a"  # the A2A front door: public by that protocol; the gateway agent signs
AGENT = "agent"  # a signed Coral request value
LEDGER = "ledger"  # a signed Coral request value or the admin bearer token
ADMIN = "admin"  # the admin bearer token only
SIGNED_BODY = "signed_body"  # the body itself is a signed message, record or document
CAPABILITY = "capability"  # an unguessable secret in the path (MCP)
NODE = "node"  # a node key signature in coral-node-auth


@dataclass(frozen=True)
class Rule:
    """Who may call one route, and a concrete target for the calls."""

    access: str
    path: str = ""
    #: Body for the refused calls when the route needs one to reach authorization.
    body: str = ""
    #: A valid agent who does not own the resource must be refused.
    owner_scoped: bool = False


HTTP_MATRIX: dict[tuple[str, str], Rule] = {
    ("GET", "/healthz"): Rule(PUBLIC, "/healthz"),
    ("GET", "/v1/node"): Rule(PUBLIC, "/v1/node"),
    ("GET", "/metrics"): Rule(PUBLIC, "/metrics"),
    ("GET", "/v1/agents"): Rule(PUBLIC, "/v1/agents"),
    ("GET", "/v1/agents/{ref}"): Rule(PUBLIC, "/v1/agents/{alice}"),
    ("GET", "/v1/strategies"): Rule(PUBLIC, "/v1/strategies"),
    ("GET", "/v1/peers"): Rule(PUBLIC, "/v1/peers"),
    ("POST", "/v1/ledger/receipts/verify"): Rule(PUBLIC, "/v1/ledger/receipts/verify", "{}"),
    ("GET", "/"): Rule(PUBLIC, "/"),
    ("GET", "/dashboard/static/{name}"): Rule(PUBLIC, "/dashboard/static/dashboard.css"),
    # Read-only dashboard views are open on a loopback listener only (see routes.py).
    ("GET", "/v1/dashboard/snapshot"): Rule(PUBLIC, "/v1/dashboard/snapshot"),
    ("GET", "/v1/dashboard/events"): Rule(PUBLIC, ""),
    ("GET", "/.well-known/agent-card.json"): Rule(PUBLIC, "/.well-known/agent-card.json"),
    ("GET", "/.well-known/jwks.json"): Rule(PUBLIC, "/.well-known/jwks.json"),
    ("POST", "/a2a"): Rule(A2A, "/a2a", '{"jsonrpc":"2.0"}'),
    ("POST", "/a2a/jsonrpc"): Rule(A2A, "/a2a/jsonrpc", '{"jsonrpc":"2.0"}'),
    # Agents' cards, JSON-RPC and HTTP+JSON under /a2a/{name}/..., the router's HTTP+JSON.
    ("*", "/a2a/{tail}"): Rule(A2A, "/a2a/message:send", "{}"),
    ("POST", "/v1/messages/verify"): Rule(SIGNED_BODY, "/v1/messages/verify"),
    ("POST", "/v1/messages"): Rule(SIGNED_BODY, "/v1/messages", owner_scoped=True),
    ("POST", "/v1/agents"): Rule(SIGNED_BODY, "/v1/agents"),
    # Key rotation (coral/agents/keyrotation.py); skipped until the node serves it.
    ("POST", "/v1/agents/rotate"): Rule(SIGNED_BODY, "/v1/agents/rotate"),
    ("POST", "/v1/teams"): Rule(SIGNED_BODY, "/v1/teams"),
    ("POST", "/v1/teams/{team_id}/documents"): Rule(
        SIGNED_BODY, "/v1/teams/{team}/documents", owner_scoped=True
    ),
    ("GET", "/v1/threads"): Rule(AGENT, "/v1/threads"),
    ("GET", "/v1/threads/{thread_id}"): Rule(AGENT, "/v1/threads/{thread}", owner_scoped=True),
    ("GET", "/v1/threads/{thread_id}/messages"): Rule(
        AGENT, "/v1/threads/{thread}/messages", owner_scoped=True
    ),
    ("GET", "/v1/inbox"): Rule(AGENT, "/v1/inbox?timeout_ms=0"),
    ("GET", "/v1/inbox/events"): Rule(AGENT, "/v1/inbox/events"),
    ("GET", "/v1/teams"): Rule(AGENT, "/v1/teams"),
    ("GET", "/v1/teams/{team_id}"): Rule(AGENT, "/v1/teams/{team}", owner_scoped=True),
    ("GET", "/v1/teams/{team_id}/candidates"): Rule(
        AGENT, "/v1/teams/{team}/candidates", owner_scoped=True
    ),
    ("GET", "/v1/ledger/accounts/{account}"): Rule(
        LEDGER, "/v1/ledger/accounts/{alice}", owner_scoped=True
    ),
    ("GET", "/v1/ledger/accounts/{account}/history"): Rule(
        LEDGER, "/v1/ledger/accounts/{alice}/history", owner_scoped=True
    ),
    ("POST", "/v1/ledger/transfers"): Rule(
        LEDGER,
        "/v1/ledger/transfers",
        '{"transfer_id":"steal-1","from":"{alice}","to":"{mallory}","amount":1}',
        owner_scoped=True,
    ),
    ("GET", "/v1/ledger/transfers/{transfer_id}/receipt"): Rule(
        LEDGER, "/v1/ledger/transfers/fund-alice/receipt", owner_scoped=True
    ),
    ("POST", "/v1/ledger/reservations"): Rule(
        LEDGER,
        "/v1/ledger/reservations",
        '{"transfer_id":"steal-2","from":"{alice}","to":"{mallory}","amount":1}',
        owner_scoped=True,
    ),
    # A payer spends only from its own account (the caller): no other owner to check.
    ("POST", "/v1/ledger/remote-payments"): Rule(
        AGENT,
        "/v1/ledger/remote-payments",
        '{"payment_id":"x-1","to":"{alice}","amount":1,"condition":"00","timeout_ms":60000}',
    ),
    ("POST", "/v1/ledger/remote-payments/{payment_id}/fulfil"): Rule(
        AGENT,
        "/v1/ledger/remote-payments/x-1/fulfil",
        '{"preimage":"' + "00" * 32 + '"}',
        owner_scoped=True,
    ),
    ("POST", "/v1/ledger/reservations/{pending_id}/post"): Rule(
        LEDGER, "/v1/ledger/reservations/{pending}/post", '{"transfer_id":"p-1"}', owner_scoped=True
    ),
    ("POST", "/v1/ledger/reservations/{pending_id}/void"): Rule(
        LEDGER, "/v1/ledger/reservations/{pending}/void", '{"transfer_id":"v-1"}', owner_scoped=True
    ),
    ("POST", "/v1/ledger/reservations/{pending_id}/fulfil"): Rule(
        LEDGER,
        "/v1/ledger/reservations/{pending}/fulfil",
        '{"transfer_id":"f-1","preimage":"00"}',
        owner_scoped=True,
    ),
    ("POST", "/v1/admin/ledger/issue"): Rule(
        ADMIN, "/v1/admin/ledger/issue", '{"account":"{mallory}","amount":1000}'
    ),
    ("DELETE", "/v1/admin/peers/{did}"): Rule(ADMIN, "/v1/admin/peers/{node}"),
    ("POST", "/v1/admin/mcp-agents"): Rule(ADMIN, "/v1/admin/mcp-agents", '{"name":"evil"}'),
    ("POST", "/v1/admin/a2a-agents"): Rule(ADMIN, "/v1/admin/a2a-agents", "{}"),
    ("POST", "/v1/admin/launch"): Rule(ADMIN, "/v1/admin/launch", '{"manifest":"x"}'),
    ("GET", "/v1/admin/launched"): Rule(ADMIN, "/v1/admin/launched"),
    ("DELETE", "/v1/admin/launched/{launch_id}"): Rule(ADMIN, "/v1/admin/launched/none"),
    ("POST", "/v1/dashboard/admin/threads/{thread_id}/close"): Rule(
        ADMIN, "/v1/dashboard/admin/threads/{thread}/close", "{}"
    ),
    # MCP endpoints live under a per-agent secret: a wrong secret finds nothing.
    ("GET", "/mcp/v1/{secret}/mcp"): Rule(CAPABILITY, "/mcp/v1/not-the-secret/mcp"),
    ("POST", "/mcp/v1/{secret}/mcp"): Rule(CAPABILITY, "/mcp/v1/not-the-secret/mcp", "{}"),
    ("DELETE", "/mcp/v1/{secret}/mcp"): Rule(CAPABILITY, "/mcp/v1/not-the-secret/mcp"),
    ("GET", "/mcp/v1/{secret}/sse"): Rule(CAPABILITY, "/mcp/v1/not-the-secret/sse"),
    ("GET", "/mcp/v1/{secret}/sse/"): Rule(CAPABILITY, "/mcp/v1/not-the-secret/sse/"),
    ("POST", "/mcp/v1/{secret}/messages/"): Rule(
        CAPABILITY, "/mcp/v1/not-the-secret/messages/", "{}"
    ),
    ("POST", "/mcp/v1/{secret}/messages"): Rule(
        CAPABILITY, "/mcp/v1/not-the-secret/messages", "{}"
    ),
    # coral-server's API: a Bearer key from its config's [auth] keys, or the admin token.
    ("POST", "/api/v1/local/session"): Rule(ADMIN, "/api/v1/local/session", "{}"),
    ("POST", "/api/v1/local/session/{namespace}/{sessionId}"): Rule(
        ADMIN, "/api/v1/local/session/ns/s", "{}"
    ),
    ("GET", "/api/v1/local/session/{namespace}/{sessionId}"): Rule(
        ADMIN, "/api/v1/local/session/ns/s"
    ),
    ("DELETE", "/api/v1/local/session/{namespace}/{sessionId}"): Rule(
        ADMIN, "/api/v1/local/session/ns/s"
    ),
    ("GET", "/api/v1/local/session/{namespace}/{sessionId}/extended"): Rule(
        ADMIN, "/api/v1/local/session/ns/s/extended"
    ),
    ("GET", "/api/v1/local/session/{namespace}/{sessionId}/agent/{agentName}/logs"): Rule(
        ADMIN, "/api/v1/local/session/ns/s/agent/a/logs"
    ),
    ("POST", "/api/v1/local/namespace"): Rule(ADMIN, "/api/v1/local/namespace", "{}"),
    ("GET", "/api/v1/local/namespace"): Rule(ADMIN, "/api/v1/local/namespace"),
    ("GET", "/api/v1/local/namespace/extended"): Rule(ADMIN, "/api/v1/local/namespace/extended"),
    ("GET", "/api/v1/local/namespace/{namespace}"): Rule(ADMIN, "/api/v1/local/namespace/ns"),
    ("GET", "/api/v1/local/namespace/{namespace}/extended"): Rule(
        ADMIN, "/api/v1/local/namespace/ns/extended"
    ),
    ("DELETE", "/api/v1/local/namespace/{namespace}"): Rule(ADMIN, "/api/v1/local/namespace/ns"),
    ("GET", "/api/v1/registry"): Rule(ADMIN, "/api/v1/registry"),
    ("GET", "/api/v1/registry/local/{agentName}/{agentVersion}"): Rule(
        ADMIN, "/api/v1/registry/local/a/1.0.0"
    ),
    ("POST", "/api/v1/puppet/{namespace}/{sessionId}/{agentName}/thread"): Rule(
        ADMIN, "/api/v1/puppet/ns/s/a/thread", "{}"
    ),
    ("DELETE", "/api/v1/puppet/{namespace}/{sessionId}/{agentName}/thread"): Rule(
        ADMIN, "/api/v1/puppet/ns/s/a/thread", "{}"
    ),
    ("POST", "/api/v1/puppet/{namespace}/{sessionId}/{agentName}/thread/message"): Rule(
        ADMIN, "/api/v1/puppet/ns/s/a/thread/message", "{}"
    ),
    ("POST", "/api/v1/puppet/{namespace}/{sessionId}/{agentName}/thread/participant"): Rule(
        ADMIN, "/api/v1/puppet/ns/s/a/thread/participant", "{}"
    ),
    ("DELETE", "/api/v1/puppet/{namespace}/{sessionId}/{agentName}/thread/participant"): Rule(
        ADMIN, "/api/v1/puppet/ns/s/a/thread/participant", "{}"
    ),
    ("DELETE", "/api/v1/puppet/{namespace}/{sessionId}/{agentName}"): Rule(
        ADMIN, "/api/v1/puppet/ns/s/a"
    ),
    ("GET", "/ws/v1/events/{token}/session/{namespace}/{sessionId}"): Rule(
        ADMIN, "/ws/v1/events/not-a-key/session/ns/s"
    ),
    ("GET", "/ws/v1/events/session/{namespace}/{sessionId}"): Rule(
        ADMIN, "/ws/v1/events/session/ns/s"
    ),
    ("GET", "/ws/v1/events/{token}/lsm"): Rule(ADMIN, "/ws/v1/events/not-a-key/lsm"),
    ("GET", "/ws/v1/events/lsm"): Rule(ADMIN, "/ws/v1/events/lsm"),
}

GRPC_MATRIX: dict[str, str] = {
    "coral.v1.NodeService/GetNodeInfo": PUBLIC,
    "coral.v1.NodeService/VerifyMessage": SIGNED_BODY,
    "coral.v1.AgentService/RegisterAgent": SIGNED_BODY,
    "coral.v1.AgentService/GetAgent": PUBLIC,
    "coral.v1.AgentService/ListAgents": PUBLIC,
    "coral.v1.CoordinationService/Submit": SIGNED_BODY,
    "coral.v1.CoordinationService/SubmitStream": SIGNED_BODY,
    "coral.v1.CoordinationService/GetThread": AGENT,
    "coral.v1.CoordinationService/ListThreads": AGENT,
    "coral.v1.CoordinationService/History": AGENT,
    "coral.v1.CoordinationService/Wait": AGENT,
    "coral.v1.CoordinationService/Subscribe": AGENT,
    "coral.v1.LedgerService/GetBalance": LEDGER,
    "coral.v1.LedgerService/Transfer": LEDGER,
    "coral.v1.LedgerService/History": LEDGER,
    "coral.v1.LedgerService/GetReceipt": LEDGER,
    "coral.v1.LedgerService/VerifyReceipt": PUBLIC,
    "coral.v1.LedgerService/Reserve": LEDGER,
    "coral.v1.LedgerService/Post": LEDGER,
    "coral.v1.LedgerService/Void": LEDGER,
    "coral.v1.LedgerService/Fulfil": LEDGER,
    "coral.v1.LedgerService/Issue": ADMIN,
    "coral.v1.FederationService/Hello": NODE,
    "coral.v1.FederationService/GossipHashes": NODE,
    "coral.v1.FederationService/GossipExchange": NODE,
    "coral.v1.FederationService/Deliver": NODE,
    "coral.v1.FederationService/DeliverBatch": NODE,
}
#: Whole services that are public by their protocol (A2A: other vendors' agents).
GRPC_PUBLIC_SERVICES = {"lf.a2a.v1.A2AService", "a2a.v1.A2AService"}


@dataclass
class World:
    """A node with three agents, a thread, funds, a reservation and a team."""

    node: ThreadedNode
    alice: Identity
    bob: Identity
    mallory: Identity
    names: dict[str, str] = field(default_factory=dict)

    def fill(self, text: str) -> str:
        for key, value in self.names.items():
            text = text.replace("{" + key + "}", value)
        return text


async def _post(session: aiohttp.ClientSession, url: str, body: bytes, **headers: str) -> Any:
    headers = {"Content-Type": "application/json", **headers}
    async with session.post(url, data=body, headers=headers) as resp:
        payload = await resp.json(content_type=None)
        assert resp.status < 300, (url, resp.status, payload)
        return payload


async def _build_world(node: ThreadedNode) -> dict[str, str]:
    alice, bob, mallory = WORLD_KEYS
    base = node.http
    admin = {"Authorization": f"Bearer {node.admin_token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        for agent, name in ((alice, "alice"), (bob, "bob"), (mallory, "mallory")):
            await _post(
                session, base + "/v1/agents", record_body(agent_record(agent, node.node_id, name))
            )
        create = signed_message(
            alice,
            kind="thread.create",
            data={"name": "private", "participants": [alice.did, bob.did], "strategy": "broadcast"},
        )
        thread = (await _post(session, base + "/v1/messages", message_to_json(create)))["thread"]
        issue = json.dumps({"account": alice.did, "amount": 100, "transfer_id": "fund-alice"})
        await _post(session, base + "/v1/admin/ledger/issue", issue.encode(), **admin)
        reserve = json.dumps({"transfer_id": "hold-1", "to": bob.did, "amount": 5}).encode()
        target = "/v1/ledger/reservations"
        held = await _post(
            session,
            base + target,
            reserve,
            Authorization=coral_auth(alice, "POST", target, reserve),
        )
        charter = draft_charter(
            alice,
            goal="a private team",
            roles=(RoleSpec(name="writer"),),
            budget=Money(amount=10),
            deadline_ms=now_ms() + 3_600_000,
            now_ms=now_ms(),
        )
        team = await _post(session, base + "/v1/teams", document_json(charter))
    return {
        "alice": alice.did,
        "bob": bob.did,
        "mallory": mallory.did,
        "node": node.node_id,
        "thread": thread["id"],
        "pending": held["transfer"]["id"],
        "team": team["team_id"],
        "charter_hash": team["charter_hash"],
    }


WORLD_KEYS = (Identity.generate(), Identity.generate(), Identity.generate())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    node = ThreadedNode(tmp_path_factory.mktemp("authz") / "node").start()
    try:
        names = node.call(_build_world(node))
        alice, bob, mallory = WORLD_KEYS
        yield World(node, alice, bob, mallory, names)
    finally:
        node.stop()


def _fingerprint(world: World) -> dict[str, int]:
    """Row counts of the node database and the ledger's own database, once settled."""
    data = world.node.config.data_dir
    counts = {f"node.{k}": v for k, v in settled_fingerprint(data / "coral.db").items()}
    ledger = data / "ledger.db"
    if ledger.exists():
        counts.update({f"ledger.{k}": v for k, v in db_fingerprint(ledger).items()})
    return counts


# -- enumeration ------------------------------------------------------------


def test_served_http_routes_equal_the_matrix_rows(world: World) -> None:
    served = set(world.node.http_routes())
    missing = sorted(f"{m} {p}" for m, p in served - set(HTTP_MATRIX))
    gone = sorted(f"{m} {p}" for m, p in set(HTTP_MATRIX) - served)
    assert not missing, f"HTTP routes without an authorization matrix entry: {missing}"
    assert not gone, f"matrix rows whose HTTP route is no longer served: {gone}"


def _grpc_methods(world: World) -> list[tuple[str, Any]]:
    pool = descriptor_pool.Default()
    found = []
    for service_name in world.node.grpc_service_names():
        service = pool.FindServiceByName(service_name)
        for method in service.methods:
            found.append((f"{service_name}/{method.name}", method))
    return found


def test_served_grpc_methods_equal_the_matrix_rows(world: World) -> None:
    served = {name for name, _ in _grpc_methods(world)}
    missing = sorted(
        name for name in served - set(GRPC_MATRIX) if name.split("/")[0] not in GRPC_PUBLIC_SERVICES
    )
    gone = sorted(set(GRPC_MATRIX) - served)
    assert not missing, f"gRPC methods without an authorization matrix entry: {missing}"
    assert not gone, f"matrix rows whose gRPC method is no longer served: {gone}"


# -- HTTP -------------------------------------------------------------------


def _bad_identities(world: World, method: str, target: str, body: bytes) -> dict[str, str | None]:
    """Authorization values that must all be refused with 401."""
    return {
        "none": None,
        "malformed": 'Coral did="x"',
        "wrong_bearer": "Bearer not-the-token",
        "forged_signature": tampered_auth(world.mallory, method, target, body),
        "stale_timestamp": coral_auth(world.alice, method, target, body, ts=now_ms() - 3_600_000),
        "another_agents_did": impersonating_auth(
            world.mallory, world.alice.did, method, target, body
        ),
    }


async def _call(
    session: aiohttp.ClientSession,
    world: World,
    method: str,
    target: str,
    body: bytes,
    auth: str | None,
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"} if body else {}
    if auth is not None:
        headers["Authorization"] = auth
    timeout = aiohttp.ClientTimeout(total=15)
    async with session.request(
        method, world.node.http + target, data=body or None, headers=headers, timeout=timeout
    ) as resp:
        raw = await resp.read()
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {"raw": raw[:200]}
        return resp.status, payload if isinstance(payload, dict) else {"value": payload}


def _signed_body_variants(world: World, route: str) -> dict[str, bytes]:
    """For routes whose body carries the signature: unsigned, forged, someone else's did."""
    alice, mallory = world.alice, world.mallory
    node_id = world.node.node_id
    if route in ("/v1/messages", "/v1/messages/verify"):
        good = signed_message(alice, thread=world.names["thread"], text="hi")
        forged = good.model_copy(update={"parts": signed_message(alice, text="other").parts})
        claimed = signed_message(mallory, thread=world.names["thread"], text="hi").model_copy(
            update={"sender": alice.did}
        )
        return {
            "unsigned": message_to_json(good.model_copy(update={"signature": None})),
            "forged_signature": message_to_json(forged),
            "another_agents_did": message_to_json(claimed),
        }
    if route == "/v1/agents":
        good = agent_record(alice, node_id, "alice")
        forged = good.model_copy(
            update={"manifest": good.manifest.model_copy(update={"name": "evil"})}
        )
        claimed = agent_record(mallory, node_id, "alice").model_copy(update={"agent": alice.did})
        return {
            "unsigned": record_body(good.model_copy(update={"agent_signature": None})),
            "forged_signature": record_body(forged),
            "another_agents_did": record_body(claimed),
        }
    if route == "/v1/agents/rotate":
        return _rotation_variants(world)
    if route.startswith("/v1/teams"):
        charter = draft_charter(
            alice,
            goal="g",
            roles=(RoleSpec(name="writer"),),
            budget=Money(amount=1),
            deadline_ms=now_ms() + 600_000,
            now_ms=now_ms(),
        )
        forged = charter.model_copy(update={"goal": "changed"})
        claimed = draft_charter(
            mallory,
            goal="g",
            roles=(RoleSpec(name="writer"),),
            budget=Money(amount=1),
            deadline_ms=now_ms() + 600_000,
            now_ms=now_ms(),
        ).model_copy(update={"initiator": alice.did})
        if route != "/v1/teams":
            invitation = _invitation(world, alice)
            forged_inv = invitation.model_copy(update={"role": "reader"})
            claimed_inv = _invitation(world, mallory).model_copy(update={"issuer": alice.did})
            return {
                "unsigned": document_json(invitation.model_copy(update={"signature": None})),
                "forged_signature": document_json(forged_inv),
                "another_agents_did": document_json(claimed_inv),
            }
        return {
            "unsigned": document_json(charter.model_copy(update={"signature": None})),
            "forged_signature": document_json(forged),
            "another_agents_did": document_json(claimed),
        }
    raise AssertionError(f"no signed-body variants for {route}")


def _rotation_variants(world: World) -> dict[str, bytes]:
    """Rotations of alice's record that the old key did not (validly) sign."""
    alice, mallory, fresh = world.alice, world.mallory, Identity.generate()
    request = build_agent_rotation(
        agent_record(alice, world.node.node_id, "alice"), alice, fresh, now_ms()
    )
    handover = request.handover

    def body(h: KeyHandover) -> bytes:
        return json.dumps(
            {
                "handover": h.model_dump(mode="json"),
                "tombstone": request.tombstone.model_dump(mode="json"),
                "replacement": request.replacement.model_dump(mode="json"),
            }
        ).encode()

    stolen = issue_handover(mallory, fresh, now_ms()).model_copy(update={"old_did": alice.did})
    return {
        "unsigned": body(handover.model_copy(update={"old_signature": None})),
        "forged_signature": body(handover.model_copy(update={"note": "changed"})),
        "another_agents_did": body(stolen),
    }


def _invitation(world: World, issuer: Identity) -> Invitation:
    now = now_ms()
    return Invitation(
        team_id=world.names["team"],
        issued_at=now,
        charter_hash=world.names["charter_hash"],
        invitation_id=f"inv-{now}-{issuer.did[-6:]}",
        role="writer",
        invitee=world.bob.did,
        issuer=issuer.did,
        expires_at=now + 60_000,
    ).signed_by(issuer)


def _unauthorized_body(world: World, route: str) -> bytes:
    """A correctly signed body from mallory, who has no right to act on the resource."""
    if route == "/v1/messages":
        return message_to_json(
            signed_message(world.mallory, thread=world.names["thread"], text="in")
        )
    return document_json(_invitation(world, world.mallory))


HTTP_ROUTES = sorted(HTTP_MATRIX)


@pytest.mark.parametrize("route", HTTP_ROUTES, ids=[f"{m} {p}" for m, p in HTTP_ROUTES])
async def test_http_route_refuses_the_wrong_callers(world: World, route: tuple[str, str]) -> None:
    method, canonical = route
    rule = HTTP_MATRIX[route]
    if (method, canonical) not in world.node.http_routes():
        pytest.fail(f"{method} {canonical} has a matrix row but is no longer served")
    if method == "*":
        method = "POST"
    target = world.fill(rule.path)
    body = world.fill(rule.body).encode()
    before = _fingerprint(world)
    async with aiohttp.ClientSession() as session:
        if rule.access in (PUBLIC, A2A):
            if not target:
                return  # a stream: nothing to refuse, and covered by the dashboard tests
            status, payload = await _call(session, world, method, target, body, None)
            assert status < 500, (route, status, payload)
            assert status not in (401, 403), f"{route} is listed public but refused: {payload}"
        elif rule.access == CAPABILITY:
            status, payload = await _call(session, world, method, target, body, None)
            assert status in (401, 403, 404), (route, status, payload)
        elif rule.access == SIGNED_BODY:
            for variant, bad in _signed_body_variants(world, canonical).items():
                status, payload = await _call(session, world, method, target, bad, None)
                assert status == 401, (route, variant, status, payload)
            if rule.owner_scoped:
                bad = _unauthorized_body(world, canonical)
                status, payload = await _call(session, world, method, target, bad, None)
                assert status in (403, 404), (route, "unauthorized", status, payload)
        else:
            for variant, auth in _bad_identities(world, method, target, body).items():
                status, payload = await _call(session, world, method, target, body, auth)
                assert status == 401, (route, variant, status, payload)
            if rule.access == ADMIN:
                # A perfectly valid agent is still not the operator.
                auth = coral_auth(world.mallory, method, target, body)
                status, payload = await _call(session, world, method, target, body, auth)
                assert status in (401, 403), (route, "agent_as_admin", status, payload)
            if rule.owner_scoped:
                auth = coral_auth(world.mallory, method, target, body)
                status, payload = await _call(session, world, method, target, body, auth)
                assert status in (403, 404), (route, "not_the_owner", status, payload)
    assert _fingerprint(world) == before, f"{route}: a refused call changed stored state"


# -- gRPC -------------------------------------------------------------------


def _grpc_request(world: World, name: str, method: Any, variant: str) -> Any:
    """A request for ``name``; for signed-body methods, ``variant`` picks the defect."""
    request_class: Callable[[], Any] = message_factory.GetMessageClass(method.input_type)
    names = world.names
    owner_fields = {
        "coral.v1.CoordinationService/GetThread": {"thread_id": names["thread"]},
        "coral.v1.CoordinationService/History": {"thread_id": names["thread"]},
        "coral.v1.LedgerService/GetBalance": {"account": names["alice"]},
        "coral.v1.LedgerService/History": {"account": names["alice"]},
        "coral.v1.LedgerService/GetReceipt": {"transfer_id": "fund-alice"},
        "coral.v1.LedgerService/Transfer": {
            "transfer_id": "steal-g",
            "from_account": names["alice"],
            "to_account": names["mallory"],
            "amount": 1,
        },
    }
    if GRPC_MATRIX.get(name) == SIGNED_BODY:
        alice, mallory = world.alice, world.mallory
        if name.endswith("RegisterAgent"):
            from coral.api.grpc.convert import record_to_proto

            good = agent_record(alice, world.node.node_id, "alice")
            bad = {
                "unsigned": good.model_copy(update={"agent_signature": None}),
                "forged_signature": good.model_copy(
                    update={"manifest": good.manifest.model_copy(update={"name": "evil"})}
                ),
                "another_agents_did": agent_record(mallory, world.node.node_id, "alice").model_copy(
                    update={"agent": alice.did}
                ),
            }[variant]
            return agents_pb2.RegisterAgentRequest(record=record_to_proto(bad))
        good_msg = signed_message(alice, thread=names["thread"], text="hi")
        bad_msg = {
            "unsigned": good_msg.model_copy(update={"signature": None}),
            "forged_signature": good_msg.model_copy(
                update={"parts": signed_message(alice, text="x").parts}
            ),
            "another_agents_did": signed_message(
                mallory, thread=names["thread"], text="hi"
            ).model_copy(update={"sender": alice.did}),
            "unauthorized": signed_message(mallory, thread=names["thread"], text="in"),
        }[variant]
        if name.endswith("Submit") or name.endswith("SubmitStream"):
            return coordination_pb2.SubmitRequest(message=message_to_proto(bad_msg))
        return node_pb2.VerifyMessageRequest(message=message_to_proto(bad_msg))
    request = request_class(**owner_fields.get(name, {}))
    if name.endswith("/Wait") or name.endswith("/Subscribe"):
        request.kind = "message"
        request.timeout_ms = 0
    return request


async def _grpc_call(
    channel: grpc.aio.Channel,
    name: str,
    method: Any,
    request: Any,
    metadata: tuple[tuple[str, str], ...],
) -> grpc.StatusCode:
    path = "/" + name
    try:
        if method.client_streaming:
            # SubmitStream: each message is answered with its own status; the call goes on.
            bidi = channel.stream_stream(
                path,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=coordination_pb2.SubmitStreamResponse.FromString,
            )
            call = bidi(metadata=metadata, timeout=10)
            await call.write(request)
            answer = await call.read()
            call.cancel()
            assert answer.message_id == request.message.id
            if answer.HasField("error"):
                return next(c for c in grpc.StatusCode if c.value[0] == answer.error.code)
            return grpc.StatusCode.OK
        if method.server_streaming:
            stream = channel.unary_stream(
                path,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=bytes,
            )
            call = stream(request, metadata=metadata, timeout=10)
            async for _ in call:
                break
            call.cancel()
        else:
            unary = channel.unary_unary(
                path,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=bytes,
            )
            await unary(request, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _grpc_bad_metadata(
    world: World, name: str, request: Any, key: str
) -> dict[str, tuple[tuple[str, str], ...]]:
    target, body = "/" + name, request.SerializeToString()
    return {
        "none": (),
        "malformed": ((key, 'Coral did="x"'),),
        "forged_signature": ((key, tampered_auth(world.mallory, "RPC", target, body)),),
        "stale_timestamp": (
            (key, coral_auth(world.alice, "RPC", target, body, ts=now_ms() - 3_600_000)),
        ),
        "another_agents_did": (
            (key, impersonating_auth(world.mallory, world.alice.did, "RPC", target, body)),
        ),
    }


GRPC_NAMES = sorted(GRPC_MATRIX)
REFUSED_OWNER = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND}


@pytest.mark.parametrize("name", GRPC_NAMES)
async def test_grpc_method_refuses_the_wrong_callers(world: World, name: str) -> None:
    methods = dict(_grpc_methods(world))
    if name not in methods:
        pytest.fail(f"{name} has a matrix row but is no longer served")
    method, access = methods[name], GRPC_MATRIX[name]
    before = _fingerprint(world)
    async with grpc.aio.insecure_channel(world.node.grpc) as channel:
        if access == PUBLIC:
            request = _grpc_request(world, name, method, "")
            code = await _grpc_call(channel, name, method, request, ())
            assert code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INTERNAL), (
                name,
                code,
            )
        elif access == SIGNED_BODY:
            for variant in ("unsigned", "forged_signature", "another_agents_did"):
                request = _grpc_request(world, name, method, variant)
                code = await _grpc_call(channel, name, method, request, ())
                assert code == grpc.StatusCode.UNAUTHENTICATED, (name, variant, code)
            if name.endswith("/Submit") or name.endswith("/SubmitStream"):
                request = _grpc_request(world, name, method, "unauthorized")
                code = await _grpc_call(channel, name, method, request, ())
                assert code in REFUSED_OWNER, (name, "unauthorized", code)
        else:
            key = "coral-node-auth" if access == NODE else "coral-auth"
            request = _grpc_request(world, name, method, "")
            for variant, metadata in _grpc_bad_metadata(world, name, request, key).items():
                code = await _grpc_call(channel, name, method, request, metadata)
                assert code == grpc.StatusCode.UNAUTHENTICATED, (name, variant, code)
            if access in (LEDGER, ADMIN):
                wrong = (("authorization", "Bearer not-the-token"),)
                code = await _grpc_call(channel, name, method, request, wrong)
                assert code == grpc.StatusCode.UNAUTHENTICATED, (name, "wrong_bearer", code)
            body = request.SerializeToString()
            mallory = (("coral-auth", coral_auth(world.mallory, "RPC", "/" + name, body)),)
            if access == ADMIN:
                code = await _grpc_call(channel, name, method, request, mallory)
                assert code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
            elif access in (AGENT, LEDGER) and name in OWNER_SCOPED_GRPC:
                code = await _grpc_call(channel, name, method, request, mallory)
                assert code in REFUSED_OWNER, (name, "not_the_owner", code)
    assert _fingerprint(world) == before, f"{name}: a refused call changed stored state"


OWNER_SCOPED_GRPC = {
    "coral.v1.CoordinationService/GetThread",
    "coral.v1.CoordinationService/History",
    "coral.v1.LedgerService/GetBalance",
    "coral.v1.LedgerService/History",
    "coral.v1.LedgerService/GetReceipt",
    "coral.v1.LedgerService/Transfer",
}


def test_world_fixture_really_holds_private_resources(world: World) -> None:
    """Guard against a vacuous matrix: the owner-scoped resources exist."""
    counts = _fingerprint(world)
    assert counts["node.coordination_threads"] >= 1
    assert any(k.startswith("ledger.") and v > 0 for k, v in counts.items()), counts
    assert world.names["thread"] and world.names["team"] and world.names["pending"]
    assert Path(world.node.config.db_path).exists()
