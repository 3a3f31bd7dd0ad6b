"""Gossip convergence at scale: rounds and bytes until every node knows everything.

Runs the real GossipState (real Ed25519 keys, signed and countersigned
records, real verification) over the in-memory transport of
``coral.federation.simulation``. Each node starts knowing 3 random bootstrap
peers and its own agents. Figures are printed as ratios against baselines
measured in the same run:

- rounds / log2(N): the epidemic bound predicts a constant;
- bytes / minimum: the minimum is every node receiving every record it lacks
  exactly once, sized with the same JSON encoder;
- quiet-round bytes per exchange / a flat digest: what the bucket layer saves
  once views agree, against sending every origin's summary each round.

Rounds are synchronous (what a node receives in a round is merged when the
round ends) unless ``--asynchronous``, where each exchange lands at once, as
when nodes' timers are spread over the interval.

Usage: python benchmarks/bench_gossip_sim.py [--sizes 50,100,250,500,1000] [--fanout 3]
       [--loss 0.1] [--agents 2] [--asynchronous]
"""

from __future__ import annotations

import argparse
import math
import time

from coral.federation.gossip import GossipConfig
from coral.federation.records import GossipRecord
from coral.federation.simulation import SimulatedNetwork
from coral.federation.wire import digest_to_wire, wire_size


def run_one(
    nodes: int,
    agents: int,
    fanout: int,
    loss: float,
    seed: int,
    max_rounds: int,
    synchronous: bool = True,
) -> dict[str, float]:
    """Build a network, run it to convergence, then one quiet round; return the figures."""
    started, cpu_started = time.perf_counter(), time.process_time()
    config = GossipConfig(fanout=fanout)
    net = SimulatedNetwork(
        nodes, agents, seed=seed, loss=loss, config=config, synchronous=synchronous
    )
    reports = net.run_until_converged(max_rounds)
    converged = reports[-1].converged_nodes == nodes
    total_bytes = sum(r.bytes for r in reports)
    all_records: list[GossipRecord] = [
        *net.states[0].peers.values(),
        *net.states[0].agents.values(),
    ]
    # Lower bound: each record reaches each of the other N-1 nodes once.
    minimum = (net.sizer.records(all_records) - 2) * (nodes - 1)
    net.run_round()  # let in-flight replies land
    quiet = net.run_round()
    flat_digest = wire_size(digest_to_wire(net.states[0].make_digest()))
    return {
        "nodes": nodes,
        "fanout": fanout,
        "loss": loss,
        "converged": float(converged),
        "rounds": len(reports),
        "rounds_per_log2n": len(reports) / math.log2(nodes),
        "total_mb": total_bytes / 1e6,
        "per_node_kb": total_bytes / nodes / 1e3,
        "vs_minimum": total_bytes / minimum,
        "quiet_bytes_per_exchange": quiet.bytes / max(1, quiet.exchanges),
        "flat_digest_bytes": flat_digest,
        "signature_checks": net.verifier.signature_checks,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="50,100,250,500,1000")
    parser.add_argument("--agents", type=int, default=2, help="agents per node")
    parser.add_argument("--fanout", type=int, default=3, help="peers contacted per round")
    parser.add_argument("--loss", type=float, default=0.0, help="per-message loss probability")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--asynchronous",
        action="store_true",
        help="merge each exchange at once (nodes gossip one after another) instead of per round",
    )
    parser.add_argument("--max-rounds", type=int, default=60)
    args = parser.parse_args()

    header = (
        "| N | rounds are | fanout | loss | rounds | rounds/log2 N | total MB | per node KB "
        "| bytes vs minimum | quiet B/exchange | flat digest B | sig checks | wall s | CPU s |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    mode = "async" if args.asynchronous else "sync"
    for nodes in (int(n) for n in args.sizes.split(",")):
        r = run_one(
            nodes,
            args.agents,
            args.fanout,
            args.loss,
            args.seed,
            args.max_rounds,
            synchronous=not args.asynchronous,
        )
        rounds = f"{r['rounds']:.0f}" + ("" if r["converged"] else " (not converged)")
        print(
            f"| {nodes} | {mode} | {args.fanout} | {r['loss']:.2f} | {rounds} "
            f"| {r['rounds_per_log2n']:.2f} "
            f"| {r['total_mb']:.1f} | {r['per_node_kb']:.0f} | {r['vs_minimum']:.2f}x "
            f"| {r['quiet_bytes_per_exchange']:.0f} | {r['flat_digest_bytes']:.0f} "
            f"| {r['signature_checks']:.0f} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
