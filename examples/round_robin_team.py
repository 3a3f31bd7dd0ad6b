"""Three agents take turns under the round-robin strategy, for two rounds.

Run (with a node running): python examples/round_robin_team.py --node http://127.0.0.1:7421
Each agent waits for the node's ``turn`` event before speaking; the node
refuses anyone who speaks out of turn.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from coral.protocol.identity import Identity
from coral_sdk import AgentManifest, CoralClient, NodeUnreachable

ROUNDS = 2


async def speaker(client: CoralClient, thread_id: str, name: str) -> list[str]:
    said = []
    cursor = 0
    turns_owed = 0
    for round_number in range(1, ROUNDS + 1):
        while turns_owed == 0:  # wait for the node to give us the turn
            got = await client.wait("mention", after=cursor, timeout_ms=20_000)
            cursor = got.cursor
            kinds = [e.entry.message.kind for e in got.entries]
            turns_owed += kinds.count("coral.turn")
        turns_owed -= 1
        text = f"{name} speaking in round {round_number}"
        await client.send(thread_id, text)
        said.append(text)
        print(text, flush=True)
    return said


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", default="http://127.0.0.1:7421")
    args = parser.parse_args()
    names = ("ada", "grace", "alan")
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(CoralClient(args.node, Identity.generate()))
            for _ in names
        ]
        for client, name in zip(clients, names, strict=True):
            await client.register(AgentManifest(name=name))
        thread = await clients[0].create_thread(
            "standup", [c.did for c in clients[1:]], strategy="round_robin"
        )
        await asyncio.gather(
            *(speaker(c, thread.id, n) for c, n in zip(clients, names, strict=True))
        )
    print("rounds complete", flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except NodeUnreachable as exc:
        sys.exit(f"error: {exc}")
