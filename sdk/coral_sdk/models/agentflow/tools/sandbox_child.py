"""Child side of the calculator sandbox. Runs as ``python -I -S sandbox_child.py``.

Reads ``{"code", "memory_bytes", "cpu_seconds", "max_output_chars"}`` as JSON on
stdin, applies resource limits, installs an audit hook that refuses file,
network, process and introspection events, then runs the code with a small
builtins set. Prints one JSON line: ``{"ok", "stdout", "value", "error"}``.
This file imports only the standard library and never imports the SDK.
"""

from __future__ import annotations

import ast
import cmath
import collections
import contextlib
import decimal
import fractions
import functools
import io
import itertools
import json
import math
import operator
import random
import resource
import statistics
import string
import sys
import types

ALLOWED_MODULES = {
    "cmath": cmath,
    "collections": collections,
    "decimal": decimal,
    "fractions": fractions,
    "functools": functools,
    "itertools": itertools,
    "math": math,
    "operator": operator,
    "random": random,
    "statistics": statistics,
    "string": string,
}
SAFE_BUILTIN_NAMES = (
    "abs all any ascii bin bool chr complex dict divmod enumerate filter float format "
    "frozenset hash hex int isinstance issubclass iter len list map max min next oct ord "
    "pow print range repr reversed round set slice sorted str sum tuple zip "
    "ArithmeticError AssertionError Exception IndexError KeyError LookupError "
    "OverflowError StopIteration TypeError ValueError ZeroDivisionError"
).split()
# Audit events refused once user code may run (prefix match on the event name).
REFUSED_EVENT_PREFIXES = (
    "open",
    "os.",
    "socket.",
    "subprocess.",
    "shutil.",
    "ctypes.",
    "pty.",
    "glob.",
    "urllib.",
    "http.",
    "ftplib.",
    "smtplib.",
    "webbrowser.",
    "marshal.",
    "pickle.",
    "resource.",  # root could otherwise raise its own hard limits again
    "gc.",
    "signal.",
    "code.__new__",
    "function.__new__",
    "object.__getattr__",
    "object.__setattr__",
    "object.__delattr__",
    "sys._getframe",
    "sys._current_frames",
    "sys.settrace",
    "sys.setprofile",
    "builtins.input",
    "builtins.breakpoint",
)


def refuse_dangerous_events(event: str, args: tuple[object, ...]) -> None:
    """Audit hook: raise on any refused event so the operation never happens."""
    if event == "import" and args and args[0] not in sys.modules:
        raise PermissionError(f"sandbox refused import of {args[0]!r}")
    if event.startswith(REFUSED_EVENT_PREFIXES):
        raise PermissionError(f"sandbox refused {event}")


def guarded_import(
    name: str,
    globals: object = None,
    locals: object = None,
    fromlist: object = (),
    level: int = 0,
) -> object:
    """``__import__`` for user code: only the preloaded allowlisted modules."""
    module = ALLOWED_MODULES.get(name)
    if module is None or level != 0:
        raise ImportError(f"module {name!r} is not available in the calculator")
    return module


def reject_private_names(tree: ast.AST) -> None:
    """Refuse private and dunder attributes before running anything.

    They are the usual roads out of a restricted namespace (``().__class__``, ``random._os``).
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise PermissionError(f"sandbox refused access to {node.attr!r}")
        if isinstance(node, ast.Name) and node.id.startswith("__"):
            raise PermissionError(f"sandbox refused access to {node.id!r}")


def compile_program(code: str) -> tuple[types.CodeType, types.CodeType | None]:
    """Compile the body, splitting off a final expression whose value is reported."""
    tree = ast.parse(code, mode="exec")
    reject_private_names(tree)
    final_expression = None
    last = tree.body[-1] if tree.body else None
    if isinstance(last, ast.Expr):
        tree.body.pop()
        final_expression = ast.Expression(last.value)
    body = compile(tree, "<calculator>", "exec")
    tail = compile(final_expression, "<calculator>", "eval") if final_expression else None
    return body, tail


def apply_limits(request: dict[str, object]) -> None:
    """Cap address space, CPU seconds, file size and core dumps for this process."""
    memory = int(str(request["memory_bytes"]))
    cpu = int(str(request["cpu_seconds"]))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def main() -> None:
    """Read the request, run it under every limit, print one JSON report."""
    request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    limit = int(request["max_output_chars"])
    report: dict[str, object] = {"ok": False, "stdout": "", "value": None, "error": None}
    captured = io.StringIO()
    try:
        body, tail = compile_program(request["code"])
        apply_limits(request)
        builtins_module = sys.modules["builtins"]
        safe_builtins = {name: getattr(builtins_module, name) for name in SAFE_BUILTIN_NAMES}
        safe_builtins["__import__"] = guarded_import
        safe_builtins["__build_class__"] = builtins_module.__build_class__
        namespace = {"__builtins__": safe_builtins, "__name__": "calculator", **ALLOWED_MODULES}
        sys.addaudithook(refuse_dangerous_events)
        with contextlib.redirect_stdout(captured):
            exec(body, namespace)
            value = eval(tail, namespace) if tail is not None else None
        report["ok"] = True
        report["value"] = None if value is None else repr(value)[:limit]
    except BaseException as exc:  # report every failure of untrusted code as data
        report["error"] = f"{type(exc).__name__}: {exc}"[:limit]
    report["stdout"] = captured.getvalue()[:limit]
    real_stdout = sys.__stdout__
    if real_stdout is not None:
        real_stdout.write(json.dumps(report) + "\n")
        real_stdout.flush()


if __name__ == "__main__":  # importing this file must never wait on stdin
    main()
