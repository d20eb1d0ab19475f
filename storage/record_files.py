"""Export files of a collection's records: JSON lines and Parquet (``shoal export`` / ``shoal import``).

Both carry a header describing the collection (``name``, ``dim``, ``metric``, ``index``,
``index_options``, ``metadata``) so ``import`` can recreate it, then one record per row.

JSON lines (``.jsonl``)::

    {"shoal_export": 1, "collection": {...header...}}
    {"id": 7, "vector": [0.25, ...], "metadata": {...}}
    ...

Ids keep their type (JSON int or string); vector components are the stored float32 values written
as the float64 numbers they equal, so an export/import round trip is exact.

Parquet (``.parquet``, needs ``pyarrow``): columns ``id_int`` (int64, null for string ids),
``id_str`` (string, null for int ids), ``vector`` (fixed-size list of float32, ``dim`` long) and
``metadata`` (the payload as JSON text); the header is the schema metadata key ``shoal``.
Records are written and read in batches, so neither side holds the whole collection.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ..engine.errors import InvalidArgumentError
from .io_errors import storage_errors

FORMAT_VERSION = 1
FORMATS = ("jsonl", "parquet")
Batch = tuple[list[Any], np.ndarray, list[dict[str, Any]]]


class RecordFileError(InvalidArgumentError):
    """A file that is not a Shoal export, or a record in it that is not one."""


def format_of(path: str | os.PathLike, given: str | None = None) -> str:
    """The format named by ``given`` or by the file's suffix."""
    fmt = given or ("parquet" if str(path).endswith(".parquet") else "jsonl" if str(path).endswith(
        (".jsonl", ".ndjson", ".json")) else None)
    if fmt not in FORMATS:
        raise RecordFileError(f"cannot tell the format of {path}: name it .jsonl or .parquet, or give --format "
                              f"({' or '.join(FORMATS)})")
    return fmt


def write_records(path: str | os.PathLike, header: dict[str, Any], batches: Iterable[Batch],
                  fmt: str | None = None) -> int:
    """Write every batch of ``(ids, vectors, payloads)``; returns how many records were written."""
    fmt = format_of(path, fmt)
    with storage_errors(path, "write the export"):
        return _write_parquet(path, header, batches) if fmt == "parquet" else _write_jsonl(path, header, batches)


def read_records(path: str | os.PathLike, batch_size: int = 4096,
                 fmt: str | None = None) -> tuple[dict[str, Any], Iterator[Batch]]:
    """The header and an iterator of ``(ids, vectors, payloads)`` batches."""
    fmt = format_of(path, fmt)
    with storage_errors(path, "read the export"):
        return _read_parquet(path, batch_size) if fmt == "parquet" else _read_jsonl(path, batch_size)


def _write_jsonl(path: Any, header: dict[str, Any], batches: Iterable[Batch]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as out:
        out.write(json.dumps({"shoal_export": FORMAT_VERSION, "collection": header}) + "\n")
        for ids, vectors, payloads in batches:
            rows = np.asarray(vectors, np.float32).astype(np.float64).tolist()  # exact: float32 -> float64
            for ext, row, meta in zip(ids, rows, payloads):
                out.write(json.dumps({"id": ext, "vector": row, "metadata": meta}) + "\n")
            n += len(ids)
    return n


def _read_jsonl(path: Any, batch_size: int) -> tuple[dict[str, Any], Iterator[Batch]]:
    handle = open(path, encoding="utf-8")
    first = handle.readline()
    try:
        head = json.loads(first)
    except json.JSONDecodeError:
        head = None
    if not isinstance(head, dict) or head.get("shoal_export") != FORMAT_VERSION or "collection" not in head:
        handle.close()
        raise RecordFileError(f"{path} is not a Shoal JSON-lines export (its first line is not the header)")

    def batches() -> Iterator[Batch]:
        with handle:
            ids, vectors, payloads = [], [], []
            for lineno, line in enumerate(handle, start=2):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    ids.append(rec["id"])
                    vectors.append(rec["vector"])
                    payloads.append(rec.get("metadata") or {})
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise RecordFileError(f"{path}:{lineno}: not a record ({exc})") from None
                if len(ids) == batch_size:
                    yield ids, np.asarray(vectors, np.float32), payloads
                    ids, vectors, payloads = [], [], []
            if ids:
                yield ids, np.asarray(vectors, np.float32), payloads

    return head["collection"], batches()


def _arrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise RecordFileError("Parquet needs pyarrow: pip install 'shoal[bench]' (or pyarrow), "
                              "or export as .jsonl") from None
    return pyarrow


def _write_parquet(path: Any, header: dict[str, Any], batches: Iterable[Batch]) -> int:
    pa = _arrow()
    dim = int(header["dim"])
    schema = pa.schema([("id_int", pa.int64()), ("id_str", pa.string()),
                        ("vector", pa.list_(pa.float32(), dim)), ("metadata", pa.string())],
                       metadata={"shoal": json.dumps({"shoal_export": FORMAT_VERSION, "collection": header})})
    n = 0
    with pa.parquet.ParquetWriter(path, schema) as writer:
        for ids, vectors, payloads in batches:
            flat = pa.array(np.ascontiguousarray(vectors, np.float32).reshape(-1), pa.float32())
            table = pa.Table.from_arrays([
                pa.array([i if not isinstance(i, str) else None for i in ids], pa.int64()),
                pa.array([i if isinstance(i, str) else None for i in ids], pa.string()),
                pa.FixedSizeListArray.from_arrays(flat, dim),
                pa.array([json.dumps(m) for m in payloads], pa.string())], schema=schema)
            writer.write_table(table)
            n += len(ids)
    return n


def _read_parquet(path: Any, batch_size: int) -> tuple[dict[str, Any], Iterator[Batch]]:
    pa = _arrow()
    try:
        reader = pa.parquet.ParquetFile(path)
    except pa.ArrowInvalid as exc:
        raise RecordFileError(f"{path} is not a Parquet file ({exc})") from None
    raw = (reader.schema_arrow.metadata or {}).get(b"shoal")
    head = json.loads(raw) if raw else None
    if not isinstance(head, dict) or head.get("shoal_export") != FORMAT_VERSION:
        raise RecordFileError(f"{path} is not a Shoal Parquet export (no 'shoal' schema metadata)")
    dim = int(head["collection"]["dim"])

    def batches() -> Iterator[Batch]:
        for batch in reader.iter_batches(batch_size=batch_size):
            ints = batch.column("id_int").to_pylist()
            strs = batch.column("id_str").to_pylist()
            ids = [s if s is not None else i for i, s in zip(ints, strs)]
            vectors = batch.column("vector").flatten().to_numpy(zero_copy_only=False).astype(np.float32)
            payloads = [json.loads(m) if m else {} for m in batch.column("metadata").to_pylist()]
            yield ids, vectors.reshape(-1, dim), payloads

    return head["collection"], batches()
