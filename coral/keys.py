"""Key files in the data dir: created once, readable only by the owner."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from coral.protocol.identity import Identity


def _write_private(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
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
        seed = bytes.fromhex(path.read_text().strip())
        return Identity.from_seed(seed), False
    identity = Identity.generate()
    _write_private(path, identity.seed.hex().encode() + b"\n")
    return identity, True


def load_or_create_token(path: Path) -> str:
    """Load the admin bearer token at ``path``, creating a random one if absent."""
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    _write_private(path, token.encode() + b"\n")
    return token
