"""One shard replica: a Ray actor that owns a durable single-node Shoal collection.

Replication (primary-backup with leader epochs, after Raft's log matching):

* One replica of a shard is its **leader**. A write goes to the leader, which numbers it
  (``seq``, under its current ``epoch``), applies it to its own collection (logged by the
  collection's WAL first), then forwards it to every serving follower, which applies it the
  same way; the leader answers once every one of them acknowledged. A follower that fails to
  acknowledge is dropped from the leader's members and told to recover.
* Every replica keeps the ``(epoch, seq)`` of its last write in a position file
  (``storage.replica_position``) and the recent writes in memory (the **tail**, bounded in
  bytes). A replica that comes back (restarted by Ray, or recreated) reopens its own data
  and is *recovering*: it answers no reads and writes, pulls the leader's tail after its
  position (or a snapshot of the leader's collection when the tail no longer reaches back
  that far, or its history diverged), and then **joins**: under the leader's write lock the
  leader sends the last entries and adds it to its members, so no write slips between.
* When the leader is gone, the most advanced serving replica (ties: the lowest number) takes
  over with a higher epoch; followers refuse writes from older epochs. When no replica of a
  shard serves (all restarted), the recovering ones wait until all answer (or
  ``bootstrap_wait`` passes) and the most advanced becomes leader.

Calls between replicas never hold the caller's lock on a follower: followers call the
leader only from their recovery thread without their own lock, so the leader (which holds
its lock while it forwards) cannot deadlock with them.

Messages can outlive the replica they were meant for: Ray keeps a restarted actor's id, so a
call sent to the old process (a ``demote`` after a failed forward) can run in the new one after
it rejoined. Each join therefore gets a **membership** token, and ``demote`` names the one it
ends; a stale demote is ignored. One recovery thread per replica lives as long as the replica
and wakes whenever the replica stops serving, so a demote that lands while it finishes a
recovery is never lost.
"""
from __future__ import annotations

import itertools
import logging
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.database import Database
from ..engine.errors import LockedError, ShoalError
from ..engine.id_tracker import IdTracker
from ..engine.results import GetResult
from ..engine.stores import remove_tree_durably
from ..storage.replica_position import PositionFile
from . import remote
from .protocol import Behind, Entry, NotLeader, NotServing, Operation, StaleEpoch, apply

log = logging.getLogger("shoal.cluster")

RECOVERING, SERVING = "recovering", "serving"
#: Operation ids remembered for retried calls (a router retries one call, not thousands).
REMEMBERED_OPS = 4096
#: The collection reads a router may ask a replica for (``ShardReplica.read``).
READS = ("search", "search_range", "count", "get", "scroll", "exists")


@dataclass(frozen=True)
class ReplicaSpec:
    """Everything a replica needs to (re)open itself; Ray keeps it for restarts."""

    collection: str
    shard: int
    replica: int
    replicas: int
    root: str
    create: dict[str, Any]  # create_collection arguments: dim, metric, index, options
    storage: dict[str, Any] = field(default_factory=dict)  # shoal.Database storage options (sync, flush_rows, ...)
    tail_bytes: int = 64 << 20
    chunk_bytes: int = 16 << 20
    call_timeout: float = 30.0
    bootstrap_wait: float = 5.0

    @property
    def name(self) -> str:
        return remote.replica_name(self.collection, self.shard, self.replica)

    @property
    def directory(self) -> Path:
        return Path(self.root) / self.collection / str(self.shard) / str(self.replica)


class ShardReplica:
    """The actor body (``ray.remote`` is applied in ``actor_class``); methods run on a thread pool."""

    def __init__(self, spec: ReplicaSpec) -> None:
        self.spec = spec
        self.index = spec.replica
        self.lock = threading.RLock()  # orders writes: numbering, applying, forwarding
        self._tail_lock = threading.Lock()
        self.state = RECOVERING
        self.leader: int | None = None
        self.term = 0
        #: Leader: the serving followers, each with the membership token of its join.
        self.members: dict[int, str] = {}
        #: Follower: the token of the join that made it the leader's member (None while not a member).
        self.membership: str | None = None
        self._done: OrderedDict[str, tuple[Entry, Any]] = OrderedDict()
        self._stopping = False
        #: How this replica caught up since it started: snapshots installed, log entries replayed from a peer.
        self.catchup = {"snapshots": 0, "entries": 0}
        self._open_local()
        self._wake = threading.Condition()  # notified when the replica stops serving (or closes)
        self._recovery = threading.Thread(target=self._recovery_thread, name=f"recover {spec.name}", daemon=True)
        self._recovery.start()

    # ------------------------------------------------------------ local data
    def _open_local(self) -> None:
        """Open (or create) this replica's database; damaged data is set aside and refetched from a peer."""
        spec = self.spec
        spec.directory.mkdir(parents=True, exist_ok=True)
        fsync = spec.storage.get("sync", "always") == "always"
        try:
            self._open_db_when_free()
            self.position = PositionFile(spec.directory / "POSITION", fsync=fsync)
            self.epoch, self.seq = self.position.read()
            self.known = True
        except LockedError:
            raise  # a live process still has the directory: that is not damage, and the data stays
        except ShoalError as exc:
            log.warning("%s: local data cannot be used (%s); it is moved aside and fetched from a peer", spec.name, exc)
            self._close_db()
            aside = spec.directory.with_name(f"{spec.directory.name}.damaged-{int(time.time())}")
            os.replace(spec.directory, aside)
            spec.directory.mkdir(parents=True)
            self._open_db()
            self.position = PositionFile(spec.directory / "POSITION", fsync=fsync)
            self.epoch, self.seq = 0, 0
            self.known = False  # must take a snapshot: the data says nothing about what it holds
        self._reset_tail()

    def _open_db_when_free(self) -> None:
        """``_open_db``, waiting up to ``call_timeout`` for the directory lock: Ray starts a replica's
        new process as soon as the old one is marked dead (on an idle worker: within milliseconds), and
        the old one may still be exiting with the lock. Without the wait, the data would be taken for
        damaged and moved aside, and with every replica of a shard restarted at once, lost."""
        deadline = time.monotonic() + self.spec.call_timeout
        while True:
            try:
                return self._open_db()
            except LockedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _open_db(self) -> None:
        spec = self.spec
        self.db = Database(spec.directory / "db", **spec.storage)
        if spec.collection in self.db.list_collections():
            self.col = self.db.get_collection(spec.collection)
        else:
            create = spec.create
            self.col = self.db.create_collection(spec.collection, create["dim"], create["metric"], create["index"],
                                                 **create["options"])

    def _close_db(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            db.close()
        self.db = None

    def _reset_tail(self) -> None:
        with self._tail_lock:
            self._tail: deque[Entry] = deque()
            self._tail_size = 0
            self._base = (self.epoch, self.seq)  # the position just before the tail's first entry

    def _apply(self, entry: Entry) -> Any:
        """Apply the next write (caller holds ``lock``): collection (WAL first), position, tail."""
        result = apply(self.col, entry.op)
        self.epoch, self.seq = entry.epoch, entry.seq
        self.position.write(self.epoch, self.seq)
        with self._tail_lock:
            self._tail.append(entry)
            self._tail_size += entry.op.nbytes
            while self._tail_size > self.spec.tail_bytes and len(self._tail) > 1:
                old = self._tail.popleft()
                self._tail_size -= old.op.nbytes
                self._base = (old.epoch, old.seq)
        self._done[entry.op_id] = (entry, result)
        if len(self._done) > REMEMBERED_OPS:
            self._done.popitem(last=False)
        return result

    def _apply_entries(self, entries: list[Entry]) -> int:
        """Apply the entries this replica lacks, in order; returns how many it applied."""
        before = self.seq
        for entry in entries:
            if entry.seq <= self.seq:
                continue  # already applied (a retried forward)
            if entry.seq != self.seq + 1:
                raise Behind(self.seq)
            self._apply(entry)
        return self.seq - before

    # --------------------------------------------------------------- status
    def info(self) -> dict[str, Any]:
        """State for routers, peers and ``describe`` (takes no lock: peers call it while holding theirs)."""
        return {"replica": self.index, "name": self.spec.name, "state": self.state, "leader": self.leader,
                "term": self.term, "epoch": self.epoch, "seq": self.seq, "position_known": self.known,
                "members": sorted(self.members), "membership": self.membership, "catchup": dict(self.catchup),
                "tail_from": self._base[1], "count": len(self.col),
                "segments": len(self.col._shard.segments),
                "pid": os.getpid(), "node": remote.node_id()}

    def _peers(self) -> list[int]:
        return [r for r in range(self.spec.replicas) if r != self.index]

    def _peer(self, replica: int) -> Any:
        return remote.actor(remote.replica_name(self.spec.collection, self.spec.shard, replica))

    def _peer_infos(self, timeout: float = 5.0) -> dict[int, dict[str, Any] | None]:
        refs = {}
        for r in self._peers():
            try:
                refs[r] = self._peer(r).info.remote()
            except remote.Unreachable:
                refs[r] = None
        out: dict[int, dict[str, Any] | None] = {}
        for r, ref in refs.items():
            try:
                out[r] = None if ref is None else remote.get(ref, timeout)
            except (remote.Unreachable, ShoalError):
                out[r] = None
        return out

    def _check_serving(self) -> None:
        if self.state != SERVING:
            raise NotServing(f"{self.spec.name} is recovering")

    # ---------------------------------------------------------------- writes
    def write(self, op_id: str, op: Operation) -> Any:
        """Leader: number, apply, forward to the members; returns the operation's result."""
        with self.lock:
            self._check_serving()
            if self.leader != self.index:
                raise NotLeader(self.leader)
            done = self._done.get(op_id)
            if done is None:
                entry = Entry(self.seq + 1, self.term, op_id, op)
                result = self._apply(entry)
            else:  # a retried call: already applied here; make sure the members have it too
                entry, result = done
            self._forward([entry])
            return result

    def _forward(self, entries: list[Entry]) -> None:
        refs = {}
        for m in sorted(self.members):
            try:
                refs[m] = self._peer(m).replicate.remote(self.term, self.index, entries)
            except remote.Unreachable:
                refs[m] = None
        for m, ref in refs.items():
            try:
                if ref is None:
                    raise remote.Unreachable("gone")
                try:
                    remote.get(ref, self.spec.call_timeout)
                except Behind as behind:  # it missed writes (a forward that failed halfway): send them
                    missing = self._since(*self._position_of(behind.seq))
                    if missing is None or not missing[1]:
                        raise
                    remote.get(self._peer(m).replicate.remote(self.term, self.index, missing[0]),
                               self.spec.call_timeout)
            except StaleEpoch:
                self._step_down()
                raise NotLeader(None, "a newer leader took over") from None
            except (remote.Unreachable, ShoalError, Behind, NotServing) as exc:
                self._drop_member(m, exc)

    def _step_down(self) -> None:
        """A follower follows a newer leader: this one stops, unacknowledged, and recovers. Its last write
        is not in the new leader's history, so recovery replaces its data by a snapshot."""
        log.warning("%s: a newer leader exists; stepping down", self.spec.name)
        self.leader, self.members = None, {}
        self._stop_serving()

    def _drop_member(self, m: int, why: Exception) -> None:
        log.warning("%s: replica %d left the shard's members (%s: %s)", self.spec.name, m, type(why).__name__, why)
        token = self.members.pop(m, None)
        if token is not None:
            self._demote(m, token)

    def _demote(self, replica: int, membership: str | None) -> None:
        """Best effort: a live but lagging follower stops serving reads (a stale one ignores it)."""
        try:
            self._peer(replica).demote.remote(self.term, membership)
        except remote.Unreachable:
            pass

    def _add_member(self, replica: int, entries: list[Entry]) -> None:
        """Leader (holding its lock): make ``replica`` a serving follower with the last ``entries``."""
        token = uuid.uuid4().hex
        try:
            ref = self._peer(replica).install.remote(self.term, self.index, entries, token)
            remote.get(ref, self.spec.call_timeout)
        except BaseException:
            self._demote(replica, token)  # it may have installed before the call failed: it must not serve
            raise
        self.members[replica] = token

    def _position_of(self, seq: int) -> tuple[int, int]:
        """``(epoch, seq)`` of an entry this replica holds (for a follower that reported its last seq)."""
        with self._tail_lock:
            if seq == self._base[1]:
                return self._base
            offset = seq - self._base[1] - 1
            if 0 <= offset < len(self._tail):
                return self._tail[offset].epoch, seq
        return -1, seq  # unknown: _since answers None

    def replicate(self, term: int, leader: int, entries: list[Entry]) -> int:
        """Follower: apply the leader's entries in order; returns the last seq."""
        with self.lock:
            if term < self.term:
                raise StaleEpoch(f"{self.spec.name} follows epoch {self.term}, not {term}")
            self._check_serving()
            self.term, self.leader = term, leader
            self._apply_entries(entries)
            return self.seq

    def install(self, term: int, leader: int, entries: list[Entry], membership: str) -> int:
        """From the leader (join or take-over): apply the last entries and serve as its follower;
        ``membership`` is the token a later ``demote`` of this membership names."""
        with self.lock:
            if term < self.term:
                raise StaleEpoch(f"{self.spec.name} follows epoch {self.term}, not {term}")
            self.catchup["entries"] += self._apply_entries(entries)
            self.term, self.leader, self.members, self.membership = term, leader, {}, membership
            self.state, self.known = SERVING, True
            return self.seq

    def demote(self, term: int, membership: str | None) -> bool:
        """The leader dropped this replica from its members: stop serving and catch up again. A demote
        of an earlier membership (sent to this replica's previous process, or before it rejoined) is
        ignored. Returns whether it took effect."""
        with self.lock:
            if (term < self.term or self.state != SERVING or self.leader == self.index or membership is None
                    or membership != self.membership):
                return False
            self._stop_serving()
            return True

    def _stop_serving(self) -> None:
        """Stop answering reads and writes (caller holds ``lock``); the recovery thread catches up."""
        self.state, self.membership = RECOVERING, None
        with self._wake:
            self._wake.notify_all()

    # --------------------------------------------------------- catching up
    def _since(self, epoch: int, seq: int, limit: int | None = None) -> tuple[list[Entry], bool] | None:
        """Entries after ``(epoch, seq)`` if this replica's history contains that position:
        ``(entries, complete)``, at most ``limit`` bytes; None when a snapshot is needed."""
        with self._tail_lock:
            base_epoch, base_seq = self._base
            if seq == base_seq:
                if epoch != base_epoch:
                    return None
            elif base_seq < seq <= base_seq + len(self._tail):
                if self._tail[seq - base_seq - 1].epoch != epoch:
                    return None
            else:
                return None
            rest = list(itertools.islice(self._tail, seq - base_seq, None))
        if limit is None:
            return rest, True
        out, size = [], 0
        for entry in rest:
            if out and size + entry.op.nbytes > limit:
                return out, False
            out.append(entry)
            size += entry.op.nbytes
        return out, True

    def tail_since(self, epoch: int, seq: int) -> tuple[list[Entry], bool] | None:
        self._check_serving()
        return self._since(epoch, seq, self.spec.chunk_bytes)

    def join(self, replica: int, epoch: int, seq: int) -> str:
        """Leader: send a recovering replica its last entries and add it to the members, under the lock.

        Returns ``"joined"``, ``"more"`` (too far behind to finish under the lock: pull more first)
        or ``"snapshot"`` (its position is not in this history)."""
        with self.lock:
            self._check_serving()
            if self.leader != self.index:
                raise NotLeader(self.leader)
            got = self._since(epoch, seq, self.spec.chunk_bytes)
            if got is None:
                return "snapshot"
            entries, complete = got
            if not complete:
                return "more"
            self._add_member(replica, entries)
            return "joined"

    def snapshot_files(self) -> tuple[int, int, dict[str, bytes]]:
        """A consistent copy of the collection with the position it corresponds to (writes wait meanwhile)."""
        with self.lock:
            self._check_serving()
            tmp = self.spec.directory / f".send-{os.getpid()}-{time.monotonic_ns()}"
            try:
                self.col.snapshot(tmp)
                files = {str(p.relative_to(tmp)): p.read_bytes() for p in sorted(tmp.rglob("*")) if p.is_file()}
                return self.epoch, self.seq, files
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

    def _install_snapshot(self, epoch: int, seq: int, files: dict[str, bytes]) -> None:
        with self.lock:
            self._close_db()
            target = self.spec.directory / "db" / "collections" / self.spec.collection
            incoming = target.with_name(f".tmp-{self.spec.collection}")  # Database clears .tmp-* on open
            shutil.rmtree(incoming, ignore_errors=True)
            for rel, data in files.items():
                path = incoming / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            if target.exists():
                remove_tree_durably(target)
            os.replace(incoming, target)
            self._open_db()
            self.epoch, self.seq, self.known = epoch, seq, True
            self.position.write(epoch, seq)
            self._reset_tail()
            self.catchup["snapshots"] += 1
        log.info("%s: installed a snapshot at epoch %d seq %d (%d files)", self.spec.name, epoch, seq, len(files))

    def _recovery_thread(self) -> None:
        """For the replica's lifetime: whenever it does not serve, catch up until it does.

        The state is checked under ``_wake``, which ``_stop_serving`` notifies after changing it, so
        a demote that lands just as a recovery finishes starts the next one instead of being lost."""
        while True:
            with self._wake:
                while self.state == SERVING and not self._stopping:
                    self._wake.wait()
            if self._stopping:
                return
            self._recover()

    def _recover(self) -> None:
        started = time.monotonic()
        while not self._stopping and self.state != SERVING:
            try:
                if self._recover_once(started):
                    log.info("%s: serving (epoch %d, seq %d, leader %s)", self.spec.name, self.epoch, self.seq,
                             self.leader)
                    continue  # (a demote may already have ended it again: the loop checks)
            except Exception as exc:  # a peer died meanwhile, a snapshot failed: try again
                log.warning("%s: recovery step failed: %s: %s", self.spec.name, type(exc).__name__, exc)
            time.sleep(0.1)

    def _recover_once(self, started: float) -> bool:
        infos = self._peer_infos()
        serving = {r: i for r, i in infos.items() if i is not None and i["state"] == SERVING}
        if serving:
            leaders = [r for r, i in serving.items() if i["leader"] == r]
            if leaders:
                return self._join(leaders[0])
            best = max(serving, key=lambda r: (serving[r]["epoch"], serving[r]["seq"], -r))
            try:  # the leader is gone and nobody has written since: ask the best follower to take over
                remote.get(self._peer(best).takeover.remote(), self.spec.call_timeout)
            except (NotLeader, NotServing):
                pass
            return False
        answered = {r: i for r, i in infos.items() if i is not None}
        if len(answered) < len(infos) and time.monotonic() - started < self.spec.bootstrap_wait:
            return False  # wait for the other replicas to reopen: the most advanced one must lead
        positions = {r: (i["epoch"], i["seq"]) if i["position_known"] else (-1, -1) for r, i in answered.items()}
        positions[self.index] = (self.epoch, self.seq) if self.known else (-1, -1)
        best = max(positions, key=lambda r: (positions[r], -r))
        if best != self.index:
            return False  # it becomes leader; this replica joins it next round
        with self.lock:
            self.term = max([self.term, self.epoch] + [i["term"] for i in answered.values()]) + 1
            self.leader, self.members, self.state, self.known = self.index, {}, SERVING, True
        return True

    def _join(self, leader: int) -> bool:
        peer = self._peer(leader)
        for _ in range(1000):
            if not self.known:
                self._install_snapshot(*remote.get(peer.snapshot_files.remote(), self.spec.call_timeout))
                continue
            got = remote.get(peer.tail_since.remote(self.epoch, self.seq), self.spec.call_timeout)
            if got is None:
                self.known = False  # diverged or too far behind: take a snapshot
                continue
            entries, complete = got
            with self.lock:
                self.catchup["entries"] += self._apply_entries(entries)
            if not complete:
                continue
            answer = remote.get(peer.join.remote(self.index, self.epoch, self.seq), self.spec.call_timeout)
            if answer == "joined":
                return True
            if answer == "snapshot":
                self.known = False
        return False

    def takeover(self) -> int:
        """Become the shard's leader if the old one is gone and this replica is the most advanced."""
        with self.lock:
            self._check_serving()
            if self.leader == self.index:
                return self.index
            infos = self._peer_infos()
            serving = {r: i for r, i in infos.items() if i is not None and i["state"] == SERVING}
            for r, i in serving.items():
                if i["leader"] == r:
                    raise NotLeader(r, "the shard has a live leader")
            positions = {r: (i["epoch"], i["seq"]) for r, i in serving.items()}
            positions[self.index] = (self.epoch, self.seq)
            best = max(positions, key=lambda r: (positions[r], -r))
            if best != self.index:
                raise NotLeader(best, "a more advanced replica takes over")
            self.term = max([self.term] + [i["term"] for i in infos.values() if i is not None]) + 1
            self.leader, self.members, self.membership = self.index, {}, None
            for r, i in serving.items():
                got = self._since(i["epoch"], i["seq"])
                try:
                    if got is None:
                        raise Behind(i["seq"])
                    self._add_member(r, got[0])
                except (remote.Unreachable, ShoalError, Behind, StaleEpoch) as exc:
                    log.warning("%s: replica %d not taken over (%s: %s)", self.spec.name, r, type(exc).__name__, exc)
                    self._demote(r, i["membership"])  # the old leader's membership it reported
            log.info("%s: took over as leader (epoch %d, members %s)", self.spec.name, self.term, sorted(self.members))
            return self.index

    # ----------------------------------------------------------------- reads
    def read(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A read of this replica's own collection (one of ``READS``), once it serves."""
        if method not in READS:
            raise AttributeError(method)
        self._check_serving()
        return getattr(self.col, method)(*args, **kwargs)

    def get_by_ids(self, ids: list[Any], filter: Any, include: tuple[str, ...]) -> tuple[GetResult, list[Any]]:
        """The records of ``ids`` that are here and match ``filter`` (in the order given), and the ids
        that are not here (the router raises IdNotFoundError for them across all shards). Under the
        write-ordering lock, so both answers describe the same moment."""
        with self.lock:
            self._check_serving()
            tracker = self.col._shard.tracker
            return (self.col.get(ids, filter=filter, include=include, missing="skip"),
                    [i for i in ids if i not in tracker])

    def describe(self) -> dict[str, Any]:
        return {**self.info(), "collection": self.col.describe()}

    # ------------------------------------------------------------ maintenance
    def maintain(self, method: str, *args: Any) -> Any:
        """``optimize`` / ``compact`` / ``flush`` / ``snapshot`` on this replica's own collection."""
        if method not in ("optimize", "compact", "flush", "snapshot"):
            raise AttributeError(method)
        return getattr(self.col, method)(*args)

    def close(self, remove: bool = False) -> None:
        """Stop recovering, close the database (``remove``: delete this replica's directory too)."""
        self._stopping = True
        with self.lock:
            self._stop_serving()  # (wakes the recovery thread, which sees _stopping and ends)
            self._close_db()
            self.position.close()
            if remove:
                shutil.rmtree(self.spec.directory, ignore_errors=True)


_ACTOR: Any = None


def actor_class() -> Any:
    """``ShardReplica`` as a Ray actor: restarted forever by Ray, threaded so reads run beside writes."""
    global _ACTOR
    if _ACTOR is None:
        import ray

        _ACTOR = ray.remote(max_restarts=-1, max_task_retries=0, max_concurrency=16, num_cpus=0)(ShardReplica)
    return _ACTOR


def id_not_found(collection: str, missing: list[Any]) -> None:
    """Raise the IdNotFoundError a single collection raises for these ids (same message)."""
    IdTracker().internal_of(missing, f"collection {collection!r}")
