"""An echo agent: answers every mention with the same text.

Run (with a node running): python examples/echo_agent.py --node http://127.0.0.1:7421
The key is kept in the user's data dir (coral-agent/echo.key, created on first run)
unless --key-file says otherwise; Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from coral_sdk import Agent, AgentManifest, Incoming, NodeUnreachable, default_key_file


class EchoAgent(Agent):
    manifest = AgentManifest(
        name="echo", description="Repeats what it is told.", capabilities=("chat", "echo")
    )

    async def on_mention(self, message: Incoming) -> str:
        return f"echo: {message.text}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", default="http://127.0.0.1:7421", help="node HTTP URL")
    parser.add_argument(
        "--key-file",
        default=None,
        help=f"where the agent key is kept (default: {default_key_file('echo')})",
    )
    args = parser.parse_args()
    agent = EchoAgent(args.node, key_file=args.key_file or default_key_file("echo"))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, agent.stop)
    runner = asyncio.create_task(agent.run())
    ready = asyncio.create_task(agent.ready.wait())
    await asyncio.wait({ready, runner}, return_when=asyncio.FIRST_COMPLETED)
    if agent.ready.is_set():
        print(f"echo agent {agent.did} registered; waiting for mentions", flush=True)
    await runner


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except NodeUnreachable as exc:
        sys.exit(f"error: {exc}")
