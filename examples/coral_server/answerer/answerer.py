"""A scripted Coral agent over the legacy SSE transport: answers N with N * FACTOR.

A plain MCP client that reads only coral-server's environment: its connection
URL and its options (FACTOR, SHOUT). It waits for mentions and replies in the
same thread, mentioning the asker, until the server stops it.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from mcp import Client
from mcp.client.sse import sse_client


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {result.content[0].text}")
    return dict(result.structured_content or json.loads(result.content[0].text))


async def main() -> None:
    url = os.environ["CORAL_CONNECTION_URL"]
    factor = int(os.environ["FACTOR"])
    shout = os.environ.get("SHOUT") == "1"
    print(
        f"environment agent={os.environ['CORAL_AGENT_ID']} factor={factor}"
        f" sse={url.endswith('/sse/')} prompt={os.environ.get('CORAL_PROMPT_SYSTEM', '')}",
        flush=True,
    )
    async with Client(sse_client(url)) as client:
        state = await client.read_resource("coral://state")
        print("state " + state.contents[0].text.splitlines()[1], flush=True)
        cursor = None
        while True:
            # 0: anything not yet answered, even if it arrived before this agent connected
            args: dict[str, Any] = {"currentUnixTime": 0, "maxWaitMs": 20000}
            if cursor is not None:
                args["afterCursor"] = cursor
            got = await call(client, "coral_wait_for_mention", **args)
            cursor = got.get("cursor", cursor)
            message = got.get("message")
            if message is None:
                continue
            answer = str(int(message["text"]) * factor)
            text = f"{answer}!" if shout else answer
            await call(
                client,
                "coral_send_message",
                threadId=message["threadId"],
                content=text,
                mentions=[message["senderName"]],
            )
            print(f"answered {message['text']} with {text}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
