"""RayCollection: the router of one sharded, replicated collection, with Collection's API.

Writes: validated here exactly as ``Collection`` validates them (same errors, before anything
is sent), split by ``routing.shard_of``, one call per shard to the shard's leader (calls to
several shards go out together). Reads: one call per shard, each to one serving replica
(round robin), merged exactly (``merge.merge_topk``). A replica that is recovering or gone
is skipped; a shard with no replica that can serve within ``unavailable_after`` seconds
raises ``ShardUnavailableError`` (gRPC UNAVAILABLE) naming the shard.

Consistency (see docs/scale.md): a write is acknowledged once every serving replica of its
shard logged it, and a replica serves reads only after it caught up under the leader's lock,
so a read after an acknowledged write sees it (read-your-writes, from any router). A call
that spans shards is atomic per shard, not across shards: if one shard fails, the others may
have applied their part (upserts and deletes are idempotent: retry the call).
"""
from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.collection import Collection, _filter
from ..engine.errors import InvalidArgumentError, ShardUnavailableError, UnimplementedError
from ..engine.ids import check_ids
from ..engine.records import check_include
from ..engine.results import GetResult, QueryResult
from . import remote
from .merge import merge_topk
from .protocol import Delete, NotLeader, NotServing, Operation, Upsert
from .replica import RECOVERING, SERVING, id_not_found
from .routing import partition

if TYPE_CHECKING:
    from .database import RayDatabase

#: Query batches above this size are put in the object store once and shared by every shard's call.
SHARED_QUERY_BYTES = 64 << 10
GONE: dict[str, Any] = {"state": "gone"}


class RayCollection:
    """A collection whose shards are Ray actors; same methods, results and errors as ``shoal.Collection``."""

    def __init__(self, db: "RayDatabase", spec: dict[str, Any]) -> None:
        self._db = db
        self.spec = spec
        self.name: str = spec["name"]
        self.shards: int = spec["shards"]
        self.replicas: int = spec["replicas"]
        create = spec["create"]
        #: An empty in-memory collection of the same configuration: validates writes as Collection does.
        self._template = Collection(self.name, create["dim"], create["metric"], create["index"], **create["options"])
        self.dim = self._template.dim
        self.metric = self._template.metric
        self.index_spec = self._template.index_spec
        self.index_options = dict(self._template.index_options)
        self._leader = [0] * self.shards
        self._turn = itertools.count()

    # ------------------------------------------------------------- plumbing
    def _handle(self, shard: int, replica: int) -> Any:
        return remote.actor(remote.replica_name(self.name, shard, replica))

    def _timeout(self) -> float:
        return self._db.call_timeout

    def _unavailable(self, shard: int, why: str) -> ShardUnavailableError:
        return ShardUnavailableError(
            f"shard {shard} of collection {self.name!r} has no replica that can serve ({why}); "
            f"replicas {', '.join(remote.replica_name(self.name, shard, r) for r in range(self.replicas))} "
            f"in Ray namespace {remote.NAMESPACE!r}; RayDatabase.repair({self.name!r}) recreates missing ones")

    def _states(self, shard: int) -> dict[int, dict[str, Any] | None]:
        """Each replica's ``info()``; ``{"state": "gone"}`` when no actor has its name (killed for good),
        None when the actor exists but does not answer (restarting)."""
        refs = {}
        for r in range(self.replicas):
            try:
                refs[r] = self._handle(shard, r).info.remote()
            except remote.Unreachable:
                refs[r] = GONE
        out: dict[int, dict[str, Any] | None] = {}
        for r, ref in refs.items():
            try:
                out[r] = ref if ref is GONE else remote.get(ref, 5.0)
            except remote.Unreachable:
                out[r] = None
        return out

    @staticmethod
    def _all_gone(states: dict[int, dict[str, Any] | None]) -> bool:
        return all(s is GONE for s in states.values())

    def _why(self, states: dict[int, dict[str, Any] | None]) -> str:
        gone = sum(1 for s in states.values() if s is GONE)
        restarting = sum(1 for s in states.values() if s is None)
        recovering = sum(1 for s in states.values() if s is not None and s["state"] == RECOVERING)
        return f"of {len(states)} replicas {gone} gone, {restarting} restarting, {recovering} recovering"

    # ---------------------------------------------------------------- writes
    def _find_leader(self, shard: int) -> int | None:
        """The shard's leader, asking the most advanced serving replica to take over when there is none."""
        states = self._states(shard)
        serving = {r: s for r, s in states.items() if s is not None and s["state"] == SERVING}
        for r, s in serving.items():
            if s["leader"] == r:
                return r
        if not serving:
            if self._all_gone(states):
                raise self._unavailable(shard, self._why(states))
            return None
        best = max(serving, key=lambda r: (serving[r]["epoch"], serving[r]["seq"], -r))
        try:
            return remote.get(self._handle(shard, best).takeover.remote(), self._timeout())
        except NotLeader as moved:
            return moved.leader
        except (NotServing, remote.Unreachable):
            return None

    def _write_shard(self, shard: int, op: Operation, op_id: str, first: Any = None) -> Any:
        """Send ``op`` to the shard's leader until one acknowledges (``first``: a call already in flight)."""
        deadline = time.monotonic() + self._db.unavailable_after
        leader: int | None = self._leader[shard]
        while True:
            try:
                if first is None:
                    if leader is None:
                        raise NotServing("no leader")
                    first = self._handle(shard, leader).write.remote(op_id, op)
                result = remote.get(first, self._timeout())
                self._leader[shard] = leader
                return result
            except NotLeader as moved:
                leader = moved.leader
            except (NotServing, remote.Unreachable):
                leader = None
            first = None
            if leader is None:
                leader = self._find_leader(shard)
            if leader is None:
                if time.monotonic() > deadline:
                    raise self._unavailable(shard, self._why(self._states(shard)))
                time.sleep(0.05)

    def _write(self, ops: dict[int, Operation]) -> list[Any]:
        """One write per shard, sent together; the same operation id makes a retried one apply once."""
        calls = {}
        for shard, op in ops.items():
            op_id = uuid.uuid4().hex
            try:
                ref = self._handle(shard, self._leader[shard]).write.remote(op_id, op)
            except remote.Unreachable:
                ref = None
            calls[shard] = (op, op_id, ref)
        return [self._write_shard(shard, op, op_id, ref) for shard, (op, op_id, ref) in calls.items()]

    def upsert(self, ids: Any, vectors: Any, metadata: Any = None) -> int:
        """Insert or replace records; returns how many were written."""
        ids_list, x, payloads = self._template._check_upsert(ids, vectors, metadata)
        ops = {}
        for shard, pos in enumerate(partition(ids_list, self.shards)):
            if pos:
                ops[shard] = Upsert([ids_list[p] for p in pos], np.ascontiguousarray(x[pos]), [payloads[p] for p in pos])
        self._write(ops)
        return len(ids_list)

    def delete(self, ids: Any = None, filter: Any = None) -> int:
        """Delete by ids and/or by filter; ids that do not exist are ignored (as ``Collection.delete``);
        returns how many were deleted."""
        if ids is None and filter is None:
            raise InvalidArgumentError("delete needs ids or a filter (use filter={} to delete everything)")
        ids_list = None if ids is None else check_ids(ids)
        _filter(filter)  # a bad filter fails here, before anything is sent
        if ids_list is None:
            return sum(self._write({s: Delete(None, filter) for s in range(self.shards)}))
        parts = {s: [ids_list[p] for p in pos] for s, pos in enumerate(partition(ids_list, self.shards)) if pos}
        return sum(self._write({s: Delete(part, filter) for s, part in parts.items()}))

    # ----------------------------------------------------------------- reads
    def _read(self, calls: dict[int, tuple[str, tuple[Any, ...]]]) -> dict[int, Any]:
        """``method(*args)`` on one serving replica of each shard, in parallel; retried on another replica."""
        turn = next(self._turn)
        pending = {}
        for shard, (method, args) in calls.items():
            pending[shard] = self._submit(shard, (turn + shard) % self.replicas, method, args)
        out, error = {}, None
        for shard, ref in pending.items():  # every answer is collected, even after an error (Ray logs lost ones)
            try:
                out[shard] = self._read_shard(shard, calls[shard], turn, ref)
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error
        return out

    def _submit(self, shard: int, replica: int, method: str, args: tuple[Any, ...]) -> Any:
        try:
            return getattr(self._handle(shard, replica), method).remote(*args)
        except remote.Unreachable:
            return None

    def _read_shard(self, shard: int, call: tuple[str, tuple[Any, ...]], turn: int, ref: Any) -> Any:
        method, args = call
        deadline = time.monotonic() + self._db.unavailable_after
        for attempt in itertools.count():
            if ref is not None:
                try:
                    return remote.get(ref, self._timeout())
                except (NotServing, remote.Unreachable):
                    pass
            if attempt % self.replicas == self.replicas - 1:  # every replica was tried once more
                states = self._states(shard)
                if self._all_gone(states) or time.monotonic() > deadline:
                    raise self._unavailable(shard, self._why(states))
                time.sleep(0.05)
            ref = self._submit(shard, (turn + shard + attempt + 1) % self.replicas, method, args)
        raise AssertionError("unreachable")

    def _everywhere(self, method: str, *args: Any) -> list[Any]:
        return list(self._read({s: (method, args) for s in range(self.shards)}).values())

    def search(self, queries: Any, k: int = 10, filter: Any = None, params: Mapping[str, Any] | None = None,
               include: Iterable[str] = ("metadata", "distance"), explain: bool = False
               ) -> QueryResult | list[QueryResult]:
        """k nearest records per query over every shard (one call per shard for the whole batch)."""
        include = tuple(include) if not isinstance(include, str) else include
        shared = queries
        if isinstance(queries, np.ndarray) and queries.nbytes > SHARED_QUERY_BYTES:
            import ray

            shared = ray.put(queries)
        parts = self._everywhere("search", shared, k, filter, params, include, explain)
        if isinstance(parts[0], QueryResult):
            return self._merged(list(parts), k, explain)
        return [self._merged([p[i] for p in parts], k, explain) for i in range(len(parts[0]))]

    @staticmethod
    def _merged(parts: list[QueryResult], k: int, explain: bool) -> QueryResult:
        out = merge_topk(parts, k)
        if explain:
            out.plan = [{"shard": s, **plan} for s, p in enumerate(parts) for plan in (p.plan or [])]
        return out

    def explain(self, queries: Any, k: int = 10, filter: Any = None,
                params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The plan every segment of every shard takes (each entry names its ``shard``)."""
        result = self.search(queries, k, filter, params, include=(), explain=True)
        return (result if isinstance(result, QueryResult) else result[0]).plan

    def count(self, filter: Any = None) -> int:
        """Number of records, or of those matching ``filter``."""
        _filter(filter)
        return sum(self._everywhere("count", filter))

    def __len__(self) -> int:
        return self.count()

    def get(self, ids: Any = None, *, filter: Any = None, limit: int | None = None, offset: int = 0,
            include: Any = ("metadata", "vector"), missing: str = "raise") -> GetResult:
        """Records by ids, in the order given (``Collection.get``); unknown ids raise IdNotFoundError,
        or are left out with ``missing="skip"``. Reads without ids (filter, limit, offset) are not
        distributed yet: UnimplementedError."""
        if ids is None or filter is not None or limit is not None or offset:
            raise UnimplementedError("a cluster collection gets records by ids only; reads by filter, "
                                     "limit or offset are not distributed yet")
        include = check_include(include)
        if missing not in ("raise", "skip"):
            raise InvalidArgumentError(f"missing must be 'raise' or 'skip', got {missing!r}")
        ids_list = check_ids(ids)
        where = partition(ids_list, self.shards)
        got = self._read({s: ("get_present", ([ids_list[p] for p in pos],)) for s, pos in enumerate(where) if pos})
        lost = set(itertools.chain.from_iterable(m for _, m in got.values()))
        if lost and missing == "skip":  # ask again for the ones that are there (each round has fewer)
            return self.get([i for i in ids_list if i not in lost], include=include, missing="skip")
        if lost:
            id_not_found(self.name, [i for i in ids_list if i in lost])
        vectors = np.zeros((len(ids_list), self.dim), np.float32)
        metadata: list[dict[str, Any]] = [{} for _ in ids_list]
        for shard, (res, _) in got.items():
            pos = where[shard]
            vectors[pos] = res.vectors
            for p, m in zip(pos, res.metadata):
                metadata[p] = m
        return GetResult(ids_list, vectors if "vector" in include else None,
                         metadata if "metadata" in include else None)

    # ----------------------------------------------------------- maintenance
    def _on_all_replicas(self, method: str, *args: Any) -> list[Any]:
        refs = [self._submit(s, r, "maintain", (method, *args)) for s in range(self.shards) for r in range(self.replicas)]
        out = []
        for ref in refs:
            try:
                out.append(None if ref is None else remote.get(ref, None))
            except remote.Unreachable:
                out.append(None)  # a dead replica catches up from its peers when it is back
        return out

    def optimize(self, wait: bool = True) -> None:
        """Seal and merge on every live replica (each builds its own indices)."""
        self._on_all_replicas("optimize", wait)

    def compact(self) -> bool:
        return any(bool(r) for r in self._on_all_replicas("compact"))

    def flush(self) -> None:
        self._on_all_replicas("flush")

    def snapshot(self, dest: str) -> None:
        """One consistent copy per shard, written by a serving replica to ``dest/shard-<n>`` on its node."""
        self._read({s: ("maintain", ("snapshot", f"{dest}/shard-{s}")) for s in range(self.shards)})

    def describe(self) -> dict[str, Any]:
        """Collection fields as ``Collection.describe`` gives them, plus the shard map and replica states."""
        shard_map = []
        for shard in range(self.shards):
            states = self._states(shard)
            leader = next((r for r, s in states.items() if s and s["state"] == SERVING and s["leader"] == r), None)
            shard_map.append({"shard": shard, "leader": leader, "replicas": [
                {"replica": r, "name": remote.replica_name(self.name, shard, r),
                 **({"state": "restarting"} if s is None else {key: s[key] for key in (
                     "state", "epoch", "seq", "count", "segments", "leader", "members", "catchup", "node", "pid")
                     if key in s})}
                for r, s in states.items()]})
        serving = [next((r for r in sm["replicas"] if r.get("state") == SERVING), {}) for sm in shard_map]
        counts = [r.get("count", 0) for r in serving]
        return {"name": self.name, "dim": self.dim, "metric": self.metric, "index": self.index_spec,
                "index_options": dict(self.index_options), "count": int(sum(counts)),
                "segments": sum(r.get("segments", 0) for r in serving),
                "backend": self._template.backend.name, "shards": self.shards, "replicas": self.replicas,
                "shard_map": shard_map}

    def __repr__(self) -> str:
        return (f"RayCollection({self.name!r}, dim={self.dim}, metric={self.metric!r}, index={self.index_spec!r}, "
                f"shards={self.shards}, replicas={self.replicas})")
