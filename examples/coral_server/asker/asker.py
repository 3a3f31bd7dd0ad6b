"""A scripted Coral agent: a plain MCP client of the server in CORAL_CONNECTION_URL.

It reads only what coral-server gives every agent it launches (CORAL_* and its
options as environment variables), creates a thread with the agent named in
QUESTION_FOR, asks it for NUMBER times its factor, prints the answer and then
keeps waiting until the session ends (the server stops it).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from mcp import Client


def report_environment() -> None:
    """Print the launch environment (without the secret) for whoever reads the logs."""
    url = os.environ["CORAL_CONNECTION_URL"]
    seen = {k: v for k, v in os.environ.items() if k.startswith("CORAL_") and "SECRET" not in k}
    seen["CORAL_CONNECTION_URL"] = url.replace(os.environ["CORAL_AGENT_SECRET"], "<secret>")
    seen["secret_in_url"] = str(os.environ["CORAL_AGENT_SECRET"] in url)
    seen["options"] = json.dumps(
        {"QUESTION_FOR": os.environ["QUESTION_FOR"], "NUMBER": os.environ["NUMBER"]}
    )
    print("environment " + json.dumps(seen, sort_keys=True), flush=True)


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {result.content[0].text}")
    return dict(result.structured_content or json.loads(result.content[0].text))


async def main() -> None:
    report_environment()
    other = os.environ["QUESTION_FOR"]
    async with Client(os.environ["CORAL_CONNECTION_URL"]) as client:
        instruction = await client.read_resource("coral://instruction")
        print("instruction " + instruction.contents[0].text.splitlines()[0], flush=True)
        created = await call(
            client, "coral_create_thread", threadName="arithmetic", participantNames=[other]
        )
        thread = created["thread"]
        print(f"thread {thread['id']} with {thread['participants']}", flush=True)
        asked_at = int(time.time() * 1000)
        await call(
            client,
            "coral_send_message",
            threadId=thread["id"],
            content=os.environ["NUMBER"],
            mentions=[other],
        )
        cursor = None
        while True:
            args: dict[str, Any] = {
                "currentUnixTime": asked_at,
                "agentName": other,
                "maxWaitMs": 20000,
            }
            if cursor is not None:
                args["afterCursor"] = cursor
            reply = await call(client, "coral_wait_for_agent", **args)
            cursor = reply.get("cursor", cursor)
            if "message" in reply:
                print(
                    f"answer {reply['message']['text']} from {reply['message']['senderName']}",
                    flush=True,
                )
                break
        while True:  # stay in the session until it ends
            await call(
                client,
                "coral_wait_for_mention",
                currentUnixTime=int(time.time() * 1000),
                maxWaitMs=30000,
            )


if __name__ == "__main__":
    asyncio.run(main())
