"""The top-level folders map onto the ``shoal`` package in editable installs and wheels alike."""
from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _declared_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(config["tool"]["setuptools"]["packages"])


def _source_packages() -> set[str]:
    found = {"shoal"}
    for init in ROOT.rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if rel.parts and rel.parts[0] in {"tests", ".venv", "build", "docs"} or any(p.startswith(".") for p in rel.parts):
            continue
        if rel.parts:
            found.add("shoal." + ".".join(rel.parts))
    return found


def test_every_source_package_is_declared():
    assert _source_packages() == _declared_packages()


def test_wheel_contains_every_package(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("shoal-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for package in _declared_packages():
        assert package.replace(".", "/") + "/__init__.py" in names, package
    assert not any(n.startswith("shoal/tests/") or n.startswith("tests/") for n in names)


def test_cli_help_for_every_command(capsys):
    import argparse

    import pytest

    from shoal.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert "demo" in sub.choices
    for command in sub.choices:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([command, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: shoal {command}" in capsys.readouterr().out


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "shoal", "--help"], check=True, capture_output=True, text=True).stdout
    assert "usage: shoal" in out
