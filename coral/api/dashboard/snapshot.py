"""The dashboard's one JSON document: everything an operator sees, built on demand.

Each panel is present only when its subsystem runs on this node (``None``
otherwise), and a panel whose source fails is reported as unavailable rather
than breaking the page. Encrypted parts are summarised as ``"encrypted"``: the
node cannot read them and the dashboard never tries.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from coral import PROTOCOL_VERSION, __version__
from coral.api.context import NodeContext, need
from coral.api.dashboard.ports import DashboardReads
from coral.api.dashboard.rates import RateSampler
from coral.protocol.agent import AgentRecord
from coral.protocol.message import now_ms

log = logging.getLogger("coral.dashboard")

THREADS_SHOWN = 20
TEAMS_SHOWN = 20
LEDGER_ACCOUNTS_SHOWN = 50
LEDGER_PENDING_SHOWN = 50
LEDGER_TRANSFERS_SHOWN = 20
ENTRIES_PER_THREAD = 12
TEXT_CHARS = 2000
DATA_CHARS = 400


def part_summary(part: dict[str, Any]) -> dict[str, str]:
    """A display form of one wire part; ciphertext is never included."""
    kind = str(part.get("type", "unknown"))
    if kind == "text":
        return {"type": "text", "text": str(part.get("text", ""))[:TEXT_CHARS]}
    if kind == "data":
        rendered = json.dumps(part.get("data"), ensure_ascii=False, separators=(",", ":"))
        return {"type": "data", "text": rendered[:DATA_CHARS]}
    if kind == "file":
        return {"type": "file", "text": str(part.get("name") or part.get("uri", ""))}
    if kind == "encrypted":
        return {"type": "encrypted", "text": "encrypted"}
    return {"type": kind, "text": ""}


def system_event(wire: dict[str, Any]) -> dict[str, Any] | None:
    """The event a node-authored entry records (name, who, whom, summary), if any."""
    for part in wire.get("parts", []):
        data = part.get("data") if isinstance(part, dict) else None
        if isinstance(data, dict) and isinstance(data.get("event"), str):
            return {
                "name": data["event"],
                "by": data.get("by") or data.get("creator"),
                "agent": data.get("agent"),
                "summary": data.get("summary"),
            }
    return None


def message_summary(wire: dict[str, Any]) -> dict[str, Any]:
    """The fields of a stored message the operator views need."""
    payment = wire.get("payment")
    return {
        "event": system_event(wire),
        "id": wire.get("id"),
        "kind": wire.get("kind", "message"),
        "sender": wire.get("sender"),
        "mentions": list(wire.get("mentions", [])),
        "created_at": wire.get("created_at"),
        "parts": [part_summary(p) for p in wire.get("parts", []) if isinstance(p, dict)],
        "payment": payment if isinstance(payment, dict) else None,
    }


def agent_summary(record: AgentRecord, node_id: str) -> dict[str, Any]:
    """One directory entry for the agents panel."""
    manifest = record.manifest
    return {
        "did": record.agent,
        "name": manifest.name,
        "description": manifest.description,
        "version": manifest.version,
        "capabilities": list(manifest.capabilities),
        "home_node": record.home_node,
        "local": record.home_node == node_id,
        "updated_at": record.updated_at,
    }


async def _panel(name: str, build: Callable[[], Awaitable[Any]]) -> Any:
    # One failing source (a subsystem mid-restart, a missing table) must not
    # blank the whole page: the panel says it is unavailable instead.
    try:
        return await build()
    except Exception as exc:
        log.warning("dashboard panel %s unavailable: %s", name, exc)
        return {"unavailable": str(exc) or type(exc).__name__}


class SnapshotBuilder:
    """Builds the dashboard snapshot from the node's context and its read-only views."""

    def __init__(self, ctx: NodeContext, reads: DashboardReads, rates: RateSampler) -> None:
        self.ctx = ctx
        self.reads = reads
        self.rates = rates

    def actions(self) -> dict[str, bool]:
        """Which operator actions this node can perform right now."""
        ctx = self.ctx
        return {
            "close_thread": ctx.coordination is not None,
            "issue_funds": ctx.ledger is not None and ctx.config.dev_mode,
            "create_mcp_agent": ctx.held_agents is not None,
            "remove_peer": ctx.federation is not None,
        }

    async def build(self) -> dict[str, Any]:
        """The full snapshot; ``generated_at`` is the only field that changes by itself.

        Waits while the node sets up its late subsystems (their panels depend on them).

        Raises:
            NodeNotReady: their set-up failed.
        """
        ctx = self.ctx
        await ctx.wired()
        return {
            "node": self.node(),
            "actions": self.actions(),
            "views_need_token": not views_are_open(ctx),
            "agents": await _panel("agents", self.agents),
            "threads": await _panel("threads", self.threads),
            "teams": await _panel("teams", self.teams) if ctx.teams is not None else None,
            "ledger": await _panel("ledger", self.ledger) if ctx.ledger is not None else None,
            "peers": await _panel("peers", self.peers) if ctx.federation is not None else None,
            "rates": self.rates.view(),
            "generated_at": now_ms(),
        }

    def node(self) -> dict[str, Any]:
        """Identity, version and addresses of this node."""
        ctx = self.ctx
        return {
            "node_id": ctx.identity.did,
            "version": __version__,
            "protocol_version": PROTOCOL_VERSION,
            "started_at": ctx.started_at,
            "grpc_address": ctx.grpc_address,
            "http_address": ctx.http_address,
            "dev_mode": ctx.config.dev_mode,
            "subsystems": ctx.enabled_subsystems(),
        }

    async def agents(self) -> dict[str, Any]:
        """Agents homed here and every agent the directory knows across the network."""
        directory = self.ctx.directory
        if directory is None:
            return {"local": [], "network": []}
        node_id = self.ctx.identity.did
        records = await directory.search()
        views = [agent_summary(r, node_id) for r in records]
        views.sort(key=lambda a: (not a["local"], a["name"], a["did"]))
        return {
            "local": [a for a in views if a["local"]],
            "network": [a for a in views if not a["local"]],
        }

    async def threads(self) -> dict[str, Any]:
        """The most recently active threads with their latest messages."""
        rows = await self.reads.recent_threads(THREADS_SHOWN)
        shown = []
        for row in rows:
            entries = await self.reads.recent_entries(row.id, ENTRIES_PER_THREAD)
            shown.append(
                {
                    **asdict(row),
                    "messages": [
                        {"seq": e.seq, "system": e.system, "recorded_at": e.recorded_at}
                        | message_summary(e.message)
                        for e in entries
                    ],
                }
            )
        totals = await self.reads.coordination_totals()
        return {"totals": totals, "recent": shown}

    async def teams(self) -> list[dict[str, Any]]:
        """Recent teams with goal, members and key epoch, from the team service."""
        service = need(self.ctx.teams, "teams")
        now = now_ms()
        teams = []
        for team_id in await self.reads.recent_team_ids(TEAMS_SHOWN):
            state = await service.state(team_id)
            charter = state.charter
            teams.append(
                {
                    "team_id": team_id,
                    "goal": charter.goal,
                    "initiator": state.initiator,
                    "budget": charter.budget.model_dump(mode="json"),
                    "deadline_ms": charter.deadline_ms,
                    "open": state.is_open(now),
                    "dissolved": state.dissolution is not None,
                    "key_epoch": state.key_epoch,
                    "members": [
                        {"did": m.did, "role": m.role, "price": m.price}
                        for m in state.current_members(now).values()
                    ],
                }
            )
        return teams

    async def ledger(self) -> dict[str, Any]:
        """Balances, open escrow holds and the newest transfers (SQLite file or PostgreSQL)."""
        reads = self.reads
        return {
            "accounts": await reads.ledger_accounts(LEDGER_ACCOUNTS_SHOWN),
            "pending": await reads.ledger_pending(LEDGER_PENDING_SHOWN),
            "recent": await reads.ledger_recent_transfers(LEDGER_TRANSFERS_SHOWN),
        }

    async def peers(self) -> list[dict[str, Any]]:
        """Known peer nodes from the federation's gossip state: addresses, active, banned."""
        state = need(self.ctx.federation, "federation").state
        now = now_ms()
        own = self.ctx.identity.did
        return [
            {
                "node": did,
                "seq": record.seq,
                "addresses": record.addresses.model_dump(mode="json"),
                "protocol_version": record.protocol_version,
                "active": did in state.peer_set.active,
                "banned": state.scores.is_banned(did, now),
            }
            for did, record in sorted(state.peers.items())
            if did != own
        ]


LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


def views_are_open(ctx: NodeContext) -> bool:
    """Read-only views need no token only while the node listens on loopback alone."""
    return ctx.config.host in LOOPBACK_HOSTS or ctx.config.host.startswith("127.")
