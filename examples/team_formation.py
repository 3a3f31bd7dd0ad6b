"""Form a secure team of three recruited agents, talk end to end encrypted, then dissolve.

Run (with a node running): python examples/team_formation.py --node http://127.0.0.1:7421 [--data-dir DIR]
(the node data dir holds the admin token used to fund the initiator; default: the platform data dir)
The initiator finds a writer, a reviewer and a tester by capability, invites
them, certifies their acceptances, seals the team key to everyone and opens
an encrypted team thread. Prints each step and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
from collections.abc import Callable

from coral.protocol.agent import AgentManifest, Price
from coral.protocol.identity import Identity
from coral.teams import Money, RoleSpec
from coral_sdk import CoralClient, NodeUnreachable
from coral_sdk.ledger import issue_dev_funds
from coral_sdk.teams import TeamClient, TeamOffer, accept_invitations

#: role -> (capability, asking price in minor units)
RECRUITS = {"writer": ("write", 30), "reviewer": ("review", 20), "tester": ("test", 10)}


async def recruit(
    stack: contextlib.AsyncExitStack, node: str, role: str, capability: str, price: int
) -> CoralClient:
    """A registered agent offering ``capability`` at ``price``, closed when ``stack`` closes."""
    client = await stack.enter_async_context(CoralClient(node, Identity.generate()))
    name = f"{role}-{secrets.token_hex(3)}"
    manifest = AgentManifest(
        name=name,
        capabilities=(capability,),
        prices=(Price(capability=capability, amount=price),),
    )
    await client.register(manifest)
    return client


def asking(price: int) -> Callable[[TeamOffer], int | None]:
    def decide(offer: TeamOffer) -> int | None:
        print(f"  {offer.role.name}: offered a seat in {offer.charter.goal!r}; asking {price}")
        return price

    return decide


def admin_token(args: argparse.Namespace) -> str:
    """The node's admin token (to fund the initiator in dev mode)."""
    from pathlib import Path

    from coral.config import default_data_dir

    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    return (data_dir / "keys" / "admin.token").read_text().strip()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", default="http://127.0.0.1:7421")
    parser.add_argument(
        "--data-dir", default=None, help="the node's data dir, to read its admin token for funding"
    )
    args = parser.parse_args()
    async with contextlib.AsyncExitStack() as stack:
        members = {
            role: await recruit(stack, args.node, role, cap, price)
            for role, (cap, price) in RECRUITS.items()
        }
        stop = asyncio.Event()
        handlers = [
            asyncio.create_task(accept_invitations(client, asking(RECRUITS[role][1]), stop=stop))
            for role, client in members.items()
        ]
        async with CoralClient(args.node, Identity.generate()) as initiator:
            await initiator.register(AgentManifest(name=f"lead-{secrets.token_hex(3)}"))
            # The team budget is escrowed from the initiator's account: fund it (dev mode).
            await issue_dev_funds(args.node, admin_token(args), initiator.did, 1_000)
            teams = TeamClient(initiator)
            roles = tuple(
                RoleSpec(name=role, capabilities=(cap,)) for role, (cap, _) in RECRUITS.items()
            )
            print("forming team...")
            # Without ``candidates`` the node's directory is matched by capability; this demo
            # names its own recruits so agents left over from earlier runs are not invited.
            team = await teams.form_team(
                goal="ship the quarterly report",
                roles=roles,
                budget=Money(amount=100),
                candidates={role: [client.did] for role, client in members.items()},
                timeout_s=30,
            )
            print(
                f"team {team.team_id} formed, key epoch {team.key_epoch}, thread {team.thread_id}"
            )
            for did, role in sorted(team.members.items(), key=lambda item: item[1]):
                print(f"  {role:>9}: {did}")

            await teams.send_team_message(team.team_id, "Draft due Friday; reviews by Monday.")
            writer = TeamClient(members["writer"])
            await writer.join(team.team_id)
            await writer.send_team_message(team.team_id, "On it.", mentions=[initiator.did])
            for post in await TeamClient(members["tester"]).read_team_messages(team.team_id):
                role = team.members[post.sender]
                print(f"  tester decrypted <{role}>: {post.text}")

            result = await teams.dissolve(team.team_id, goal_met=True)
            print(f"dissolved (goal met); team open: {result.team.open}")
        stop.set()
        await asyncio.gather(*handlers)
        for client in members.values():
            await client.deregister((await client.get_agent(client.did)).manifest)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except NodeUnreachable as exc:
        sys.exit(f"error: {exc}")
