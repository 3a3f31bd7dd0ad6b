"""An in-process network of real GossipStates, for convergence tests and the scale benchmark.

Every node has a real key, publishes a signed peer record and countersigned
agent records, and starts knowing only a few random bootstrap peers. Rounds
are synchronous by default: what a node receives in round r is merged when
the round ends, so no record travels more than one hop per round (the usual
model behind the O(log N) bound). Nodes share one RecordVerifier: each
distinct record's signatures are checked for real once, not once per node,
which keeps a 1000-node run affordable without skipping any check.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from coral.federation.exchange import WireSizer, run_exchange
from coral.federation.gossip import GossipConfig, GossipState
from coral.federation.peer_record import PeerAddresses, issue_peer_record
from coral.federation.records import GossipRecord, RecordVerifier
from coral.protocol.agent import (
    AgentManifest,
    AgentRecord,
    countersign_record,
    sign_record_as_agent,
)
from coral.protocol.identity import Identity

START_MS = 1_700_000_000_000


@dataclass(slots=True)
class RoundReport:
    """Traffic and progress of one simulated round."""

    round: int
    exchanges: int
    completed_exchanges: int
    messages: int
    bytes: int
    converged_nodes: int


@dataclass(slots=True)
class _Pending:
    batches: list[tuple[list[GossipRecord], str]] = field(default_factory=list)


class SimulatedNetwork:
    """N nodes with ``agents_per_node`` agents each, gossiping over an in-memory transport."""

    def __init__(
        self,
        nodes: int,
        agents_per_node: int = 2,
        *,
        seed: int = 0,
        config: GossipConfig | None = None,
        bootstrap_peers: int = 3,
        loss: float = 0.0,
        round_ms: int = 1000,
        synchronous: bool = True,
    ) -> None:
        self.rng = random.Random(seed)
        self.loss = loss
        self.round_ms = round_ms
        self.synchronous = synchronous
        self.now_ms = START_MS
        self.round = 0
        self.sizer = WireSizer()
        self.verifier = RecordVerifier()
        self.identities = [Identity.from_seed(self.rng.randbytes(32)) for _ in range(nodes)]
        self.states = [
            GossipState(
                identity.did,
                rng=random.Random(self.rng.getrandbits(64)),
                config=config,
                verifier=self.verifier,
            )
            for identity in self.identities
        ]
        self.by_did = {state.self_did: state for state in self.states}
        self.expected_agents = nodes * agents_per_node
        self.agent_keys: dict[str, Identity] = {}
        for index, (identity, state) in enumerate(zip(self.identities, self.states, strict=True)):
            addresses = PeerAddresses(grpc=f"10.{index // 256}.{index % 256}.1:7443")
            own: list[GossipRecord] = [issue_peer_record(identity, addresses, self.now_ms)]
            own.extend(self.make_agent(identity, n) for n in range(agents_per_node))
            state.merge(own, self.now_ms)
        for state in self.states:
            others = self.rng.sample(self.states, min(nodes, bootstrap_peers + 1))
            boot = [s.peers[s.self_did] for s in others if s is not state][:bootstrap_peers]
            state.merge(boot, self.now_ms)

    def make_agent(
        self,
        node: Identity,
        number: int,
        *,
        version: int = 1,
        agent_did: str | None = None,
        deleted: bool = False,
    ) -> AgentRecord:
        """An agent record homed at ``node``, signed by the agent and countersigned by the node.

        Without ``agent_did`` a new agent key is made; with it, that agent's record is reissued.
        """
        if agent_did is None:
            agent = Identity.from_seed(self.rng.randbytes(32))
            self.agent_keys[agent.did] = agent
        else:
            agent = self.agent_keys[agent_did]
        record = AgentRecord(
            agent=agent.did,
            home_node=node.did,
            manifest=AgentManifest(name=f"agent-{number}", capabilities=("chat",)),
            version=version,
            updated_at=self.now_ms,
            deleted=deleted,
        )
        return countersign_record(sign_record_as_agent(record, agent), node)

    def converged_nodes(self) -> int:
        """How many nodes know every peer and every agent."""
        peers, agents = len(self.states), self.expected_agents
        return sum(1 for s in self.states if len(s.peers) == peers and len(s.agents) == agents)

    def views_identical(self) -> bool:
        """True when every node holds exactly the same records (equal bucket hashes)."""
        first = self.states[0].bucket_hashes()
        return all(s.bucket_hashes() == first for s in self.states)

    def run_round(self) -> RoundReport:
        """Every node gossips with ``fanout`` peers; returns the round's traffic."""
        self.round += 1
        self.now_ms += self.round_ms
        pending: dict[str, _Pending] = {}

        def hold(state: GossipState, records: list[GossipRecord], source: str) -> None:
            pending.setdefault(state.self_did, _Pending()).batches.append((records, source))

        def deliver() -> bool:
            return self.loss <= 0.0 or self.rng.random() >= self.loss

        report = RoundReport(self.round, 0, 0, 0, 0, 0)
        order = list(self.states)
        self.rng.shuffle(order)
        for state in order:
            for target in state.choose_gossip_targets(self.now_ms):
                stats = run_exchange(
                    state,
                    self.by_did[target],
                    self.now_ms,
                    sizer=self.sizer,
                    deliver=deliver,
                    apply=hold if self.synchronous else None,
                )
                report.exchanges += 1
                report.completed_exchanges += int(stats.completed)
                report.messages += stats.messages
                report.bytes += stats.bytes
        for did, held in pending.items():
            for records, source in held.batches:
                self.by_did[did].merge(records, self.now_ms, source=source)
        report.converged_nodes = self.converged_nodes()
        return report

    def run_until_converged(self, max_rounds: int) -> list[RoundReport]:
        """Run rounds until every node knows everything, or ``max_rounds`` pass."""
        reports = []
        while self.round < max_rounds:
            reports.append(self.run_round())
            if reports[-1].converged_nodes == len(self.states):
                break
        return reports
