"""The ``shoal`` command line: one sub-command per module, each registering its own parser.

A module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds a
parser and sets ``func`` (called with the parsed args, returns an exit code).
Heavy imports stay inside those functions so ``shoal --help`` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__

COMMAND_MODULES = (
    "shoal.demo",
    "shoal.bench.cli",
    "shoal.rag.cli",
    "shoal.rpc.cli",
    "shoal.engine.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shoal", description="Shoal vector database: embedded, served, benchmarked.")
    parser.add_argument("--version", action="version", version=f"shoal {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .engine.errors import ShoalError

    try:
        return int(args.func(args) or 0)
    except ShoalError as exc:
        print(f"shoal: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
