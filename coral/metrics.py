"""Prometheus metrics, one registry per node (no process globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class NodeMetrics:
    """Every metric the node exports; subsystems receive this object."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "coral_requests", "API requests handled", ["api", "method", "status"], registry=r
        )
        self.rejections = Counter(
            "coral_rejections",
            "Inputs refused, by machine-readable reason",
            ["api", "reason"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "coral_request_seconds",
            "API request latency",
            ["api"],
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
        )
        self.messages_routed = Counter(
            "coral_messages_routed", "Messages accepted into threads", registry=r
        )
        self.client_disconnects = Counter(
            "coral_client_disconnects",
            "Requests whose client went away before the response was sent",
            ["api"],
            registry=r,
        )
        self.waits_open = Gauge("coral_waits_open", "Agents currently waiting", registry=r)
        self.agents_registered = Gauge(
            "coral_agents_registered", "Agents homed on this node", registry=r
        )
        self.ledger_transfers = Counter(
            "coral_ledger_transfers", "Ledger transfers by outcome", ["outcome"], registry=r
        )
        self.outbox_depth = Gauge("coral_outbox_depth", "Federation outbox items", registry=r)
        self.gossip_rounds = Counter("coral_gossip_rounds", "Gossip rounds run", registry=r)
        self.peers = Gauge("coral_peers", "Known peer nodes", registry=r)
