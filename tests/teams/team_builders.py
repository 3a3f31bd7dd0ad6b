"""Builders for real, fully signed teams (real keys, real signatures, no mocks).

Imported by the team tests as ``team_builders`` (pytest puts this folder on sys.path).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from coral.protocol.agent import (
    AgentManifest,
    AgentRecord,
    Price,
    countersign_record,
    sign_record_as_agent,
)
from coral.protocol.identity import Identity
from coral.teams import (
    Money,
    RoleSpec,
    SignedTeamDocument,
    TeamKey,
    TeamRecord,
    TeamState,
    accept,
    certify,
    draft_charter,
    invite,
    new_key_epoch,
)

DocumentT = TypeVar("DocumentT", bound=SignedTeamDocument)

T0 = 1_700_000_000_000
DEADLINE = T0 + 3_600_000
MINUTE = 60_000


def identity(n: int) -> Identity:
    """A deterministic identity, so hypothesis failures replay exactly."""
    return Identity.from_seed(n.to_bytes(4, "big") * 8)


def agent_record(agent: Identity, node: Identity, capabilities: tuple[str, ...]) -> AgentRecord:
    """A directory record signed by the agent and countersigned by its home node."""
    record = AgentRecord(
        agent=agent.did,
        home_node=node.did,
        manifest=AgentManifest(
            name="worker",
            capabilities=capabilities,
            prices=tuple(Price(capability=c, amount=10) for c in capabilities),
        ),
        version=1,
        updated_at=T0 - MINUTE,
    )
    return countersign_record(sign_record_as_agent(record, agent), node)


@dataclass
class Team:
    """A formed team: identities, the applied documents, state and the epoch key."""

    initiator: Identity
    members: list[Identity]
    state: TeamState
    documents: list[SignedTeamDocument] = field(default_factory=list)
    key: TeamKey | None = None
    now: int = T0

    def record(self) -> TeamRecord:
        return TeamRecord(charter=self.state.charter, documents=tuple(self.documents))

    def tick(self, ms: int = 1_000) -> int:
        self.now += ms
        return self.now

    def add(self, document: DocumentT) -> DocumentT:
        """Apply to the live state and remember it for the record."""
        self.state.apply(document, self.now, live=True)
        self.documents.append(document)
        return document


def form_team(
    size: int,
    *,
    roles: tuple[RoleSpec, ...] | None = None,
    empowered_roles: tuple[str, ...] = (),
    with_key: bool = True,
    with_agent_records: bool = False,
    budget: int = 10_000,
    first_seed: int = 1,
) -> Team:
    """Charter, invitation, acceptance and certificate for ``size`` members, then epoch 1."""
    initiator = identity(first_seed)
    members = [identity(first_seed + 1 + i) for i in range(size)]
    node = identity(first_seed + 10_000)
    seats = max(size, 2)
    default_role = RoleSpec(name="worker", capabilities=("compute",), count=seats, max_price=100)
    roles = roles or (default_role,)
    charter = draft_charter(
        initiator,
        goal="answer the question",
        roles=roles,
        budget=Money(amount=budget, currency="CRL"),
        deadline_ms=DEADLINE,
        now_ms=T0,
        empowered_roles=empowered_roles,
        team_id="team-test",
    )
    team = Team(initiator, members, TeamState(charter, T0))
    role_for = [role.name for role in roles for _ in range(role.count)]
    for index, member in enumerate(members):
        invitation = team.add(
            invite(
                team.state,
                initiator,
                invitee=member.did,
                role=role_for[index],
                now_ms=team.tick(),
                ttl_ms=10 * MINUTE,
                invitation_id=f"inv-{index}",
            )
        )
        acceptance = team.add(
            accept(invitation, member, price=50, currency="CRL", now_ms=team.tick())
        )
        record = None
        if with_agent_records:
            record = agent_record(member, node, roles[0].capabilities)
        team.add(
            certify(team.state, acceptance, initiator, now_ms=team.tick(), agent_record=record)
        )
    if with_key:
        key_epoch, team.key = new_key_epoch(team.state, initiator, team.tick())
        team.add(key_epoch)
    return team
