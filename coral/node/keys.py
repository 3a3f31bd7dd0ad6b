"""The node's key files in its data dir: node key, admin token, rotation hand-over.

Identity key files (shared with agents) are read and written by ``coral.agents.keyfile``.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from coral.agents.keyfile import load_or_create_identity, read_private, write_private
from coral.agents.keyrotation import KeyHandover, issue_handover, parse_handover
from coral.protocol.identity import Identity

#: The hand-over from the node's previous key, kept next to ``node.key``.
NODE_HANDOVER_FILE = "node-handover.json"


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
    write_private(keys_dir / NODE_HANDOVER_FILE, handover.model_dump_json().encode() + b"\n")
    write_private(keys_dir / "retired" / f"node-{now_ms}.key", old.seed.hex().encode() + b"\n")
    write_private(key_path, new.seed.hex().encode() + b"\n")
    return handover


def load_node_handover(keys_dir: Path, node: Identity) -> KeyHandover | None:
    """The hand-over that led to ``node``'s key, if the node's key was rotated."""
    path = keys_dir / NODE_HANDOVER_FILE
    if not path.exists():
        return None
    handover = parse_handover(json.loads(read_private(path)))
    return handover if handover.new_did == node.did else None


def load_or_create_token(path: Path) -> str:
    """Load the admin bearer token at ``path``, creating a random one if absent."""
    if path.exists():
        return read_private(path).strip()
    token = secrets.token_urlsafe(32)
    write_private(path, token.encode() + b"\n")
    return token
