"""Fuzzing the decoders where untrusted bytes enter: only typed CoralErrors come out.

Random bytes, random JSON, and single-point mutations of valid messages,
records, team documents and hand-overs go through the JSON and protobuf
decoders; anything but a decoded value or a ``CoralError`` subclass (a bare
ValueError, KeyError, RecursionError, UnicodeError ...) fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coral.agents.keyrotation import issue_handover, parse_handover, verify_handover
from coral.protocol.agent import parse_record, verify_record
from coral.protocol.canonical import parse_json
from coral.protocol.codec import (
    message_from_json,
    message_from_protobuf_bytes,
    message_to_json,
    message_to_proto,
)
from coral.protocol.errors import CoralError
from coral.protocol.identity import Identity
from coral.protocol.limits import DEFAULT_LIMITS
from coral.protocol.signing import verify_message_signature
from coral.teams import parse_team_document
from tests.hardening.support import agent_record, signed_message

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ALICE = Identity.generate()
NODE = Identity.generate()
VALID_MESSAGE = signed_message(ALICE, thread="t-1", text="hello", data={"k": [1, 2, {"x": None}]})
VALID_JSON = json.loads(message_to_json(VALID_MESSAGE))
VALID_PROTO = message_to_proto(VALID_MESSAGE).SerializeToString()
VALID_RECORD = json.loads(agent_record(ALICE, NODE.did, "alice").model_dump_json())
VALID_HANDOVER = issue_handover(ALICE, NODE, 1_800_000_000_000).model_dump(mode="json")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)


def only_typed_errors(decode: Callable[[], Any]) -> Any:
    """Run a decoder; a CoralError is a fine answer, anything else is a bug."""
    try:
        return decode()
    except CoralError:
        return None


def mutate(obj: Any, path_choice: int, replacement: Any) -> Any:
    """Replace one node of a JSON tree (picked by index in a pre-order walk)."""
    nodes: list[tuple[Any, Any]] = []

    def walk(parent: Any, key: Any, value: Any) -> None:
        nodes.append((parent, key))
        if isinstance(value, dict):
            for k, v in value.items():
                walk(value, k, v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(value, i, v)

    copy = json.loads(json.dumps(obj))
    holder = {"root": copy}
    walk(holder, "root", copy)
    parent, key = nodes[path_choice % len(nodes)]
    parent[key] = replacement
    return holder["root"]


@FUZZ
@given(raw=st.binary(max_size=2048))
def test_json_decoder_on_random_bytes(raw: bytes) -> None:
    only_typed_errors(lambda: message_from_json(raw))
    only_typed_errors(lambda: parse_json(raw, max_depth=DEFAULT_LIMITS.max_depth))


@FUZZ
@given(value=json_values)
def test_json_decoder_on_random_json(value: Any) -> None:
    raw = json.dumps(value).encode()
    only_typed_errors(lambda: message_from_json(raw))


@FUZZ
@given(where=st.integers(min_value=0), replacement=json_values)
def test_json_decoder_on_mutated_valid_messages(where: int, replacement: Any) -> None:
    raw = json.dumps(mutate(VALID_JSON, where, replacement)).encode()
    message = only_typed_errors(lambda: message_from_json(raw))
    if message is not None:
        # A decoded message may still be forged; checking it must fail typed too.
        only_typed_errors(lambda: verify_message_signature(message))


@FUZZ
@given(depth=st.integers(min_value=1, max_value=5000), opener=st.sampled_from(["[", '{"a":']))
def test_json_decoder_on_deep_nesting(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    raw = ('{"id":' + opener * depth + "1" + closer * depth + "}").encode()
    only_typed_errors(lambda: message_from_json(raw))


@FUZZ
@given(raw=st.binary(max_size=2048))
def test_protobuf_decoder_on_random_bytes(raw: bytes) -> None:
    only_typed_errors(lambda: message_from_protobuf_bytes(raw))


@FUZZ
@given(
    position=st.integers(min_value=0),
    chunk=st.binary(min_size=1, max_size=8),
    mode=st.sampled_from(["replace", "insert", "truncate"]),
)
def test_protobuf_decoder_on_mutated_valid_messages(position: int, chunk: bytes, mode: str) -> None:
    at = position % len(VALID_PROTO)
    if mode == "replace":
        raw = VALID_PROTO[:at] + chunk + VALID_PROTO[at + len(chunk) :]
    elif mode == "insert":
        raw = VALID_PROTO[:at] + chunk + VALID_PROTO[at:]
    else:
        raw = VALID_PROTO[:at]
    message = only_typed_errors(lambda: message_from_protobuf_bytes(raw))
    if message is not None:
        only_typed_errors(lambda: verify_message_signature(message))


@FUZZ
@given(where=st.integers(min_value=0), replacement=json_values)
def test_record_parser_on_mutated_records(where: int, replacement: Any) -> None:
    record = only_typed_errors(lambda: parse_record(mutate(VALID_RECORD, where, replacement)))
    if record is not None:
        only_typed_errors(lambda: verify_record(record))


@FUZZ
@given(value=json_values)
def test_team_document_parser_on_random_json(value: Any) -> None:
    only_typed_errors(lambda: parse_team_document(json.dumps(value).encode()))
    only_typed_errors(lambda: parse_team_document(value if isinstance(value, dict) else {}))


@FUZZ
@given(where=st.integers(min_value=0), replacement=json_values)
def test_handover_parser_on_mutated_handovers(where: int, replacement: Any) -> None:
    handover = only_typed_errors(lambda: parse_handover(mutate(VALID_HANDOVER, where, replacement)))
    if handover is not None:
        only_typed_errors(lambda: verify_handover(handover, 1_800_000_000_000, 300_000))
