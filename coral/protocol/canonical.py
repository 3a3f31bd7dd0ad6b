"""RFC 8785 (JCS) canonical JSON, with the input checks a signature needs.

Canonicalization is delegated to the maintained ``rfc8785`` package; this
module adds strict parsing of untrusted text (duplicate keys, nesting depth,
UTF-8) so that what we sign is exactly what we parsed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import rfc8785

from coral.protocol.errors import (
    InvalidUtf8,
    MalformedJson,
    NonCanonicalNumber,
    TooDeep,
    TooLarge,
)
from coral.protocol.limits import DEFAULT_LIMITS

JsonValue = Any


#: The largest integer every JSON reader holds exactly (IEEE-754 doubles).
MAX_SAFE_INTEGER = 2**53 - 1
_MAX_SAFE = MAX_SAFE_INTEGER
# Built once: json.dumps with options builds a new encoder on every call.
_PLAIN_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _c_encoder() -> Callable[[Any, int], list[str]] | None:
    # One C encoder for every call (JSONEncoder.encode rebuilds it each time).
    # No cycle markers: a shared marker dict could keep stale entries after a
    # failed encode; a cycle still fails, as RecursionError (mapped below).
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    encoder: Callable[[Any, int], list[str]] = make(
        None,
        _PLAIN_ENCODER.default,
        json.encoder.encode_basestring,
        None,
        ":",
        ",",
        True,
        False,
        True,
    )
    return encoder


_C_ENCODE = _c_encoder()


def encode_plain(value: JsonValue) -> str:
    """Sorted, compact JSON text of a value ``is_plain_json`` accepted (its JCS form).

    Uses one prebuilt C encoder where CPython has one. Raises ValueError on a
    reference cycle.
    """
    if _C_ENCODE is None:
        return _PLAIN_ENCODER.encode(value)
    try:
        return "".join(_C_ENCODE(value, 0))
    except RecursionError:
        raise ValueError("value nests too deeply or holds a reference cycle") from None


def _is_plain(value: JsonValue) -> bool:
    # True when the stdlib encoder already produces the JCS form: no floats
    # (ECMAScript number formatting differs from repr), integers within the
    # exact range, and object keys inside the BMP (so code-point order equals
    # JCS's UTF-16 order). Strings escape identically in both.
    # Exact types are tested first (the common case, one identity test each);
    # subclasses fall through to the isinstance checks.
    stack = [value]
    pop = stack.pop
    extend = stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if -_MAX_SAFE <= item <= _MAX_SAFE:
                continue
            return False
        if kind is list or kind is tuple:
            extend(item)
        elif kind is dict or isinstance(item, dict):
            for key in item:
                if not isinstance(key, str) or (not key.isascii() and max(map(ord, key)) > 0xFFFF):
                    return False
            extend(item.values())
        elif isinstance(item, str):
            continue
        elif isinstance(item, list | tuple):
            extend(item)
        else:
            return False
    return True


def is_plain_json(value: JsonValue) -> bool:
    """True when the stdlib encoder's sorted, compact output of ``value`` is its JCS form."""
    return _is_plain(value)


def canonical_json(value: JsonValue) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of a JSON value.

    Values the stdlib encoder already writes canonically take a fast path;
    everything else goes through the ``rfc8785`` package. Raises
    NonCanonicalNumber for integers outside the IEEE-754 exact range and for
    NaN/Infinity, which JSON cannot carry.
    """
    if _is_plain(value):
        try:
            return encode_plain(value).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidUtf8("string contains a lone surrogate") from None
    try:
        return rfc8785.dumps(value)
    except (rfc8785.IntegerDomainError, rfc8785.FloatDomainError) as exc:
        raise NonCanonicalNumber(str(exc)) from None
    except rfc8785.CanonicalizationError as exc:
        raise MalformedJson(str(exc)) from None


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedJson(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise NonCanonicalNumber(f"{name} is not a JSON number")


def check_depth(value: JsonValue, max_depth: int) -> None:
    """Raise TooDeep when arrays/objects nest deeper than ``max_depth``."""
    stack: list[tuple[JsonValue, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > max_depth:
                raise TooDeep(f"nesting deeper than {max_depth}")
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            if depth > max_depth:
                raise TooDeep(f"nesting deeper than {max_depth}")
            stack.extend((v, depth + 1) for v in item)


def _scan_depth(text: str, max_depth: int) -> None:
    # Cheap bracket scan before json.loads so hostile nesting never reaches the
    # recursive parser (which would raise RecursionError deep inside).
    if text.count("[") + text.count("{") <= max_depth:
        return  # cannot nest deeper than the brackets it holds (C-speed check)
    depth = 0
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                raise TooDeep(f"nesting deeper than {max_depth}")
        elif ch in "]}":
            depth -= 1


def _bounded(convert: Callable[[str], Any], max_chars: int) -> Callable[[str], Any]:
    def parse_number(literal: str) -> Any:
        if len(literal) > max_chars:
            raise TooLarge(
                f"a number literal is longer than {max_chars} characters",
                reason="number_too_long",
            )
        return convert(literal)

    return parse_number


def parse_json(
    raw: bytes | str,
    *,
    max_depth: int = DEFAULT_LIMITS.max_depth,
    max_number_chars: int = DEFAULT_LIMITS.max_number_chars,
) -> JsonValue:
    """Parse untrusted JSON strictly: valid UTF-8, no duplicate keys, bounded depth and numbers.

    This is the node's one parser for untrusted JSON. Every failure is a typed
    ``InvalidMessage`` (never ``RecursionError`` or a bare ``ValueError``):
    InvalidUtf8, MalformedJson, TooDeep, TooLarge (a number literal longer
    than ``max_number_chars``) or NonCanonicalNumber (NaN, Infinity).
    """
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidUtf8(f"not valid UTF-8 at byte {exc.start}") from None
    else:
        text = raw
    _scan_depth(text, max_depth)
    hooks: dict[str, Any] = {}
    if re.search(f"[0-9]{{{max_number_chars + 1}}}", text):
        # Only a text holding a long digit run (maybe inside a string) pays for
        # the per-number check; the common case parses at C speed.
        hooks = {
            "parse_int": _bounded(int, max_number_chars),
            "parse_float": _bounded(float, max_number_chars),
        }
    try:
        value = json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant, **hooks
        )
    except json.JSONDecodeError as exc:
        raise MalformedJson(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise TooDeep(f"nesting deeper than {max_depth}") from None
    except ValueError as exc:  # e.g. the interpreter's int-string conversion limit
        raise TooLarge(f"a JSON value is out of range: {exc}", reason="number_too_long") from None
    check_strings(value)
    return value


def check_strings(value: JsonValue) -> None:
    """Raise InvalidUtf8 when a string holds a lone surrogate (not encodable as UTF-8)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidUtf8("string contains a lone surrogate") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
