"""Small simulated networks converge within a bounded number of rounds."""

from __future__ import annotations

import math

from coral.federation.simulation import SimulatedNetwork


def test_twenty_nodes_converge_within_a_logarithmic_bound() -> None:
    net = SimulatedNetwork(20, agents_per_node=2, seed=11)
    reports = net.run_until_converged(max_rounds=30)
    bound = 2 * math.ceil(math.log2(20)) + 2
    assert reports[-1].converged_nodes == 20
    assert len(reports) <= bound, f"took {len(reports)} rounds, bound {bound}"
    assert net.views_identical()


def test_a_converged_network_exchanges_only_bucket_hashes() -> None:
    net = SimulatedNetwork(20, agents_per_node=1, seed=12)
    net.run_until_converged(max_rounds=30)
    net.run_round()  # settle: the converging round's replies may still be in flight
    quiet = net.run_round()
    assert quiet.messages == quiet.exchanges, "one message (the hashes) per exchange"
    assert quiet.bytes < quiet.exchanges * 1300


def test_convergence_survives_heavy_message_loss() -> None:
    net = SimulatedNetwork(20, agents_per_node=2, seed=13, loss=0.3)
    reports = net.run_until_converged(max_rounds=60)
    assert reports[-1].converged_nodes == 20
    assert sum(r.completed_exchanges for r in reports) < sum(r.exchanges for r in reports)


def test_a_new_agent_and_a_removal_reach_every_node() -> None:
    net = SimulatedNetwork(20, agents_per_node=1, seed=14)
    net.run_until_converged(max_rounds=30)
    home, state = net.identities[0], net.states[0]
    leaving = next(a.agent for a in state.agents.values() if a.home_node == home.did)
    tombstone = net.make_agent(home, 0, version=2, agent_did=leaving, deleted=True)
    newcomer = net.make_agent(home, 9)
    assert len(state.merge([tombstone, newcomer], net.now_ms).accepted) == 2

    def everywhere() -> bool:
        return all(
            s.agents.get(newcomer.agent) == newcomer and s.agents[leaving].deleted
            for s in net.states
        )

    start = net.round
    while net.round - start < 12 and not everywhere():
        net.run_round()
    assert everywhere(), f"not spread after {net.round - start} rounds"
    assert net.views_identical()


def test_asynchronous_rounds_converge_too() -> None:
    net = SimulatedNetwork(30, agents_per_node=1, seed=15, synchronous=False)
    reports = net.run_until_converged(max_rounds=30)
    assert reports[-1].converged_nodes == 30
