"""match_candidates: capabilities, price ceilings, verified records only."""

from __future__ import annotations

from team_builders import DEADLINE, T0, identity

from coral.protocol.agent import (
    AgentManifest,
    AgentRecord,
    Price,
    countersign_record,
    sign_record_as_agent,
)
from coral.teams import Money, RoleSpec, draft_charter, match_candidates

NODE = identity(9000)


def record(n: int, caps: tuple[str, ...], prices: dict[str, tuple[int, str]]) -> AgentRecord:
    agent = identity(n)
    body = AgentRecord(
        agent=agent.did,
        home_node=NODE.did,
        manifest=AgentManifest(
            name=f"agent-{n}",
            capabilities=caps,
            prices=tuple(
                Price(capability=c, amount=a, currency=cur) for c, (a, cur) in prices.items()
            ),
        ),
        version=1,
        updated_at=T0,
    )
    return countersign_record(sign_record_as_agent(body, agent), NODE)


def test_roles_get_capable_affordable_verified_candidates_cheapest_first() -> None:
    charter = draft_charter(
        identity(1),
        goal="forecast",
        roles=(
            RoleSpec(name="analyst", capabilities=("timeseries",), max_price=20),
            RoleSpec(name="writer", capabilities=("text", "summarize")),
        ),
        budget=Money(amount=100),
        deadline_ms=DEADLINE,
        now_ms=T0,
    )
    cheap = record(10, ("timeseries",), {"timeseries": (5, "CRL")})
    pricey = record(11, ("timeseries",), {"timeseries": (50, "CRL")})
    foreign = record(12, ("timeseries",), {"timeseries": (1, "EUR")})
    free = record(13, ("timeseries", "text", "summarize"), {})
    half_writer = record(14, ("text",), {})
    unsigned = cheap.model_copy(update={"agent": identity(15).did})
    deleted = record(16, ("timeseries",), {}).model_copy(update={"deleted": True})
    matches = match_candidates(
        charter, [pricey, cheap, foreign, free, half_writer, unsigned, deleted]
    )
    assert [r.agent for r in matches["analyst"]] == [free.agent, cheap.agent]
    assert [r.agent for r in matches["writer"]] == [free.agent]
    unverified = match_candidates(charter, [unsigned], verify=False)
    assert [r.agent for r in unverified["analyst"]] == [unsigned.agent]
