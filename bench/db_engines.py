"""The databases of ``shoal bench --suite db``: one adapter per engine, the same operations for each.

Every adapter stores the same rows (integer id, vector, metadata ``{g, cat, year}``) in a durable
directory and answers k-NN queries, optionally restricted by ``g < value``. Each runs in its own
process (``bench/db_worker.py``), so its peak RSS is its own. Search settings are per engine (its
own knobs); the suite sweeps them and reports the fastest one reaching the recall target.

* ``shoal``   ``shoal.Database(path)`` (fsync per upsert call, the default), HNSW with M=16;
              indexed means ``optimize(wait=True)`` returned (all rows in indexed segments).
* ``chroma``  ``chromadb.PersistentClient`` (1.5.x, Rust core), HNSW with its defaults (M=16,
              ef_construction=100); it indexes while adding, so indexed = added.
* ``lancedb`` ``lancedb.connect`` (0.40), ``IVF_HNSW_SQ`` vector index plus a BTree scalar index on
              ``g`` (LanceDB's advice for filtered columns), queries with ``prefilter=True``;
              indexed = both indices built.
"""
from __future__ import annotations

import abc
import importlib
import importlib.util
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .plans import index_plan, summarise
from .runners import SkipRunner

#: Collection / table name used by every engine.
NAME = "bench"
#: Values of the ``cat`` metadata field (stored, not filtered on: every engine carries the same payload).
CATEGORIES = ("news", "sport", "science", "arts", "travel", "food", "tech", "health")


class DbEngine(abc.ABC):
    """One database under test, opened on a directory it owns."""

    library = ""
    #: Python module the engine needs (its absence skips the engine with a message).
    MODULE = ""
    #: Search settings swept, in increasing recall.
    SETTINGS: tuple[dict[str, Any], ...] = ({},)

    def __init__(self, path: str, dim: int, metric: str, threads: int) -> None:
        self.path, self.dim, self.metric, self.threads = path, dim, metric, threads

    @classmethod
    def check_available(cls) -> None:
        """Raise SkipRunner (with the install hint) when the engine's package is missing."""
        try:
            importlib.import_module(cls.MODULE)
        except ImportError:
            raise SkipRunner(f"{cls.library} needs the {cls.MODULE} package (pip install 'shoal[bench-db]')") from None

    @abc.abstractmethod
    def create(self) -> None: ...

    @abc.abstractmethod
    def ingest(self, ids: np.ndarray, x: np.ndarray, meta: dict[str, np.ndarray]) -> None:
        """Add one batch of rows (``meta``: one array per field)."""

    def finish_indexing(self) -> None:
        """Block until every row is served by the engine's index."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def open(self) -> None:
        """Reopen the closed directory (timed by the caller up to the first answered query)."""

    @abc.abstractmethod
    def query(self, q: np.ndarray, k: int, g_below: int | None, setting: dict[str, Any]) -> list[int]:
        """One query per call: the ids of the k nearest rows (with ``g < g_below`` when given)."""

    def query_batch(self, q: np.ndarray, k: int, g_below: int | None, setting: dict[str, Any]) -> list[list[int]]:
        """All queries in one call (engines without a batch call loop)."""
        return [self.query(v, k, g_below, setting) for v in q]

    def plan(self, q: np.ndarray, k: int, g_below: int | None, setting: dict[str, Any]) -> dict[str, Any]:
        """The path that served a query; engines that do not say report ``unreported``."""
        return {"path": "unreported", "segments": {}, "fallback_queries": 0, "queries": 1}

    def describe(self) -> str:
        return self.library


def meta_rows(meta: dict[str, np.ndarray], lo: int, hi: int) -> list[dict[str, Any]]:
    """Row dicts of ``meta[lo:hi]`` (what the document APIs take)."""
    cols = {name: values[lo:hi].tolist() for name, values in meta.items()}
    return [dict(zip(cols, row)) for row in zip(*cols.values())]


class ShoalDb(DbEngine):
    library = "shoal"
    MODULE = "shoal"
    SETTINGS = ({"ef_search": 32}, {"ef_search": 64}, {"ef_search": 128})
    SPEC = "HNSW16"

    def create(self) -> None:
        import shoal

        self.db = shoal.Database(self.path)
        self.col = self.db.create_collection(NAME, self.dim, self.metric, self.SPEC)

    def ingest(self, ids: np.ndarray, x: np.ndarray, meta: dict[str, np.ndarray]) -> None:
        self.col.upsert(ids, x, meta_rows(meta, 0, len(ids)))

    def finish_indexing(self) -> None:
        self.col.optimize(wait=True)

    def close(self) -> None:
        self.db.close()

    def open(self) -> None:
        import shoal

        self.db = shoal.Database(self.path)
        self.col = self.db.get_collection(NAME)

    @staticmethod
    def _filter(g_below: int | None) -> dict[str, Any] | None:
        return None if g_below is None else {"g": {"$lt": g_below}}

    def query(self, q: np.ndarray, k: int, g_below: int | None, setting: dict[str, Any]) -> list[int]:
        return self.col.search(q, k, filter=self._filter(g_below), params=setting, include=()).ids

    def query_batch(self, q: np.ndarray, k: int, g_below: int | None, setting: dict[str, Any]) -> list[list[int]]:
        return [r.ids for r in self.col.search(q, k, filter=self._filter(g_below), params=setting, include=())]

    def plan(self, q: np.ndarray, k: int, g_below: int | None, setting: dict[str, Any]) -> dict[str, Any]:
        return summarise(self.col.explain(q, k, filter=self._filter(g_below), params=setting), 1)

    def describe(self) -> str:
        segs = self.col.describe()["segment_list"]
        return f"{self.SPEC}, {sum(1 for s in segs if s['rows'])} segment(s)"


class ChromaDb(DbEngine):
    library = "chroma"
    MODULE = "chromadb"
    SETTINGS = ({"ef_search": 50}, {"ef_search": 100}, {"ef_search": 200})

    def _client(self) -> Any:
        import chromadb

        return chromadb.PersistentClient(path=self.path, settings=chromadb.Settings(anonymized_telemetry=False))

    def create(self) -> None:
        self.client = self._client()
        space = {"cosine": "cosine", "l2": "l2", "ip": "ip"}[self.metric]
        self.col = self.client.create_collection(NAME, metadata={"hnsw:space": space}, embedding_function=None)
        self._ef: int | None = None

    def ingest(self, ids: np.ndarray, x: np.ndarray, meta: dict[str, np.ndarray]) -> None:
        self.col.add(ids=[str(i) for i in ids.tolist()], embeddings=x, metadatas=meta_rows(meta, 0, len(ids)))

    def close(self) -> None:
        self.client.clear_system_cache()  # releases the embedded system (files, caches)
        del self.col, self.client

    def open(self) -> None:
        self.client = self._client()
        self.col = self.client.get_collection(NAME, embedding_function=None)
        self._ef = None

    def _configure(self, setting: dict[str, Any]) -> None:
        ef = setting.get("ef_search")
        if ef is not None and ef != self._ef:  # Chroma's ef is a collection setting, not a query argument
            self.col.modify(configuration={"hnsw": {"ef_search": int(ef)}})
            # Chroma 1.5 reads ef_search when it loads the HNSW segment (chroma-core/chroma#4097), and
            # keeps a loaded segment cached: without a reload the new value never reaches the graph.
            self.close()
            self.open()
            self._ef = ef

    def _query(self, q: np.ndarray, k: int, g_below: int | None, setting: dict[str, Any]) -> list[list[int]]:
        self._configure(setting)
        where = None if g_below is None else {"g": {"$lt": g_below}}
        out = self.col.query(query_embeddings=q, n_results=k, where=where, include=[])
        return [[int(i) for i in ids] for ids in out["ids"]]

    def query(self, q: np.ndarray, k: int, g_below: int | None, setting: dict[str, Any]) -> list[int]:
        return self._query(q[None, :], k, g_below, setting)[0]

    def query_batch(self, q: np.ndarray, k: int, g_below: int | None, setting: dict[str, Any]) -> list[list[int]]:
        return self._query(q, k, g_below, setting)

    def describe(self) -> str:
        return "HNSW M=16 (defaults)"


class LanceDb(DbEngine):
    library = "lancedb"
    MODULE = "lancedb"
    SETTINGS = ({"ef": 20}, {"ef": 40}, {"ef": 80}, {"ef": 160})

    def create(self) -> None:
        import lancedb

        self.db = lancedb.connect(self.path)
        self.table: Any = None

    def ingest(self, ids: np.ndarray, x: np.ndarray, meta: dict[str, np.ndarray]) -> None:
        import pyarrow as pa

        batch = pa.table({"id": pa.array(ids), "vector": pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(x, np.float32).ravel()), x.shape[1]),
            **{name: pa.array(values) for name, values in meta.items()}})
        if self.table is None:
            self.table = self.db.create_table(NAME, data=batch)
        else:
            self.table.add(batch)

    def finish_indexing(self) -> None:
        from lancedb.index import BTree, IvfHnswSq

        metric = {"cosine": "cosine", "l2": "l2", "ip": "dot"}[self.metric]
        self.table.create_index("vector", config=IvfHnswSq(distance_type=metric))
        self.table.create_index("g", config=BTree())
        self.table.wait_for_index(["vector_idx", "g_idx"])

    def close(self) -> None:
        del self.table, self.db

    def open(self) -> None:
        import lancedb

        self.db = lancedb.connect(self.path)
        self.table = self.db.open_table(NAME)

    def _search(self, q: np.ndarray, k: int, g_below: int | None, setting: dict[str, Any]) -> Any:
        query = self.table.search(q).distance_type({"cosine": "cosine", "l2": "l2", "ip": "dot"}[self.metric])
        query = query.limit(k).select(["id"]).ef(int(setting.get("ef", 40)))
        return query if g_below is None else query.where(f"g < {int(g_below)}", prefilter=True)

    def query(self, q: np.ndarray, k: int, g_below: int | None, setting: dict[str, Any]) -> list[int]:
        return self._search(q, k, g_below, setting).to_arrow().column("id").to_pylist()

    def query_batch(self, q: np.ndarray, k: int, g_below: int | None, setting: dict[str, Any]) -> list[list[int]]:
        table = self._search(q, k, g_below, setting).to_arrow()
        out: list[list[int]] = [[] for _ in range(q.shape[0])]
        for qi, i in zip(table.column("query_index").to_pylist(), table.column("id").to_pylist()):
            out[qi].append(i)
        return out

    def plan(self, q: np.ndarray, k: int, g_below: int | None, setting: dict[str, Any]) -> dict[str, Any]:
        """From LanceDB's own query plan: ``ANNSubIndex`` is its vector index, else a flat scan."""
        text = self._search(q, k, g_below, setting).explain_plan(False)
        return index_plan(1, exact="ANNSubIndex" not in text)

    def describe(self) -> str:
        return "IVF_HNSW_SQ + BTree(g), prefilter"


def fill(engine: DbEngine, x: np.ndarray, meta: dict[str, np.ndarray], batch: int) -> float:
    """Create the database and add every row in batches of ``batch``; returns the seconds taken by ingest
    (``finish_indexing`` is called after, untimed here)."""
    t0 = time.perf_counter()
    engine.create()
    for lo in range(0, x.shape[0], batch):
        hi = min(x.shape[0], lo + batch)
        engine.ingest(np.arange(lo, hi), np.ascontiguousarray(x[lo:hi]), {f: v[lo:hi] for f, v in meta.items()})
    ingest_s = time.perf_counter() - t0
    engine.finish_indexing()
    return ingest_s


ENGINES: dict[str, type[DbEngine]] = {"shoal": ShoalDb, "chroma": ChromaDb, "lancedb": LanceDb}


def split_available(engines: Sequence[str], modules: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """The engines whose package (``modules[engine]``) is installed, and a printed line per skipped one."""
    ready, skipped = [], []
    for engine in engines:
        if engine not in modules:
            reason = f"{engine}: unknown engine; known: {', '.join(modules)}"
        elif importlib.util.find_spec(modules[engine]) is None:
            reason = f"{engine}: skipped, the {modules[engine]} package is not installed (pip install 'shoal[bench-db]')"
        else:
            ready.append(engine)
            continue
        print(reason)
        skipped.append(reason)
    return ready, skipped


def directory_bytes(path: str) -> int:
    """Bytes of every file under ``path`` (what the engine keeps on disk)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total
