"""Two agents hold a short conversation: a teacher asks, a student answers.

Run (with a node running): python examples/conversation.py --node http://127.0.0.1:7421
Prints the transcript and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from coral.protocol.identity import Identity
from coral_sdk import Agent, AgentManifest, CoralClient, Incoming, NodeUnreachable


class Student(Agent):
    manifest = AgentManifest(name="student", capabilities=("arithmetic",))

    async def on_mention(self, message: Incoming) -> str:
        a, op, b = message.text.removeprefix("What is ").rstrip("?").split()
        value = {"+": int(a) + int(b), "*": int(a) * int(b)}[op]
        return f"{a} {op} {b} = {value}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", default="http://127.0.0.1:7421")
    args = parser.parse_args()
    student = Student(args.node, identity=Identity.generate())
    runner = asyncio.create_task(student.run())
    ready = asyncio.create_task(student.ready.wait())
    # If the student cannot register (no node), run() ends first: re-raise its error.
    await asyncio.wait({ready, runner}, return_when=asyncio.FIRST_COMPLETED)
    if runner.done():
        ready.cancel()
        await runner
    async with CoralClient(args.node, Identity.generate()) as teacher:
        await teacher.register(AgentManifest(name="teacher"))
        thread = await teacher.create_thread("lesson", [student.did])
        cursor = 0
        for question in ("What is 2 + 3?", "What is 6 * 7?", "What is 12 + 30?"):
            await teacher.send(thread.id, question, mentions=[student.did])
            print(f"teacher: {question}", flush=True)
            got = await teacher.wait("mention", after=cursor, timeout_ms=10_000)
            cursor = got.cursor
            for item in got.entries:
                print(f"student: {item.entry.message.text()}", flush=True)
        await teacher.close_thread(thread.id, "lesson over")
    student.stop()
    await runner


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except NodeUnreachable as exc:
        sys.exit(f"error: {exc}")
