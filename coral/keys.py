"""Key files in the data dir: created once, readable only by the owner."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from coral.keyrotation import KeyHandover, issue_handover, parse_handover
from coral.protocol.identity import Identity

#: The hand-over from the node's previous key, kept next to ``node.key``.
NODE_HANDOVER_FILE = "node-handover.json"


def _private_dir(directory: Path) -> None:
    """Create ``directory`` 0700; narrow a node key dir if a copy or restore widened it.

    Only directories the node owns for keys (``keys/`` and those below it) are
    narrowed: an agent's key file may sit in any directory the author chose
    (even a shared one like /tmp), whose mode is not ours to change.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if "keys" in directory.parts[-3:] and directory.stat().st_mode & 0o077:
        os.chmod(directory, 0o700)


def _read_private(path: Path) -> str:
    """Read a key file, first narrowing it (and its dir) to the owner if needed."""
    _private_dir(path.parent)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return path.read_text()


def _write_private(path: Path, content: bytes) -> None:
    _private_dir(path.parent)
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
        seed = bytes.fromhex(_read_private(path).strip())
        return Identity.from_seed(seed), False
    identity = Identity.generate()
    _write_private(path, identity.seed.hex().encode() + b"\n")
    return identity, True


def rotate_node_key(keys_dir: Path, now_ms: int) -> KeyHandover:
    """Replace ``keys_dir/node.key`` with a new key and keep the signed hand-over.

    Run while the node is stopped; on its next start the node publishes the
    hand-over in its peer record, and peers retire the old node id. The old
    seed is kept under ``retired/`` (0600) for audit. Crash-safe: the hand-over
    is written before the key is replaced, and ``load_node_handover`` ignores
    one that does not lead to the current key.
    """
    key_path = keys_dir / "node.key"
    old, _ = load_or_create_identity(key_path)
    new = Identity.generate()
    handover = issue_handover(old, new, now_ms, kind="node", note="node key rotation")
    _write_private(keys_dir / NODE_HANDOVER_FILE, handover.model_dump_json().encode() + b"\n")
    _write_private(keys_dir / "retired" / f"node-{now_ms}.key", old.seed.hex().encode() + b"\n")
    _write_private(key_path, new.seed.hex().encode() + b"\n")
    return handover


def load_node_handover(keys_dir: Path, node: Identity) -> KeyHandover | None:
    """The hand-over that led to ``node``'s key, if the node's key was rotated."""
    path = keys_dir / NODE_HANDOVER_FILE
    if not path.exists():
        return None
    handover = parse_handover(json.loads(_read_private(path)))
    return handover if handover.new_did == node.did else None


def load_or_create_token(path: Path) -> str:
    """Load the admin bearer token at ``path``, creating a random one if absent."""
    if path.exists():
        return _read_private(path).strip()
    token = secrets.token_urlsafe(32)
    _write_private(path, token.encode() + b"\n")
    return token
