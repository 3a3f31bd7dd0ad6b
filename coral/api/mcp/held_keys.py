"""Where node-held agents' private keys live (``HeldKeys``), and the key-file store.

``FileHeldKeys`` keeps one 0600 file per held agent under the node's keys
folder (``keys/mcp/<name>.key`` for MCP agents, ``keys/a2a/<name>.key`` for
the A2A gateway and proxies): right for one node process. Replicas of one
node on PostgreSQL share one sealed row per agent instead
(``coral.store.interop_postgres.PostgresHeldKeys``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from coral.agents.keyfile import load_or_create_identity
from coral.protocol.identity import Identity


class HeldKeys(Protocol):
    """Where held agents' private keys live, one key per held-agent name."""

    async def get_or_create(self, name: str, kind: str) -> Identity:
        """The key of ``name``, made now when it has none.

        Where several processes share the keys, concurrent calls for one name
        all get the same key (the first stored wins).
        """
        ...

    async def get(self, name: str, kind: str) -> Identity | None:
        """The key of ``name``, or None when it has none."""
        ...

    async def forget(self, name: str, kind: str) -> None:
        """Delete the key of ``name`` (no-op when it has none)."""
        ...


class FileHeldKeys:
    """``HeldKeys`` as 0600 files under the node's keys folder (one node process)."""

    def __init__(self, keys_dir: Path) -> None:
        self.keys_dir = keys_dir

    def _path(self, name: str, kind: str) -> Path:
        folder = "mcp" if kind == "mcp" else "a2a"
        return self.keys_dir / folder / f"{name}.key"

    async def get_or_create(self, name: str, kind: str) -> Identity:
        """The key in ``keys/{mcp,a2a}/<name>.key``, created when absent."""
        identity, _ = load_or_create_identity(self._path(name, kind))
        return identity

    async def get(self, name: str, kind: str) -> Identity | None:
        """The key file's identity, or None when there is no file."""
        path = self._path(name, kind)
        if not path.exists():
            return None
        identity, _ = load_or_create_identity(path)
        return identity

    async def forget(self, name: str, kind: str) -> None:
        """Delete the key file."""
        self._path(name, kind).unlink(missing_ok=True)
