"""Read-only queries for the operator dashboard, across every component's tables.

The domain services answer questions for one agent at a time (an agent sees
only its own threads); an operator needs the whole node at a glance. These
helpers read the tables directly and never write. Tables of components a
node does not run (ledger, teams, federation) may be absent: every helper
then returns an empty result instead of failing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from coral.store.sqlite import SqliteDatabase

#: Largest page any helper returns, whatever the caller asks for.
MAX_ROWS = 200


@dataclass(frozen=True, slots=True)
class ThreadRow:
    """One thread as the operator sees it (no per-agent filtering)."""

    id: str
    name: str
    creator: str
    participants: list[str]
    state: str
    summary: str | None
    strategy: str
    created_at: int
    closed_at: int | None
    last_seq: int
    team_id: str | None


@dataclass(frozen=True, slots=True)
class EntryRow:
    """One entry of a thread log: the stored wire message plus its position."""

    thread_id: str
    seq: int
    system: bool
    recorded_at: int
    message: dict[str, Any]


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_ROWS))


async def table_exists(db: SqliteDatabase, table: str) -> bool:
    """True when ``table`` exists in the node's database."""
    row = await db.fetchone(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    )
    return row is not None


async def recent_threads(db: SqliteDatabase, limit: int = 20) -> list[ThreadRow]:
    """The most recently active threads of every agent, newest activity first."""
    if not await table_exists(db, "coordination_threads"):
        return []
    team_join = await table_exists(db, "team_threads")
    team_col = "tt.team_id" if team_join else "NULL"
    join = " LEFT JOIN team_threads tt ON tt.thread_id = t.id" if team_join else ""
    # Ordering by the newest entry (not creation) keeps busy threads on top.
    rows = await db.fetchall(
        f"SELECT t.id, t.name, t.creator, t.participants, t.state, t.summary, t.strategy,"
        f" t.created_at, t.closed_at, t.last_seq, {team_col} AS team_id,"
        " COALESCE((SELECT e.recorded_at FROM coordination_entries e"
        "  WHERE e.thread_id = t.id ORDER BY e.seq DESC LIMIT 1), t.created_at) AS active_at"
        f" FROM coordination_threads t{join}"
        " ORDER BY active_at DESC, t.id DESC LIMIT ?",
        (_limit(limit),),
    )
    return [
        ThreadRow(
            id=r["id"],
            name=r["name"],
            creator=r["creator"],
            participants=list(json.loads(r["participants"])),
            state=r["state"],
            summary=r["summary"],
            strategy=r["strategy"],
            created_at=int(r["created_at"]),
            closed_at=None if r["closed_at"] is None else int(r["closed_at"]),
            last_seq=int(r["last_seq"]),
            team_id=r["team_id"],
        )
        for r in rows
    ]


async def recent_entries(db: SqliteDatabase, thread_id: str, limit: int = 10) -> list[EntryRow]:
    """The last ``limit`` entries of one thread, oldest first."""
    if not await table_exists(db, "coordination_entries"):
        return []
    rows = await db.fetchall(
        "SELECT thread_id, seq, system, recorded_at, wire FROM coordination_entries"
        " WHERE thread_id = ? ORDER BY seq DESC LIMIT ?",
        (thread_id, _limit(limit)),
    )
    return [
        EntryRow(
            thread_id=r["thread_id"],
            seq=int(r["seq"]),
            system=bool(r["system"]),
            recorded_at=int(r["recorded_at"]),
            message=json.loads(r["wire"]),
        )
        for r in reversed(rows)
    ]


async def coordination_totals(db: SqliteDatabase) -> dict[str, int]:
    """Counts of open and closed threads and of stored entries."""
    if not await table_exists(db, "coordination_threads"):
        return {"threads_open": 0, "threads_closed": 0, "entries": 0}
    row = await db.fetchone(
        "SELECT"
        " (SELECT COUNT(*) FROM coordination_threads WHERE state = 'open') AS open_count,"
        " (SELECT COUNT(*) FROM coordination_threads WHERE state = 'closed') AS closed_count,"
        " (SELECT COUNT(*) FROM coordination_entries) AS entry_count"
    )
    assert row is not None
    return {
        "threads_open": int(row["open_count"]),
        "threads_closed": int(row["closed_count"]),
        "entries": int(row["entry_count"]),
    }


async def recent_team_ids(db: SqliteDatabase, limit: int = 20) -> list[str]:
    """Ids of the most recently proposed teams (newest first)."""
    if not await table_exists(db, "team_charters"):
        return []
    rows = await db.fetchall(
        "SELECT team_id FROM team_charters ORDER BY rowid DESC LIMIT ?", (_limit(limit),)
    )
    return [str(r["team_id"]) for r in rows]


async def ledger_accounts(db: SqliteDatabase, limit: int = 50) -> list[dict[str, Any]]:
    """Accounts with their posted and pending balances, largest balance first."""
    if not await table_exists(db, "ledger_accounts"):
        return []
    rows = await db.fetchall(
        "SELECT id, ledger, owner, kind, debits_pending, debits_posted, credits_pending,"
        " credits_posted FROM ledger_accounts"
        " ORDER BY ABS(credits_posted - debits_posted) DESC, id LIMIT ?",
        (_limit(limit),),
    )
    return [
        {
            "id": r["id"],
            "ledger": r["ledger"],
            "owner": r["owner"],
            "kind": r["kind"],
            "balance": int(r["credits_posted"]) - int(r["debits_posted"]),
            "pending_in": int(r["credits_pending"]),
            "pending_out": int(r["debits_pending"]),
        }
        for r in rows
    ]


async def ledger_pending(db: SqliteDatabase, limit: int = 50) -> list[dict[str, Any]]:
    """Escrow holds (pending transfers) not yet posted, voided or expired."""
    if not await table_exists(db, "ledger_open_deadlines"):
        return []
    rows = await db.fetchall(
        "SELECT t.id, t.debit_account, t.credit_account, t.amount, t.ledger, t.memo,"
        " t.created_at, d.expires_at FROM ledger_open_deadlines d"
        " JOIN ledger_transfers t ON t.id = d.pending_id"
        " ORDER BY d.expires_at LIMIT ?",
        (_limit(limit),),
    )
    return [dict(_transfer(r), expires_at=int(r["expires_at"])) for r in rows]


async def ledger_recent_transfers(db: SqliteDatabase, limit: int = 20) -> list[dict[str, Any]]:
    """The newest transfers of every account, newest first."""
    if not await table_exists(db, "ledger_transfers"):
        return []
    rows = await db.fetchall(
        "SELECT id, debit_account, credit_account, amount, ledger, memo, created_at"
        " FROM ledger_transfers ORDER BY seq DESC LIMIT ?",
        (_limit(limit),),
    )
    return [_transfer(r) for r in rows]


def _transfer(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "from": row["debit_account"],
        "to": row["credit_account"],
        "amount": int(row["amount"]),
        "ledger": row["ledger"],
        "memo": row["memo"],
        "created_at": int(row["created_at"]),
    }


async def federation_peers(db: SqliteDatabase, limit: int = 100) -> list[dict[str, Any]]:
    """Peer records the node has stored from gossip, as their decoded JSON."""
    if not await table_exists(db, "federation_peers"):
        return []
    rows = await db.fetchall(
        "SELECT node, seq, record FROM federation_peers ORDER BY node LIMIT ?", (_limit(limit),)
    )
    peers: list[dict[str, Any]] = []
    for r in rows:
        try:
            record = json.loads(r["record"])
        except ValueError:
            record = {}
        peers.append({"node": r["node"], "seq": int(r["seq"]), "record": record})
    return peers
