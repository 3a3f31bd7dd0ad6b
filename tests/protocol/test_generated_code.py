"""The committed protobuf code matches proto/ (regenerate: python scripts/gen_proto.py)."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_protobuf_code_is_up_to_date():
    # An empty PATH proves the mypy plugins are found next to the interpreter, not on PATH.
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": ""},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dev_extra_pins_the_generator_that_wrote_the_committed_code():
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "dev"
    ]
    pins = dict(re.fullmatch(r"([\w-]+)==([\w.]+)", d).groups() for d in dev if "==" in d)
    stamps = {
        re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", p.read_text()).group(1)
        for p in (ROOT / "coral" / "v1").glob("*_pb2_grpc.py")
    }
    assert stamps == {pins["grpcio-tools"]}
    assert "mypy-protobuf" in pins
