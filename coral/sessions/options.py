"""Typed agent options as coral-server has them: types, value checks, env encodings.

An option is declared in ``coral-agent.toml`` (``[options] NAME = {type, default,
required, transport, base64, secret}``) and given a value in a session request
as ``{"type": "i32", "value": 5}``. A value must carry the option's own type and
fit its range. On launch each value becomes one environment variable, encoded
as coral-server encodes it (bool ``1``/``0``, lists joined by ``,``, blobs and
``base64 = true`` strings as base64), or, with ``transport = "fs"``, files
whose paths the variable lists.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from coral.protocol.errors import InvalidMessage

INT_RANGES: dict[str, tuple[int, int]] = {
    "i8": (-(2**7), 2**7 - 1),
    "i16": (-(2**15), 2**15 - 1),
    "i32": (-(2**31), 2**31 - 1),
    "i64": (-(2**63), 2**63 - 1),
    "u8": (0, 2**8 - 1),
    "u16": (0, 2**16 - 1),
    "u32": (0, 2**32 - 1),
    "u64": (0, 2**64 - 1),
}
SCALAR_TYPES = (*INT_RANGES, "f32", "f64", "bool", "string", "blob")
OPTION_TYPES = frozenset((*SCALAR_TYPES, *(f"list[{t}]" for t in SCALAR_TYPES if t != "bool")))

OptionTransport = Literal["env", "fs"]


class InvalidOption(InvalidMessage):
    """An option declaration or an option value is not acceptable."""

    reason = "invalid_option"


@dataclass(frozen=True)
class OptionSpec:
    """One declared option of a registry agent."""

    name: str
    type: str
    default: Any = None
    required: bool = False
    transport: OptionTransport = "env"
    base64: bool = False
    secret: bool = False
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        """The option as the registry API lists it."""
        out: dict[str, Any] = {
            "type": self.type,
            "required": self.required,
            "transport": self.transport,
        }
        if self.default is not None:
            out["default"] = "*" * 8 if self.secret else self.default
        if self.description:
            out["display"] = {"description": self.description}
        return out


def _scalar_ok(kind: str, value: Any) -> bool:
    if kind in INT_RANGES:
        if kind == "u64" and isinstance(value, str):  # coral-server sends u64 as a string
            value = int(value) if value.isdigit() else None
        low, high = INT_RANGES[kind]
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if kind in ("f32", "f64"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok and math.isfinite(float(value))
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "blob":
        if not isinstance(value, str):
            return False
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        return True
    return False


def value_fits(kind: str, value: Any) -> bool:
    """True when ``value`` is a valid value of option type ``kind``."""
    if kind.startswith("list[") and kind.endswith("]"):
        inner = kind[5:-1]
        return isinstance(value, list) and all(_scalar_ok(inner, v) for v in value)
    return _scalar_ok(kind, value)


def parse_option(name: str, raw: Any, edition: int) -> OptionSpec:
    """One ``[options]`` entry; InvalidOption when its type or default is wrong."""
    if not isinstance(raw, Mapping):
        raise InvalidOption(f"option {name!r} must be a table")
    kind = raw.get("type")
    if edition < 4 and kind in ("number", "secret"):  # pre-typed spellings
        kind = {"number": "f64", "secret": "string"}[str(kind)]
    if kind not in OPTION_TYPES:
        raise InvalidOption(f"option {name!r} has unknown type {kind!r}")
    default = raw.get("default")
    if default is not None and not value_fits(str(kind), default):
        raise InvalidOption(f"option {name!r}: default {default!r} is not a valid {kind}")
    transport = raw.get("transport", "env")
    if transport not in ("env", "fs"):
        raise InvalidOption(f"option {name!r}: transport is env or fs")
    shown = raw.get("display")
    display: Mapping[str, Any] = shown if isinstance(shown, Mapping) else {}
    description = raw.get("description") or display.get("description") or ""
    return OptionSpec(
        name=name,
        type=str(kind),
        default=default,
        required=bool(raw.get("required", False)),
        transport=transport,
        base64=bool(raw.get("base64", False)),
        secret=bool(raw.get("secret", False)) or raw.get("type") == "secret",
        description=str(description),
    )


def check_value(option: OptionSpec, given: Any) -> Any:
    """The plain value of a request's ``{"type", "value"}`` for ``option``.

    Raises InvalidOption when the type tag differs from the option's type or
    the value does not fit it (out of range, not base64, ...).
    """
    if not isinstance(given, Mapping) or "type" not in given or "value" not in given:
        raise InvalidOption(f"option {option.name!r}: a value is {{'type': ..., 'value': ...}}")
    if given["type"] != option.type:
        raise InvalidOption(
            f"option {option.name!r} is a {option.type}, not a {given['type']}",
            reason="wrong_option_type",
        )
    if not value_fits(option.type, given["value"]):
        raise InvalidOption(
            f"option {option.name!r}: {given['value']!r} is not a valid {option.type}",
            reason="wrong_option_type",
        )
    return given["value"]


def _env_scalar(kind: str, value: Any, b64: bool) -> str:
    if kind == "bool":
        return "1" if value else "0"
    if kind in ("f32", "f64"):
        return repr(float(value))
    if kind == "string" and b64:
        return base64.b64encode(str(value).encode()).decode()
    return str(value)


def env_value(option: OptionSpec, value: Any) -> str:
    """The environment-variable form coral-server gives ``value``."""
    if option.type.startswith("list["):
        inner = option.type[5:-1]
        return ",".join(_env_scalar(inner, v, option.base64) for v in value)
    return _env_scalar(option.type, value, option.base64)


def file_values(option: OptionSpec, value: Any) -> list[bytes]:
    """The file contents for a ``transport = "fs"`` option: one file per list item.

    Blobs are their bytes, strings UTF-8, bools one byte, numbers big-endian binary.
    """
    inner = option.type[5:-1] if option.type.startswith("list[") else option.type
    items = value if option.type.startswith("list[") else [value]
    out = []
    for item in items:
        if inner == "blob":
            out.append(base64.b64decode(item))
        elif inner == "string":
            out.append(str(item).encode())
        elif inner == "bool":
            out.append(b"\x01" if item else b"\x00")
        elif inner == "f32":
            out.append(struct.pack(">f", float(item)))
        elif inner == "f64":
            out.append(struct.pack(">d", float(item)))
        else:
            bits = int(inner[1:])
            out.append(int(item).to_bytes(bits // 8, "big", signed=inner.startswith("i")))
    return out
