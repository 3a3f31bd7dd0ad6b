"""coral-server's ``SessionRequest`` and its agent graph, checked against the registry.

The JSON shapes are coral-server 1.2's (discriminators ``type`` and ``mode``,
camelCase names). ``resolve_graph`` turns a request's graph into launchable
agents or raises ``InvalidGraph`` (HTTP 400) naming the first problem, before
anything is created: a refused request leaves nothing behind. coral-server
answers some of these with a 500; its documentation says 400, which we follow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from coral.protocol.errors import InvalidMessage
from coral.sessions.manifest import RegistryAgent
from coral.sessions.options import InvalidOption, check_value
from coral.sessions.registry import AgentRegistry


class InvalidGraph(InvalidMessage):
    """The session request or its agent graph cannot be run (the detail says why)."""

    reason = "invalid_agent_graph"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)


class RegistrySourceId(_Model):
    type: Literal["local", "marketplace", "linked"] = "local"
    linkedServerId: str | None = None


class RegistryAgentId(_Model):
    name: str
    version: str
    registrySourceId: RegistrySourceId = Field(default_factory=RegistrySourceId)


class LocalProvider(_Model):
    type: Literal["local"]
    runtime: Literal["executable", "docker", "function", "prototype"]


class OtherProvider(_Model):
    type: Literal["linked", "remote_request", "remote"]
    runtime: str = ""


Provider = Annotated[LocalProvider | OtherProvider, Field(discriminator="type")]


class Plugin(_Model):
    type: Literal["close_session_tool"]


class GraphAgentRequest(_Model):
    id: RegistryAgentId
    name: Annotated[str, Field(min_length=1, max_length=64)]
    description: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    systemPrompt: str | None = None
    blocking: bool | None = None
    customToolAccess: list[str] = Field(default_factory=list)
    plugins: list[Plugin] = Field(default_factory=list)
    provider: Provider
    annotations: dict[str, str] = Field(default_factory=dict)


class HttpToolTransport(_Model):
    type: Literal["http"]
    url: Annotated[str, Field(pattern=r"^https?://")]
    signatureHeader: str = "X-Coral-Signature"


class CustomTool(_Model):
    """A graph-level tool answered by the app over HTTP (coral-server's ``GraphAgentTool``)."""

    transport: HttpToolTransport
    inputSchema: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    description: str | None = None
    title: str | None = None


class AgentGraphRequest(_Model):
    agents: list[GraphAgentRequest]
    groups: list[list[str]] = Field(default_factory=list)
    customTools: dict[str, CustomTool] = Field(default_factory=dict)


class NamespaceRequest(_Model):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    deleteOnLastSessionExit: bool = True
    annotations: dict[str, str] = Field(default_factory=dict)


class UseExisting(_Model):
    type: Literal["use_existing"]
    name: str


class CreateIfNotExists(_Model):
    type: Literal["create_if_not_exists"]
    namespaceRequest: NamespaceRequest


NamespaceProvider = Annotated[UseExisting | CreateIfNotExists, Field(discriminator="type")]


class PersistenceNone(_Model):
    mode: Literal["none"]


class MinimumTime(_Model):
    mode: Literal["minimum_time"]
    time: Annotated[int, Field(ge=0)]


class HoldAfterExit(_Model):
    mode: Literal["hold_after_exit"]
    duration: Annotated[int, Field(ge=0)]


Persistence = Annotated[PersistenceNone | MinimumTime | HoldAfterExit, Field(discriminator="mode")]


class SessionEndWebhook(_Model):
    url: Annotated[str, Field(pattern=r"^https?://")]


class SessionWebhooks(_Model):
    sessionEnd: SessionEndWebhook | None = None


class RuntimeSettings(_Model):
    ttl: Annotated[int, Field(gt=0)] | None = None
    extendedEndReport: bool = False
    persistenceMode: Persistence = Field(default_factory=lambda: PersistenceNone(mode="none"))
    webhooks: SessionWebhooks = Field(default_factory=SessionWebhooks)


class Immediate(_Model):
    mode: Literal["immediate"]
    runtimeSettings: RuntimeSettings = Field(default_factory=RuntimeSettings)


class Defer(_Model):
    mode: Literal["defer"]


Execution = Annotated[Immediate | Defer, Field(discriminator="mode")]


class SessionRequest(_Model):
    """coral-server 1.2's ``POST /api/v1/local/session`` body."""

    agentGraphRequest: AgentGraphRequest
    namespaceProvider: NamespaceProvider
    execution: Execution = Field(default_factory=lambda: Immediate(mode="immediate"))
    annotations: dict[str, str] = Field(default_factory=dict)


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


def parse_session_request(body: Any) -> SessionRequest:
    """Parse a SessionRequest; InvalidGraph names the first bad field."""
    try:
        return SessionRequest.model_validate(body)
    except ValidationError as exc:
        raise InvalidGraph(f"invalid session request: {_first_error(exc)}") from None


def parse_runtime_settings(body: Any) -> RuntimeSettings:
    """Parse the body of a deferred session's start (SessionRuntimeSettings)."""
    try:
        return RuntimeSettings.model_validate(body if body is not None else {})
    except ValidationError as exc:
        raise InvalidGraph(f"invalid runtime settings: {_first_error(exc)}") from None


@dataclass(frozen=True)
class GraphAgent:
    """One agent of a checked graph: registry entry, option values, runtime."""

    name: str
    agent: RegistryAgent
    runtime: str
    options: Mapping[str, Any]
    description: str
    system_prompt: str | None = None
    blocking: bool = False
    plugins: frozenset[str] = frozenset()
    annotations: Mapping[str, str] = field(default_factory=dict)
    links: frozenset[str] = frozenset()
    #: The graph's custom tools this agent may call, by tool name.
    custom_tools: Mapping[str, CustomTool] = field(default_factory=dict)


def _resolve_agent(request: GraphAgentRequest, registry: AgentRegistry) -> GraphAgent:
    ident = request.id
    if ident.registrySourceId.type != "local":
        raise InvalidGraph(
            f"agent {request.name!r}: only the local registry is served here"
            f" (not {ident.registrySourceId.type})"
        )
    agent = registry.agents.get((ident.name, ident.version))
    if agent is None:
        raise InvalidGraph(
            f"agent {request.name!r}: {ident.name}:{ident.version} is not in the registry",
            reason="unknown_agent",
        )
    provider = request.provider
    if not isinstance(provider, LocalProvider):
        raise InvalidGraph(
            f"agent {request.name!r}: provider {provider.type!r} is not supported"
            " (coral-server 1.2 disables remote providers too)"
        )
    if provider.runtime not in agent.runtimes:
        raise InvalidGraph(
            f"agent {request.name!r}: {agent.name} has no {provider.runtime} runtime"
            f" (it has {', '.join(agent.runtimes) or 'none'})"
        )
    unknown = sorted(set(request.options) - set(agent.options))
    if unknown:
        raise InvalidGraph(f"agent {request.name!r} has unknown options: {', '.join(unknown)}")
    values: dict[str, Any] = {
        n: o.default for n, o in agent.options.items() if o.default is not None
    }
    try:
        for name, given in request.options.items():
            values[name] = check_value(agent.options[name], given)
    except InvalidOption as exc:
        raise InvalidGraph(f"agent {request.name!r}: {exc.detail}", reason=exc.reason) from None
    missing = sorted(n for n, o in agent.options.items() if o.required and n not in values)
    if missing:
        raise InvalidGraph(
            f"agent {request.name!r} is missing required options: {', '.join(missing)}"
        )
    return GraphAgent(
        name=request.name,
        agent=agent,
        runtime=provider.runtime,
        options=values,
        description=request.description if request.description is not None else agent.description,
        system_prompt=request.systemPrompt,
        blocking=bool(request.blocking),
        plugins=frozenset(p.type for p in request.plugins),
        annotations=dict(request.annotations),
    )


def resolve_graph(graph: AgentGraphRequest, registry: AgentRegistry) -> list[GraphAgent]:
    """Check the graph and resolve each agent; InvalidGraph on the first problem."""
    if not graph.agents:
        raise InvalidGraph("the agent graph has no agents")
    names = [a.name for a in graph.agents]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidGraph(f"agent graph contains duplicate agent names: {duplicates}")
    missing = sorted({n for group in graph.groups for n in group if n not in names})
    if missing:
        raise InvalidGraph(f"agent graph groups contain missing agents: {missing}")
    clashes = sorted(n for n in graph.customTools if n.startswith("coral_") or not n)
    if clashes:
        raise InvalidGraph(f"custom tool names may not be empty or start with coral_: {clashes}")
    for agent in graph.agents:
        absent = sorted(set(agent.customToolAccess) - set(graph.customTools))
        if absent:
            raise InvalidGraph(
                f"agent {agent.name} uses custom tools that were not provided: {absent}"
            )
    resolved = [
        dataclasses.replace(
            _resolve_agent(a, registry),
            custom_tools={n: graph.customTools[n] for n in sorted(set(a.customToolAccess))},
        )
        for a in graph.agents
    ]
    links: dict[str, set[str]] = {n: set() for n in names}
    for group in graph.groups:
        for member in group:
            links[member] |= set(group) - {member}
    return [dataclasses.replace(a, links=frozenset(links[a.name])) for a in resolved]
