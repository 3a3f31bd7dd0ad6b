"""Protocol-layer overhead: signed+verified messages/s vs bare Ed25519, and codec rates.

Run: python benchmarks/bench_protocol.py [--n 3000]
Prints rates and ratios measured in the same process (machines here are noisy,
so only the ratios are meaningful).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import nacl.signing

from coral.protocol.canonical import canonical_json
from coral.protocol.codec import (
    message_from_json,
    message_from_protobuf_bytes,
    message_to_json,
    message_to_proto,
)
from coral.protocol.identity import Identity
from coral.protocol.message import (
    DataPart,
    Message,
    TextPart,
    new_message_id,
    now_ms,
    unsigned_wire,
)
from coral.protocol.signing import MESSAGE_DOMAIN, sign_message, verify_message_signature


def rate(n: int, fn: Callable[[int], object], repeats: int = 3) -> float:
    """Best-of-``repeats`` operations per second."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        best = max(best, n / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
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
    payloads = [MESSAGE_DOMAIN + canonical_json(unsigned_wire(m)) for m in messages]
    key = nacl.signing.SigningKey(alice.seed)
    vk = key.verify_key
    sigs = [key.sign(p).signature for p in payloads]

    bare = rate(args.n, lambda i: vk.verify(payloads[i], key.sign(payloads[i]).signature))
    ours = rate(args.n, lambda i: verify_message_signature(sign_message(messages[i], alice)))
    signed = [sign_message(m, alice) for m in messages]
    js = [message_to_json(m) for m in signed]
    pbs = [message_to_proto(m).SerializeToString() for m in signed]
    enc_json = rate(args.n, lambda i: message_to_json(signed[i]))
    dec_json = rate(args.n, lambda i: message_from_json(js[i]))
    enc_pb = rate(args.n, lambda i: message_to_proto(signed[i]).SerializeToString())
    dec_pb = rate(args.n, lambda i: message_from_protobuf_bytes(pbs[i]))
    del sigs
    print(f"messages: {args.n}, JSON {len(js[0])} bytes, protobuf {len(pbs[0])} bytes")
    print(f"bare PyNaCl sign+verify        {bare:10.0f} /s")
    print(f"coral sign_message+verify      {ours:10.0f} /s   overhead x{bare / ours:.2f}")
    print(f"JSON encode                    {enc_json:10.0f} /s")
    print(f"JSON decode+validate           {dec_json:10.0f} /s")
    print(f"protobuf encode                {enc_pb:10.0f} /s")
    print(f"protobuf decode+validate       {dec_pb:10.0f} /s")


if __name__ == "__main__":
    main()
