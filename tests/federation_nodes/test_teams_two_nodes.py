"""A team formed across two nodes: invitations, acceptances and encrypted talk over federation."""

from __future__ import annotations

from coral.teams import Money
from coral_sdk.teams import TeamClient
from tests.federation_nodes.test_three_nodes import converged
from tests.integration.test_teams_node import ROLES, answering, registered

SECRET = "cross-node 4be1 plaintext that must never reach a disk"


async def test_team_spanning_two_nodes_forms_talks_encrypted_and_stores_no_plaintext(node_factory):
    a = node_factory("a", ["--log-level", "warning"], CORAL_GOSSIP_INTERVAL_S="0.3")
    b = node_factory("b", ["--bootstrap", a.grpc], CORAL_GOSSIP_INTERVAL_S="0.3")
    alice = await registered(a, "alice")
    bob = await registered(b, "bob", "write", price=30)
    carol = await registered(b, "carol", "review", price=5)
    handlers = [answering(bob, 30), answering(carol, 5)]
    alice_team, bob_team, carol_team = TeamClient(alice), TeamClient(bob), TeamClient(carol)
    try:
        await converged([a, b], [alice, bob, carol])
        team = await alice_team.form_team(
            goal="cross-node report", roles=ROLES, budget=Money(amount=100), timeout_s=30
        )
        assert team.members == {alice.did: "initiator", bob.did: "writer", carol.did: "reviewer"}
        # Members on node B read the record from the team's home node (A) and
        # use the encrypted thread through their own node's mirror.
        assert (await bob_team.join(team.team_id)).thread_id == team.thread_id
        await carol_team.join(team.team_id)
        await alice_team.send_team_message(team.team_id, SECRET, mentions=[bob.did])
        await bob_team.send_team_message(team.team_id, "ack from B")

        async def everyone_sees_both() -> bool:
            posts = await carol_team.read_team_messages(team.team_id)
            return [(p.sender, p.text) for p in posts] == [
                (alice.did, SECRET),
                (bob.did, "ack from B"),
            ]

        from tests.federation_nodes.test_three_nodes import eventually

        await eventually(everyone_sees_both, what="the encrypted posts on node B")

        async def alice_sees_bob() -> bool:
            posts = await alice_team.read_team_messages(team.team_id)
            return any(p.text == "ack from B" for p in posts)

        await eventually(alice_sees_bob, what="bob's post on node A")
    finally:
        for task, stop in handlers:
            stop.set()
            await task
        for t in (alice_team, bob_team, carol_team):
            await t.close()
        for c in (alice, bob, carol):
            await c.close()
    for node in (a, b):
        assert node.terminate() == 0
        for path in node.data_dir.glob("*.db*"):
            assert SECRET.encode() not in path.read_bytes(), f"plaintext found in {path}"
