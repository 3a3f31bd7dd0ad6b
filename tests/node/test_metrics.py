"""Every metric the node defines is exported on /metrics and documented for operators."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from coral.config import Config
from coral.metrics import NodeMetrics
from coral.node import Node

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def exported_names(metrics: NodeMetrics) -> set[str]:
    """Names as scraped: counters gain _total; histograms keep their base name."""
    names = set()
    for family in metrics.registry.collect():
        names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


def test_every_metric_is_documented():
    docs = OPERATIONS.read_text()
    names = exported_names(NodeMetrics())
    assert len(names) >= 10
    missing = sorted(name for name in names if f"`{name}`" not in docs)
    assert not missing, f"metrics not documented in docs/operations.md: {missing}"


async def test_a_running_node_exports_every_metric(tmp_path):
    node = Node(Config(data_dir=tmp_path, grpc_port=0, http_port=0))
    ctx = await node.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(ctx.http_address + "/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
    finally:
        await node.stop()
    declared = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE coral_")}
    for name in exported_names(NodeMetrics()):
        # Older prometheus_client versions declare counters without the _total suffix.
        assert name in declared or name.removesuffix("_total") in declared, name
    # Metrics subsystems add to the node's registry are documented too.
    docs = OPERATIONS.read_text()
    families = {name.removesuffix("_created") for name in declared}
    missing = sorted(
        name for name in families if f"`{name}`" not in docs and f"`{name}_total`" not in docs
    )
    assert not missing, f"exported but not documented in docs/operations.md: {missing}"
