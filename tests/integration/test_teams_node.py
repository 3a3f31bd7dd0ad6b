"""Secure team formation against a real node process: SDK clients over HTTP.

Covers forming a team of three found by capability, encrypted team talk,
ciphertext-only storage, refusals (non-member, plaintext, forged documents),
removal with rekeying, and dissolution.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from coral.protocol.agent import AgentManifest, Price
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms
from coral.teams import (
    Acceptance,
    Invitation,
    Money,
    RoleSpec,
    accept,
    draft_charter,
    invite,
    open_key_epoch,
    read_team_message,
    verify_team,
)
from coral.teams.errors import DecryptionFailed, NotAMember
from coral_sdk import CoralApiError, CoralClient
from coral_sdk.ledger import issue_dev_funds
from coral_sdk.teams import (
    FormationTimedOut,
    TeamClient,
    TeamOffer,
    accept_invitations,
)

SECRET = "launch code 7f3e-unique-plaintext"
SECRET_AFTER = "after-rekey 91ab-unique-plaintext"


async def registered(node, name: str, *caps: str, price: int = 0) -> CoralClient:
    """A registered agent, funded so it can escrow a team budget as initiator."""
    client = CoralClient(node.http, Identity.generate())
    prices = tuple(Price(capability=c, amount=price) for c in caps)
    await client.register(AgentManifest(name=name, capabilities=caps, prices=prices))
    token = (node.data_dir / "keys" / "admin.token").read_text().strip()
    await issue_dev_funds(node.http, token, client.did, 1_000_000)
    return client


def answering(client: CoralClient, price: int | None) -> tuple[asyncio.Task[list], asyncio.Event]:
    """Run an invitation handler for ``client`` that accepts at ``price`` (None refuses)."""
    stop = asyncio.Event()

    def decide(offer: TeamOffer) -> int | None:
        assert offer.invitation.invitee == client.did
        return price

    return asyncio.create_task(accept_invitations(client, decide, stop=stop)), stop


ROLES = (
    RoleSpec(name="writer", capabilities=("write",), max_price=40),
    RoleSpec(name="reviewer", capabilities=("review",)),
)


async def test_team_of_three_talks_encrypted_rekeys_and_dissolves(node_factory):
    node = node_factory("node")
    alice = await registered(node, "alice")
    bob = await registered(node, "bob", "write", price=30)
    pricey = await registered(node, "pricey", "write", price=90)  # above max_price
    carol = await registered(node, "carol", "review", price=5)
    eve = await registered(node, "eve", "chat")
    handlers = [answering(bob, 30), answering(carol, 5), answering(pricey, 90)]
    teams = TeamClient(alice)
    try:
        team = await teams.form_team(
            goal="write and review a report", roles=ROLES, budget=Money(amount=100), timeout_s=20
        )
        assert team.members == {alice.did: "initiator", bob.did: "writer", carol.did: "reviewer"}
        assert team.key_epoch == 1

        # The record verifies offline, and only parties may read it.
        record = await teams.record(team.team_id)
        state = verify_team(record, now_ms())
        assert set(state.members) == {bob.did, carol.did}
        assert {m.price for m in state.members.values()} == {30, 5}
        with pytest.raises(CoralApiError) as info:
            await TeamClient(eve).record(team.team_id)
        assert info.value.reason == "not_a_member"
        assert [t.team_id for t in await TeamClient(bob).teams()] == [team.team_id]

        bob_team, carol_team = TeamClient(bob), TeamClient(carol)
        assert (await bob_team.join(team.team_id)).thread_id == team.thread_id
        await carol_team.join(team.team_id)
        await teams.send_team_message(team.team_id, SECRET, mentions=[bob.did])
        await bob_team.send_team_message(team.team_id, "ack", data={"ok": True})
        posts = await carol_team.read_team_messages(team.team_id)
        assert [(p.sender, p.text) for p in posts] == [(alice.did, SECRET), (bob.did, "ack")]

        # The node refuses outsiders and plaintext in a team thread, with typed reasons.
        with pytest.raises(CoralApiError) as info:
            await eve.send(team.thread_id, "let me in")
        assert info.value.reason == "not_a_member"
        with pytest.raises(CoralApiError) as info:
            await carol.send(team.thread_id, "plaintext leak")
        assert info.value.reason == "invalid_team_document"
        with pytest.raises(CoralApiError) as info:
            await eve.add_participant(team.thread_id, eve.did)
        assert info.value.reason in ("not_authorized", "not_a_participant")

        # Remove carol: she leaves the thread, the key rotates, new posts are closed to her.
        assert await teams.remove_member(team.team_id, carol.did, reason="done") == 2
        thread = await alice.thread(team.thread_id)
        assert carol.did not in thread.participants
        await teams.send_team_message(team.team_id, SECRET_AFTER)
        assert [p.text for p in await bob_team.read_team_messages(team.team_id)][-1] == SECRET_AFTER
        state, _ = await carol_team.fetch(team.team_id)
        newest = [d for d in (await teams.record(team.team_id)).documents if d.type == "key_epoch"]
        with pytest.raises(NotAMember):
            open_key_epoch(newest[-1], carol.identity)
        history = await bob.history(team.thread_id)
        last = history.entries[-1].message
        with pytest.raises(DecryptionFailed):
            read_team_message(last, carol_team.keys)
        with pytest.raises(CoralApiError) as info:
            await carol_team.send_team_message(team.team_id, "still here?")
        assert info.value.reason == "not_a_member"

        await teams.dissolve(team.team_id, goal_met=True)
        with pytest.raises(CoralApiError) as info:
            await teams.send_team_message(team.team_id, "after the end")
        assert info.value.reason == "team_dissolved"
        dissolution = (await teams.record(team.team_id)).documents[-1]
        assert dissolution.type == "dissolution"
        assert [(p.member, p.amount) for p in dissolution.payouts] == [(bob.did, 30)]
    finally:
        for _task, stop in handlers:
            stop.set()
        answered = [await task for task, _ in handlers]
        for client in (alice, bob, pricey, carol, eve):
            await client.close()
    # "pricey" was never matched: its quote is above the writer role's max_price.
    assert answered[2] == []

    assert node.terminate() == 0
    stored = b"".join(path.read_bytes() for path in node.data_dir.rglob("*") if path.is_file())
    assert SECRET.encode() not in stored and SECRET_AFTER.encode() not in stored
    assert b"team.message" in stored  # the ciphertext posts are there


async def test_forged_and_misaddressed_documents_are_refused_with_reasons(node_factory):
    node = node_factory("node")
    alice = await registered(node, "alice")
    bob = await registered(node, "bob", "write")
    eve = await registered(node, "eve", "write")
    teams = TeamClient(alice)
    try:
        charter = draft_charter(
            alice.identity,
            goal="g",
            roles=ROLES,
            budget=Money(amount=50),
            deadline_ms=now_ms() + 600_000,
            now_ms=now_ms(),
        )
        await teams.propose(charter)
        with pytest.raises(CoralApiError) as info:
            await teams.propose(charter)
        assert info.value.reason == "team_exists"
        state, _ = await teams.fetch(charter.team_id)
        invitation = invite(
            state, alice.identity, invitee=bob.did, role="writer", now_ms=now_ms(), ttl_ms=60_000
        )
        await teams.submit_document(invitation)
        state, _ = await teams.fetch(charter.team_id)

        # Eve signs an acceptance in bob's name: the signature does not verify.
        body = Acceptance(
            team_id=charter.team_id,
            issued_at=now_ms(),
            invitation_hash=invitation.content_hash(),
            invitee=bob.did,
            price=Money(amount=1),
        ).model_dump(mode="json")
        body["signature"] = (
            Acceptance.model_validate({**body, "invitee": eve.did})
            .signed_by(eve.identity)
            .signature
        )
        with pytest.raises(CoralApiError) as info:
            await alice._request(
                "POST",
                f"/v1/teams/{charter.team_id}/documents",
                body=json.dumps(body).encode(),
                signed=False,
            )
        assert (info.value.status, info.value.reason) == (401, "bad_signature")

        # Eve answers bob's invitation with her own valid signature: not the invitee.
        with pytest.raises(CoralApiError) as info:
            await TeamClient(eve).submit_document(
                accept(invitation, eve.identity, price=1, currency="CRL", now_ms=now_ms())
            )
        assert (info.value.status, info.value.reason) == (403, "not_the_invitee")

        # Eve cannot invite herself: she holds no authority in the team.
        forged = Invitation(
            team_id=charter.team_id,
            issued_at=now_ms(),
            charter_hash=state.charter_hash,
            invitation_id="x1",
            role="writer",
            invitee=eve.did,
            issuer=eve.did,
            expires_at=now_ms() + 60_000,
        ).signed_by(eve.identity)
        with pytest.raises(CoralApiError) as info:
            await TeamClient(eve).submit_document(forged)
        assert info.value.reason == "not_authorized"

        # A document carried by someone other than its signer is refused too.
        thread = await eve.create_thread("relay", [alice.did])
        with pytest.raises(CoralApiError) as info:
            await TeamClient(eve).post_document(thread.id, invitation)
        assert info.value.reason == "not_document_signer"

        # Binding a thread to a team needs team authority and exactly its members.
        with pytest.raises(CoralApiError) as info:
            await TeamClient(eve)._create_team_thread(charter.team_id, [alice.did])
        assert info.value.reason == "not_authorized"
        with pytest.raises(CoralApiError) as info:
            await teams._create_team_thread(charter.team_id, [bob.did])
        assert info.value.reason == "not_a_member"
        # Bob's acceptance over the role's max price is refused.
        with pytest.raises(CoralApiError) as info:
            await TeamClient(bob).submit_document(
                accept(invitation, bob.identity, price=41, currency="CRL", now_ms=now_ms())
            )
        assert info.value.reason == "price_above_role_max"
        assert (await TeamClient(bob).teams())[0].members == {alice.did: "initiator"}

        # Reads are for the right callers only; proposing needs a registered initiator.
        with pytest.raises(CoralApiError) as info:
            await alice._request("GET", "/v1/teams", query={"member": bob.did})
        assert info.value.reason == "not_your_teams"
        with pytest.raises(CoralApiError) as info:
            await TeamClient(bob).candidates(charter.team_id)
        assert info.value.reason == "not_authorized"
        assert [r.agent for r in (await teams.candidates(charter.team_id))["writer"]] == sorted(
            [bob.did, eve.did]
        )
        stranger = Identity.generate()
        unregistered = draft_charter(
            stranger,
            goal="g",
            roles=ROLES,
            budget=Money(amount=1),
            deadline_ms=now_ms() + 60_000,
            now_ms=now_ms(),
        )
        with pytest.raises(CoralApiError) as info:
            await teams.propose(unregistered)
        assert info.value.reason == "agent_not_registered"
    finally:
        for client in (alice, bob, eve):
            await client.close()


async def test_refusal_moves_to_next_candidate_and_timeout_cancels(node_factory):
    node = node_factory("node")
    alice = await registered(node, "alice")
    dave = await registered(node, "dave", "write", price=1)
    bob = await registered(node, "bob", "write", price=2)
    carol = await registered(node, "carol", "review")
    handlers = [answering(dave, None), answering(bob, 2), answering(carol, 0)]
    teams = TeamClient(alice)
    try:
        team = await teams.form_team(
            goal="two seats", roles=ROLES, budget=Money(amount=10), timeout_s=20
        )
        assert team.members[bob.did] == "writer" and dave.did not in team.members
        state, _ = await teams.fetch(team.team_id)
        refusals = [a for a in state.answers.values() if a.type == "refusal"]
        assert [r.invitee for r in refusals] == [dave.did]

        # Nobody can fill a role that needs a capability nobody offers: cancelled in time.
        lonely = (RoleSpec(name="pilot", capabilities=("fly",)),)
        with pytest.raises(FormationTimedOut):
            await teams.form_team(goal="fly", roles=lonely, budget=Money(amount=1), timeout_s=0.5)
        cancelled = [t for t in await teams.teams() if t.team_id != team.team_id]
        assert len(cancelled) == 1 and cancelled[0].open is False
    finally:
        for task, stop in handlers:
            stop.set()
            await task
        for client in (alice, dave, bob, carol):
            await client.close()


async def test_team_rules_survive_a_node_restart(node_factory):
    node = node_factory("node")
    alice = await registered(node, "alice")
    bob = await registered(node, "bob", "write")
    carol = await registered(node, "carol", "review")
    eve = await registered(node, "eve")
    handlers = [answering(bob, 1), answering(carol, 1)]
    try:
        team = await TeamClient(alice).form_team(
            goal="persist", roles=ROLES, budget=Money(amount=5), timeout_s=20
        )
        record = await TeamClient(alice).record(team.team_id)
        certificates = [d for d in record.documents if d.type == "certificate"]
        assert {c.agent_record.home_node for c in certificates} == {node.node_id}
    finally:
        for task, stop in handlers:
            stop.set()
            await task
        for client in (alice, bob, carol, eve):
            await client.close()
    assert node.terminate() == 0
    node.start()

    again = {
        name: CoralClient(node.http, client.identity)
        for name, client in (("alice", alice), ("bob", bob), ("eve", eve))
    }
    try:
        bob_team = TeamClient(again["bob"])
        await bob_team.join(team.team_id, timeout_s=5)
        await bob_team.send_team_message(team.team_id, "still bound after restart")
        posts = await TeamClient(again["alice"]).read_team_messages(team.team_id)
        assert [p.text for p in posts] == ["still bound after restart"]
        with pytest.raises(CoralApiError) as info:
            await again["eve"].send(team.thread_id, "hello?")
        assert info.value.reason == "not_a_member"
    finally:
        for client in again.values():
            await client.close()


def _waits_open(node) -> str:
    import urllib.request

    with urllib.request.urlopen(node.http + "/metrics", timeout=10) as resp:
        return next(
            line
            for line in resp.read().decode().splitlines()
            if line.startswith("coral_waits_open ")
        )


async def test_team_long_poll_answers_when_a_document_lands(node_factory):
    node = node_factory("node")
    alice = await registered(node, "alice")
    bob = await registered(node, "bob", "write")
    eve = await registered(node, "eve")
    teams = TeamClient(alice)
    try:
        charter = draft_charter(
            alice.identity,
            goal="long-poll",
            roles=ROLES,
            budget=Money(amount=10),
            deadline_ms=now_ms() + 600_000,
            now_ms=now_ms(),
        )
        await teams.propose(charter)
        before = await teams.view(charter.team_id)
        assert before.revision == 0 and before.record.documents == ()

        # Nothing new: the wait ends at its timeout with the same view.
        unchanged = await teams.view(charter.team_id, after_revision=before.revision, wait_ms=50)
        assert unchanged.revision == before.revision

        # A waiting reader is answered as soon as a document is applied.
        waiter = asyncio.create_task(
            teams.view(charter.team_id, after_revision=before.revision, wait_ms=60_000)
        )
        async with asyncio.timeout(60):  # hang guard
            while _waits_open(node) != "coral_waits_open 1.0":  # the node holds the wait
                await asyncio.sleep(0.02)
        assert not waiter.done()
        state, _ = await teams.fetch(charter.team_id)
        invitation = invite(
            state, alice.identity, invitee=bob.did, role="writer", now_ms=now_ms(), ttl_ms=60_000
        )
        await teams.submit_document(invitation)
        after = await asyncio.wait_for(waiter, 30)
        assert after.revision == before.revision + 1
        assert [d.content_hash() for d in after.record.documents] == [invitation.content_hash()]

        # A revision already passed answers at once; bad bounds are refused.
        again = await teams.view(charter.team_id, after_revision=0, wait_ms=60_000)
        assert again.revision == 1
        for bad in ("-1", "60001", "soon"):
            with pytest.raises(CoralApiError) as info:
                await alice._request("GET", f"/v1/teams/{charter.team_id}", query={"wait_ms": bad})
            assert (info.value.status, info.value.reason) == (400, "invalid_query")
        # Only parties may wait on a team, as for a plain read.
        with pytest.raises(CoralApiError) as info:
            await TeamClient(eve).view(charter.team_id, wait_ms=50)
        assert info.value.reason == "not_a_member"
    finally:
        for client in (alice, bob, eve):
            await client.close()
