"""``shoal collections list|info|drop``, ``shoal export`` and ``shoal import``.

Each works on a data directory (``--data DIR``) or a server (``--server HOST:PORT``, key from
``--api-key-file`` or ``$SHOAL_API_KEY``) through the same Database / Client API. Reading commands
(list, info, export) open a directory read-only, so they run beside a ``shoal serve`` of it, and a
missing directory is an error. Export pages through ``scroll`` (stable while writes continue);
import creates the collection from the file's header when it is missing (``get_or_create``, so a
collection that exists with another dim or metric is refused) and upserts in batches.
File formats: ``storage.record_files`` (JSON lines, Parquet).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

EXPORT_PAGE = 4096


def register(sub: argparse._SubParsersAction) -> None:
    target = argparse.ArgumentParser(add_help=False)
    where = target.add_mutually_exclusive_group()
    where.add_argument("--data", metavar="DIR", help="durable database directory")
    where.add_argument("--server", metavar="HOST:PORT", help="a `shoal serve` server")
    target.add_argument("--api-key-file", help="file holding the server's API key (or $SHOAL_API_KEY)")

    c = sub.add_parser("collections", help="list, describe or drop collections",
                       description="List, describe or drop the collections of a data directory or a server.")
    actions = c.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", parents=[target], help="collection names").set_defaults(func=run_list)
    info = actions.add_parser("info", parents=[target], help="a collection's configuration and state (JSON)")
    info.add_argument("name")
    info.set_defaults(func=run_info)
    drop = actions.add_parser("drop", parents=[target], help="remove a collection and its data")
    drop.add_argument("name")
    drop.set_defaults(func=run_drop)

    e = sub.add_parser("export", parents=[target], help="write a collection's records to JSON lines or Parquet")
    e.add_argument("collection")
    e.add_argument("-o", "--output", required=True, help="file to write (.jsonl or .parquet)")
    e.add_argument("--format", choices=("jsonl", "parquet"), help="default: from the file name")
    e.add_argument("--filter", type=json.loads, default=None, metavar="JSON", help="export only matching records")
    e.set_defaults(func=run_export)

    i = sub.add_parser("import", parents=[target], help="load records from a `shoal export` file")
    i.add_argument("file")
    i.add_argument("--collection", help="target collection (default: the name in the file)")
    i.add_argument("--format", choices=("jsonl", "parquet"), help="default: from the file name")
    i.add_argument("--batch-size", type=int, default=4096, help="records per upsert (default 4096)")
    i.set_defaults(func=run_import)


def api_key(args: argparse.Namespace) -> str | None:
    """The key of ``--api-key-file`` (else ``$SHOAL_API_KEY``), read like ``shoal serve`` reads it."""
    from ..rpc.cli import read_api_key

    return read_api_key(argparse.Namespace(api_key_file=getattr(args, "api_key_file", None), api_key=None))


@contextlib.contextmanager
def open_target(args: argparse.Namespace, writing: bool) -> Iterator[Any]:
    """The Database (read-only unless ``writing``) or Client named by ``--data`` / ``--server``."""
    from .errors import InvalidArgumentError

    if args.server:
        from ..rpc.client import Client

        with Client(args.server, api_key=api_key(args)) as client:
            yield client
        return
    if not args.data:
        raise InvalidArgumentError("give --data DIR or --server HOST:PORT")
    from .database import Database

    with Database(args.data, read_only=not writing) as db:
        yield db


def run_list(args: argparse.Namespace) -> int:
    with open_target(args, writing=False) as db:
        for name in db.list_collections():
            print(name)
    return 0


def run_info(args: argparse.Namespace) -> int:
    with open_target(args, writing=False) as db:
        print(json.dumps(db.get_collection(args.name).describe(), indent=2, default=str))
    return 0


def run_drop(args: argparse.Namespace) -> int:
    with open_target(args, writing=True) as db:
        db.drop_collection(args.name)
    print(f"dropped {args.name}")
    return 0


def header_of(col: Any) -> dict[str, Any]:
    d = col.describe()
    return {key: d.get(key) for key in ("name", "dim", "metric", "index", "index_options", "metadata")}


def run_export(args: argparse.Namespace) -> int:
    from ..storage.record_files import write_records

    with open_target(args, writing=False) as db:
        col = db.get_collection(args.collection)

        def batches():
            cursor = None
            while True:
                page = col.scroll(args.filter, EXPORT_PAGE, cursor, include=("metadata", "vector"))
                yield page.records.ids, page.records.vectors, page.records.metadata
                cursor = page.next_cursor
                if cursor is None:
                    return

        n = write_records(args.output, header_of(col), batches(), args.format)
    print(f"exported {n} records of {args.collection!r} to {args.output}", file=sys.stderr)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from ..storage.record_files import read_records
    from .errors import InvalidArgumentError

    if args.batch_size <= 0:
        raise InvalidArgumentError(f"--batch-size must be a positive integer, got {args.batch_size}")
    header, batches = read_records(args.file, args.batch_size, args.format)
    name = args.collection or header["name"]
    with open_target(args, writing=True) as db:
        col = db.get_or_create_collection(name, header["dim"], header["metric"], header["index"],
                                          **(header.get("index_options") or {}), metadata=header.get("metadata"))
        n = 0
        for ids, vectors, payloads in batches:  # a bad record stops the import there (earlier batches stay)
            n += col.upsert(ids, vectors, payloads)
    print(f"imported {n} records into {name!r}", file=sys.stderr)
    return 0
