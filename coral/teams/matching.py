"""Candidate matching: which directory entries could fill which charter role."""

from __future__ import annotations

from coral.protocol.agent import AgentRecord, verify_record
from coral.protocol.errors import SignatureError
from coral.teams.documents import RoleSpec, TeamCharter


def quote_for_role(record: AgentRecord, role: RoleSpec, currency: str) -> int | None:
    """What the agent's manifest asks for the role's capabilities, or None if not comparable.

    An unpriced capability counts as free; a price in another currency makes
    the quote unknown, which only matters when the role has a price ceiling.
    """
    total = 0
    for capability in role.capabilities:
        for price in record.manifest.prices:
            if price.capability != capability:
                continue
            if price.currency != currency:
                return None
            total += price.amount
    return total


def match_candidates(
    charter: TeamCharter, records: list[AgentRecord], *, verify: bool = True
) -> dict[str, list[AgentRecord]]:
    """Map each role to the records that can fill it, cheapest first (ties by did).

    A record qualifies when it is live, offers every capability the role
    requires and, if the role has ``max_price``, quotes no more than that in
    the budget currency. With ``verify`` (default) unverifiable records are skipped.
    """
    currency = charter.budget.currency
    live: list[AgentRecord] = []
    for record in records:
        if record.deleted or record.agent == charter.initiator:
            continue
        if verify:
            try:
                verify_record(record)
            except SignatureError:
                continue
        live.append(record)
    matches: dict[str, list[AgentRecord]] = {}
    for role in charter.roles:
        priced: list[tuple[int, str, AgentRecord]] = []
        for record in live:
            if not set(role.capabilities) <= set(record.manifest.capabilities):
                continue
            quote = quote_for_role(record, role, currency)
            if role.max_price is not None and (quote is None or quote > role.max_price):
                continue
            priced.append((quote or 0, record.agent, record))
        matches[role.name] = [record for _, _, record in sorted(priced, key=lambda t: t[:2])]
    return matches
