"""Who may call each coral.v1 method, checked once per call by the server interceptor.

Agents sign a call in ``coral-auth`` metadata (method ``RPC``, target the full
method path, body the request bytes as sent); the operator sends
``authorization: Bearer <admin token>``; peer nodes sign in
``coral-node-auth``. The interceptor verifies the rule of the method before
its handler runs and the handler reads the verified caller with
:func:`current_caller`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass

from google.protobuf import descriptor_pool

from coral.api.auth import authenticate_admin, authenticate_agent
from coral.api.context import NodeContext
from coral.protocol.errors import Unauthenticated
from coral.protocol.message import now_ms
from coral.protocol.request_auth import verify_request

#: Metadata key of an agent's request signature.
AGENT_AUTH = "coral-auth"
#: Metadata key of a peer node's request signature.
NODE_AUTH = "coral-node-auth"
#: Metadata key of the operator's ``Bearer <admin token>``.
ADMIN_AUTH = "authorization"


class Rule(enum.Enum):
    """What a method asks of its caller."""

    #: Anyone: the data is public, or the message carries its own signature.
    PUBLIC = "public"
    #: An agent's request signature in ``coral-auth``.
    AGENT = "agent"
    #: The operator's admin token when ``authorization`` is sent, else as AGENT.
    AGENT_OR_ADMIN = "agent_or_admin"
    #: A peer node's request signature in ``coral-node-auth``.
    NODE = "node"


@dataclass(frozen=True, slots=True)
class Caller:
    """The verified caller of the running call: an agent or node did, or the operator."""

    did: str = ""
    admin: bool = False


_COORDINATION = "/coral.v1.CoordinationService/"
_LEDGER = "/coral.v1.LedgerService/"
_FEDERATION = "/coral.v1.FederationService/"

#: Every coral.v1 method and its rule; a service method missing here fails the server's build.
METHOD_RULES: dict[str, Rule] = {
    "/coral.v1.NodeService/GetNodeInfo": Rule.PUBLIC,
    "/coral.v1.NodeService/VerifyMessage": Rule.PUBLIC,
    "/coral.v1.AgentService/RegisterAgent": Rule.PUBLIC,  # the record is signed by its agent
    "/coral.v1.AgentService/GetAgent": Rule.PUBLIC,
    "/coral.v1.AgentService/ListAgents": Rule.PUBLIC,
    _COORDINATION + "Submit": Rule.PUBLIC,  # the message is signed by its sender
    _COORDINATION + "SubmitStream": Rule.PUBLIC,  # every message is signed by its sender
    _COORDINATION + "GetThread": Rule.AGENT,
    _COORDINATION + "ListThreads": Rule.AGENT,
    _COORDINATION + "History": Rule.AGENT,
    _COORDINATION + "Wait": Rule.AGENT,
    _COORDINATION + "Subscribe": Rule.AGENT,
    _LEDGER + "GetBalance": Rule.AGENT_OR_ADMIN,
    _LEDGER + "Transfer": Rule.AGENT_OR_ADMIN,
    _LEDGER + "History": Rule.AGENT_OR_ADMIN,
    _LEDGER + "GetReceipt": Rule.AGENT_OR_ADMIN,
    _LEDGER + "VerifyReceipt": Rule.PUBLIC,  # checks a signature anyone may hold
    _LEDGER + "Reserve": Rule.AGENT_OR_ADMIN,
    _LEDGER + "Post": Rule.AGENT_OR_ADMIN,
    _LEDGER + "Void": Rule.AGENT_OR_ADMIN,
    _LEDGER + "Fulfil": Rule.AGENT_OR_ADMIN,
    _LEDGER + "Issue": Rule.AGENT_OR_ADMIN,
    _FEDERATION + "Hello": Rule.NODE,
    _FEDERATION + "GossipHashes": Rule.NODE,
    _FEDERATION + "GossipExchange": Rule.NODE,
    _FEDERATION + "Deliver": Rule.NODE,
    _FEDERATION + "DeliverBatch": Rule.NODE,
}

# grpc runs every call in its own task, so the value set for a call is seen by
# its handler only and never leaks into another call.
_caller: ContextVar[Caller | None] = ContextVar("coral_grpc_caller", default=None)


def current_caller() -> Caller:
    """The caller the interceptor verified for the running call.

    Raises:
        RuntimeError: the method is PUBLIC (or not a coral.v1 method): a server bug.
    """
    caller = _caller.get()
    if caller is None:
        raise RuntimeError("this gRPC method has no caller rule")
    return caller


def authenticate_call(
    ctx: NodeContext, rule: Rule, metadata: dict[str, str], method: str, body: bytes
) -> None:
    """Check ``rule`` for a call to ``method`` and record its caller for the handler.

    Raises:
        Unauthenticated: the signature or token is missing, stale or wrong.
    """
    if rule is Rule.PUBLIC:
        return
    if rule is Rule.NODE:
        header = metadata.get(NODE_AUTH)
        if not header:
            raise Unauthenticated(
                "node-to-node calls need coral-node-auth", reason="node_auth_required"
            )
        did = verify_request(
            header, "RPC", method, body, now_ms(), ctx.verifier.limits.max_future_skew_ms
        )
        _caller.set(Caller(did=did))
        return
    if rule is Rule.AGENT_OR_ADMIN:
        bearer = metadata.get(ADMIN_AUTH)
        if bearer is not None:
            authenticate_admin(ctx, bearer)
            _caller.set(Caller(admin=True))
            return
    did = authenticate_agent(ctx, metadata.get(AGENT_AUTH) or None, "RPC", method, body)
    _caller.set(Caller(did=did))


def unruled_methods(services: Iterable[str]) -> list[str]:
    """Methods of the coral.v1 ``services`` (full names) that have no rule in METHOD_RULES."""
    pool = descriptor_pool.Default()
    missing = []
    for name in services:
        if not name.startswith("coral.v1."):
            continue
        for method in pool.FindServiceByName(name).methods:
            path = f"/{name}/{method.name}"
            if path not in METHOD_RULES:
                missing.append(path)
    return missing
