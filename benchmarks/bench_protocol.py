"""Protocol-layer overhead: coral sign+verify vs bare PyNaCl on the same bytes, and codec rates.

Run: python benchmarks/bench_protocol.py [--n 1000] [--rounds 9]

The baseline signs and verifies the exact bytes the protocol signs (domain
prefix + canonical JSON), with PyNaCl directly; the subject is
``sign_message`` + ``verify_message_signature`` on the message objects, so the
difference is what the protocol layer adds (building the canonical payload
twice, base64, did:key decoding, the signed copy). Blocks of each alternate
(bare, coral, bare, coral, ...) and the overhead is the median per-round time
ratio with its spread (the goal's figure, wall clock), printed again from the
same blocks' CPU time, which a busy shared machine disturbs less. Codec rates are best-of-rounds, for reference.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nacl.signing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._stats import ratio
from coral.protocol.codec import (
    message_from_json,
    message_from_protobuf_bytes,
    message_to_json,
    message_to_proto,
)
from coral.protocol.identity import Identity
from coral.protocol.message import DataPart, Message, TextPart, new_message_id, now_ms
from coral.protocol.signing import sign_message, signing_payload, verify_message_signature


def seconds(n: int, fn: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return time.perf_counter() - start


def timed(n: int, fn: Callable[[int], object]) -> tuple[float, float]:
    """Wall-clock and this thread's CPU seconds for ``n`` calls."""
    wall, cpu = time.perf_counter(), time.thread_time()
    for i in range(n):
        fn(i)
    return time.perf_counter() - wall, time.thread_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="operations per block")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    alice = Identity.generate()
    receiver = Identity.generate()
    messages = [
        Message(
            id=new_message_id(),
            sender=alice.did,
            thread="t-1",
            mentions=(receiver.did,),
            created_at=now_ms(),
            parts=(
                TextPart(text=f"please solve puzzle {i}"),
                DataPart(data={"grid": [[0, 1], [2, 0]], "i": i}),
            ),
        )
        for i in range(args.n)
    ]
    payloads = [signing_payload(m) for m in messages]
    key = nacl.signing.SigningKey(alice.seed)
    vk = key.verify_key

    def bare(i: int) -> None:
        vk.verify(payloads[i], key.sign(payloads[i]).signature)

    def ours(i: int) -> None:
        verify_message_signature(sign_message(messages[i], alice))

    seconds(min(200, args.n), bare)  # warm up both
    seconds(min(200, args.n), ours)
    bare_t: list[float] = []
    ours_t: list[float] = []
    bare_cpu: list[float] = []
    ours_cpu: list[float] = []
    for _ in range(args.rounds):
        wall, cpu = timed(args.n, bare)
        bare_t.append(wall)
        bare_cpu.append(cpu)
        wall, cpu = timed(args.n, ours)
        ours_t.append(wall)
        ours_cpu.append(cpu)
    overhead = ratio(ours_t, bare_t)
    overhead_cpu = ratio(ours_cpu, bare_cpu)

    signed = [sign_message(m, alice) for m in messages]
    js = [message_to_json(m) for m in signed]
    pbs = [message_to_proto(m).SerializeToString() for m in signed]
    rates = {}
    for name, fn in [
        ("JSON encode", lambda i: message_to_json(signed[i])),
        ("JSON decode+validate", lambda i: message_from_json(js[i])),
        ("protobuf encode", lambda i: message_to_proto(signed[i]).SerializeToString()),
        ("protobuf decode+validate", lambda i: message_from_protobuf_bytes(pbs[i])),
    ]:
        rates[name] = max(args.n / seconds(args.n, fn) for _ in range(3))
    print(
        f"messages: {args.n} per block, {args.rounds} rounds; JSON {len(js[0])} bytes,"
        f" protobuf {len(pbs[0])} bytes"
    )
    print(f"bare PyNaCl sign+verify        {args.n / min(bare_t):10.0f} /s (best block)")
    print(f"coral sign_message+verify      {args.n / min(ours_t):10.0f} /s (best block)")
    print(f"sign+verify overhead (coral time / bare time, interleaved): {overhead}  target <= 1.3x")
    # The same blocks timed by this thread's CPU clock: on a shared machine the
    # wall clock also counts time the process sat descheduled, on either side.
    print(f"same blocks, CPU time (thread_time) instead of wall time: {overhead_cpu}")
    print(
        f"goal: sign+verify <= 1.3x bare PyNaCl: {overhead.median:.2f}x,"
        f" {'met' if overhead.median <= 1.3 else 'MISSED'}"
    )
    for name, value in rates.items():
        print(f"{name:30s} {value:10.0f} /s")


if __name__ == "__main__":
    main()
