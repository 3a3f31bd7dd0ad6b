"""Each domain package imports on its own and exports its use-case services and ports.

A fresh interpreter per package: importing one package alone is what finds an
import cycle (an earlier import elsewhere would hide it).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

EXPECTED = {
    "coral.protocol": ["CoralError", "Message", "Identity"],
    "coral.agents": ["AgentDirectory", "AgentStore"],
    "coral.coordination": ["CoordinationService", "CoordinationStore", "MessageGateway", "SeenIds"],
    "coral.teams": ["TeamsService", "TeamLifecycle", "TeamStore", "TeamIndex", "TeamEscrow"],
    "coral.ledger": [
        "LedgerService",
        "LedgerStore",
        "LedgerAccess",
        "AwardEscrow",
        "LedgerTeamEscrow",
        "TransactionFactory",
        "PaymentRelay",
    ],
    "coral.sessions": ["SessionManager", "SessionAgentKeys"],
    "coral.federation": [
        "GossipState",
        "PeerSet",
        "FederationNode",
        "FederationStore",
        "PeerTransport",
    ],
}

_CHECK = """
import importlib, sys
package = importlib.import_module(sys.argv[1])
unresolved = [name for name in package.__all__ if not hasattr(package, name)]
absent = [name for name in sys.argv[2:] if name not in package.__all__]
print(unresolved, absent)
sys.exit(1 if unresolved or absent else 0)
"""


@pytest.mark.parametrize("package", sorted(EXPECTED))
def test_package_imports_alone_and_exports_its_services(package: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHECK, package, *EXPECTED[package]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "[] []"
