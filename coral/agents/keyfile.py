"""Key files: an Ed25519 seed (hex) on disk, readable only by its owner.

Agents (through the SDK) and the node keep their identities this way; the
node's own key files (admin token, rotation hand-over) are in ``coral.node.keys``.
"""

from __future__ import annotations

import os
from pathlib import Path

from coral.protocol.identity import Identity


def private_dir(directory: Path) -> None:
    """Create ``directory`` 0700; narrow a node key dir if a copy or restore widened it.

    Only directories the node owns for keys (``keys/`` and those below it) are
    narrowed: an agent's key file may sit in any directory the author chose
    (even a shared one like /tmp), whose mode is not ours to change.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if "keys" in directory.parts[-3:] and directory.stat().st_mode & 0o077:
        os.chmod(directory, 0o700)


def read_private(path: Path) -> str:
    """Read a key file, first narrowing it (and its dir) to the owner if needed."""
    private_dir(path.parent)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return path.read_text()


def write_private(path: Path, content: bytes) -> None:
    private_dir(path.parent)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_or_create_identity(path: Path) -> tuple[Identity, bool]:
    """Load the Ed25519 seed at ``path`` (hex), creating it if absent.

    Returns the identity and whether it was created now.
    """
    if path.exists():
        seed = bytes.fromhex(read_private(path).strip())
        return Identity.from_seed(seed), False
    identity = Identity.generate()
    write_private(path, identity.seed.hex().encode() + b"\n")
    return identity, True
