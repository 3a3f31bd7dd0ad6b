"""Contract-net award escrow without HTTP: reserve on award, settle on reply, expire on timeout.

Real SQLite files, a real agent directory, the real ledger service with a
settable clock, so the award hold's deadline passes when the test says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from coral.agents.directory import AgentDirectory
from coral.coordination.model import Thread
from coral.coordination.strategies.contract_net import Award
from coral.ledger import errors
from coral.ledger.access import LedgerAccess, NotAccountOwner
from coral.ledger.awards import AwardEscrow, award_transfer_id
from coral.ledger.service import LedgerService
from coral.protocol.agent import AgentManifest, AgentRecord, sign_record_as_agent
from coral.protocol.errors import InvalidMessage
from coral.protocol.identity import Identity
from coral.protocol.message import DataPart, Message, new_message_id
from coral.store.agents_sqlite import SqliteAgentStore
from coral.store.ledger_sqlite import SqliteLedgerStore
from coral.store.sqlite import SqliteDatabase
from tests.ledger.ledger_support import Clock

HOLD_MS = 5_000


@dataclass
class Env:
    clock: Clock
    ledger: LedgerService
    awards: AwardEscrow
    boss: Identity
    winner: Identity


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    clock = Clock(1_700_000_000_000)
    db = SqliteDatabase(tmp_path / "node.db")
    await db.open()
    agents = SqliteAgentStore(db)
    await agents.open()
    node = Identity.generate()
    directory = AgentDirectory(agents, node, clock)
    boss, winner = Identity.generate(), Identity.generate()
    for name, identity in (("boss", boss), ("winner", winner)):
        record = AgentRecord(
            agent=identity.did,
            home_node=node.did,
            manifest=AgentManifest(name=name),  # a name binds to one key
            version=1,
            updated_at=clock(),
        )
        await directory.register(sign_record_as_agent(record, identity))
    store = await SqliteLedgerStore.open(tmp_path / "ledger.db")
    ledger = LedgerService(store, node, clock)
    access = LedgerAccess(ledger, store, directory, dev_mode=True)
    await access.agent_account(boss.did)
    await ledger.issue(boss.did, 100)
    yield Env(clock, ledger, AwardEscrow(access, store, hold_ms=HOLD_MS), boss, winner)
    await store.close()
    await db.close()


def thread(env: Env, thread_id: str = "th-1") -> Thread:
    return Thread(
        id=thread_id,
        name="cn",
        creator=env.boss.did,
        participants=(env.boss.did, env.winner.did),
        strategy="contract_net",
        created_at=env.clock(),
    )


def award(env: Env, price: int, cfp: str = "cfp-1", thread_id: str = "th-1") -> Award:
    return Award(thread_id, 1, cfp, env.boss.did, env.winner.did, price, "bid-1", "task")


def reply(env: Env, data: dict[str, object], *, sender: Identity | None = None, th: str = "th-1"):
    return Message(
        id=new_message_id(),
        kind="message",
        sender=(sender or env.boss).did,
        thread=th,
        created_at=env.clock(),
        parts=(DataPart(data=data),),
    )


async def test_award_reserves_once_even_when_the_hook_is_retried(env: Env):
    first = await env.awards.on_award(thread(env), award(env, 40))
    again = await env.awards.on_award(thread(env), award(env, 40))
    assert first == again
    assert first is not None and first["payment"]["status"] == "reserved"
    assert first["payment"]["expires_at"] == env.clock() + HOLD_MS
    boss = await env.ledger.balance(env.boss.did)
    assert (boss.balance, boss.available) == (100, 60)


async def test_unanswered_award_expires_and_the_funds_return(env: Env):
    await env.awards.on_award(thread(env), award(env, 40))
    env.clock.now_ms += HOLD_MS
    [expired] = await env.ledger.expire_due()
    assert expired.pending_id == award_transfer_id("cfp-1")
    boss = await env.ledger.balance(env.boss.did)
    assert (boss.balance, boss.available) == (100, 100)
    with pytest.raises(errors.PendingAlreadyResolved):
        await env.awards.admit(reply(env, {"accept_award": "cfp-1"}))
    assert (await env.ledger.balance(env.winner.did)).balance == 0


async def test_replies_are_checked_before_any_money_moves(env: Env):
    await env.awards.on_award(thread(env), award(env, 40))
    with pytest.raises(NotAccountOwner):
        await env.awards.admit(reply(env, {"accept_award": "cfp-1"}, sender=env.winner))
    with pytest.raises(errors.PendingNotFound):
        await env.awards.admit(reply(env, {"accept_award": "cfp-1"}, th="other-thread"))
    with pytest.raises(errors.PendingNotFound):
        await env.awards.admit(reply(env, {"accept_award": "cfp-unknown"}))
    with pytest.raises(InvalidMessage):
        await env.awards.admit(reply(env, {"accept_award": 7}))
    with pytest.raises(InvalidMessage):
        await env.awards.admit(reply(env, {"accept_award": "cfp-1", "reject_award": "cfp-1"}))
    assert (await env.ledger.balance(env.boss.did)).available == 60
    await env.awards.admit(reply(env, {"text": "no award data: not our business"}))

    await env.awards.admit(reply(env, {"accept_award": "cfp-1"}))
    await env.awards.admit(reply(env, {"accept_award": "cfp-1"}))  # a second accept is a no-op
    assert (await env.ledger.balance(env.winner.did)).balance == 40
    assert (await env.ledger.balance(env.boss.did)).balance == 60


async def test_free_and_unfundable_awards_reserve_nothing(env: Env):
    free = await env.awards.on_award(thread(env), award(env, 0, cfp="cfp-free"))
    assert free is not None and free["payment"]["status"] == "free"
    dear = await env.awards.on_award(thread(env), award(env, 1_000, cfp="cfp-dear"))
    assert dear is not None and dear["payment"]["status"] == "unfunded"
    assert dear["payment"]["reason"] == "exceeds_credits"
    assert (await env.ledger.balance(env.boss.did)).available == 100
