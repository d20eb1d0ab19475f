"""Regenerate the committed Python stubs of ``shoal.v1`` from ``rpc/v1/*.proto``.

    python -m shoal.rpc.codegen            # rewrite rpc/v1/*_pb2*.py in place
    python -m shoal.rpc.codegen --out DIR  # write them under DIR (used by the no-diff test)

The protos are compiled with an include root in which ``shoal/`` is this
package's folder, so every generated import reads ``from shoal.rpc.v1 import ...``
and works with the package-dir layout (no post-processing).
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent / "v1"
PACKAGE_ROOT = PROTO_DIR.parent.parent  # the folder that *is* the shoal package


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Compile every proto into ``out_dir/shoal/rpc/v1``; returns the generated files."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        include = Path(tmp) / "include"
        (include / "shoal" / "rpc").mkdir(parents=True)
        shutil.copytree(PROTO_DIR, include / "shoal" / "rpc" / "v1",
                        ignore=shutil.ignore_patterns("*.py", "__pycache__"))
        target = Path(out_dir)
        (target / "shoal" / "rpc" / "v1").mkdir(parents=True, exist_ok=True)
        well_known = str(Path(protoc.__file__).parent / "_proto")
        rels = [f"shoal/rpc/v1/{p.name}" for p in proto_files()]
        rc = protoc.main(["grpc_tools.protoc", f"-I{include}", f"-I{well_known}",
                          f"--python_out={target}", f"--pyi_out={target}", f"--grpc_python_out={target}", *rels])
        if rc != 0:
            raise RuntimeError(f"protoc failed with exit code {rc}")
    out = target / "shoal" / "rpc" / "v1"
    return sorted(p for p in out.iterdir() if p.name.endswith((".py", ".pyi")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write stubs under this directory instead of in place")
    args = parser.parse_args(argv)
    if args.out:
        for path in generate(Path(args.out)):
            print(path)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(Path(tmp)):
            os.replace(path, PROTO_DIR / path.name)
            print(PROTO_DIR / path.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
