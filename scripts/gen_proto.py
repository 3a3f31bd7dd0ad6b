"""Regenerate the committed protobuf/gRPC code in coral/v1 from proto/coral/v1.

Usage: python scripts/gen_proto.py [--check]
With --check, generate into a temp dir and exit 1 if the committed files differ.
The generators are pinned in the ``dev`` extra (grpcio-tools, mypy-protobuf); the
mypy plugins are run from this interpreter's bin dir, not whatever PATH finds.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_PACKAGE = ROOT / "coral" / "v1"


def plugin(name: str) -> Path:
    """The protoc plugin ``name`` installed next to this interpreter (its venv's bin dir)."""
    candidates = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))]
    for directory in candidates:
        path = directory / name
        if path.is_file():
            return path
    where = ", ".join(str(d) for d in candidates)
    raise SystemExit(f"{name} not found in {where}: pip install -e '.[dev]'")


def generate(out_root: Path) -> list[Path]:
    protos = sorted((PROTO_DIR / "coral" / "v1").glob("*.proto"))
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={plugin('protoc-gen-mypy_grpc')}",
        f"-I{PROTO_DIR}",
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *[str(p.relative_to(PROTO_DIR)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out_root / "coral" / "v1").glob("*_pb2*.py*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed code is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp))
        if args.check:
            stale = [
                f.name
                for f in files
                if not (OUT_PACKAGE / f.name).exists()
                or not filecmp.cmp(f, OUT_PACKAGE / f.name, shallow=False)
            ]
            committed = {p.name for p in OUT_PACKAGE.glob("*_pb2*.py*")}
            extra = sorted(committed - {f.name for f in files})
            if stale or extra:
                print("stale generated code:", ", ".join(stale + extra))
                return 1
            print("generated code is up to date")
            return 0
        OUT_PACKAGE.mkdir(parents=True, exist_ok=True)
        for old in OUT_PACKAGE.glob("*_pb2*.py*"):
            old.unlink()
        for f in files:
            shutil.copy2(f, OUT_PACKAGE / f.name)
        print(f"wrote {len(files)} files to {OUT_PACKAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
