"""The replica state machine without Ray: the replicas of one shard live in this process and call
each other through an in-process stand-in for ``cluster.remote`` (every call on a pool thread, as
an actor's threaded methods run), so the orderings that a Ray restart produces can be forced.

Regression for the kill tests that failed in fresh-clone CI runs (issue 20): Ray restarted a
killed follower fast; the leader's forward to it failed and its ``demote`` was queued for the
old process, ran in the new one *after* it had rejoined, and stopped it serving; the recovery
thread was still finishing that join, so the demote's recovery was never started and the
replica stayed "recovering" until the test gave up (120 s).
"""
from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, Callable

import numpy as np
import pytest

from shoal.cluster import remote
from shoal.cluster.protocol import Entry, Upsert
from shoal.cluster.replica import RECOVERING, SERVING, ReplicaSpec, ShardReplica

from tests.conftest import wait_for

DIM = 4


class Bus:
    """Named replicas in this process; ``hold`` keeps calls of one method back until ``release``
    (a message queued for a restarting actor), ``after`` runs a hook after a method returns."""

    def __init__(self) -> None:
        self.replicas: dict[str, ShardReplica] = {}
        self.pool = concurrent.futures.ThreadPoolExecutor(32)
        self.held: list[tuple[str, str, tuple[Any, ...]]] = []
        self.hold_method: str | None = None
        self.after: dict[str, Callable[[ShardReplica, Any], None]] = {}

    def actor(self, name: str) -> Any:
        if name not in self.replicas:
            raise remote.Unreachable(f"no actor named {name!r}")
        return _Handle(self, name)

    def call(self, name: str, method: str, args: tuple[Any, ...]) -> concurrent.futures.Future:
        if method == self.hold_method:
            self.held.append((name, method, args))
            return concurrent.futures.Future()  # fire and forget: nobody waits for it
        return self.pool.submit(self._run, name, method, args)

    def _run(self, name: str, method: str, args: tuple[Any, ...]) -> Any:
        replica = self.replicas[name]  # the process that has the name *now* runs it (as after a Ray restart)
        result = getattr(replica, method)(*args)
        hook = self.after.get(method)
        if hook is not None:
            hook(replica, args)
        return result

    def release(self) -> list[Any]:
        """Deliver the held calls now (to whichever process has the name by now); their results."""
        held, self.held, self.hold_method = self.held, [], None
        return [self._run(name, method, args) for name, method, args in held]

    @staticmethod
    def get(ref: concurrent.futures.Future, timeout: float | None) -> Any:
        try:
            return ref.result(timeout)
        except concurrent.futures.TimeoutError:
            raise remote.Unreachable("timed out") from None


class _Handle:
    def __init__(self, bus: Bus, name: str) -> None:
        self._bus, self._name = bus, name

    def __getattr__(self, method: str) -> Any:
        bus, name = self._bus, self._name

        class _Method:
            @staticmethod
            def remote(*args: Any) -> concurrent.futures.Future:
                return bus.call(name, method, args)

        return _Method


@pytest.fixture
def shard(tmp_path, monkeypatch):
    """``(bus, start)``: ``start(r)`` opens replica ``r`` of a 2-replica shard (again: a restart)."""
    bus = Bus()
    monkeypatch.setattr(remote, "actor", bus.actor)
    monkeypatch.setattr(remote, "get", bus.get)
    monkeypatch.setattr(remote, "node_id", lambda: "local")
    specs = [ReplicaSpec("c", 0, r, 2, str(tmp_path), {"dim": DIM, "metric": "l2", "index": "flat", "options": {}},
                         {"sync": "never"}, call_timeout=10.0, bootstrap_wait=1.0) for r in range(2)]

    def start(r: int) -> ShardReplica:
        old = bus.replicas.get(specs[r].name)
        if old is not None:
            old.close()  # the old process is gone (its data stays)
        bus.replicas[specs[r].name] = replica = ShardReplica(specs[r])
        return replica

    yield bus, start
    for replica in bus.replicas.values():
        replica.close()
    bus.pool.shutdown(wait=True)


def _write(leader: ShardReplica, ids: list[int]) -> None:
    x = np.arange(len(ids) * DIM, dtype=np.float32).reshape(len(ids), DIM)
    leader.write(f"op{ids[0]}", Upsert(ids, x, [{}] * len(ids)))


def _serving(*replicas: ShardReplica) -> Callable[[], bool]:
    return lambda: all(r.state == SERVING for r in replicas)


def _two_serving(bus: Bus, start: Callable[[int], ShardReplica]) -> tuple[ShardReplica, ShardReplica]:
    a, b = start(0), start(1)
    wait_for(lambda: _serving(a, b)() and 1 in a.members, timeout=30, what="both replicas serving")
    assert a.leader == 0 and b.leader == 0
    return a, b


def test_demote_for_the_previous_process_does_not_stop_the_rejoined_replica(shard, monkeypatch):
    bus, start = shard
    leader, _ = _two_serving(bus, start)
    _write(leader, [1, 2])
    bus.hold_method = "demote"  # queued for the restarting actor, delivered later
    released: list[Any] = []
    # the queued demote runs in the new process right after its rejoin's install (threaded actor
    # methods run in any order), while its recovery thread still waits for the join's answer
    bus.after["install"] = lambda replica, args: released.extend(bus.release())
    gate = threading.Event()  # the new process starts catching up only after the write below
    catch_up = ShardReplica._recover_once
    monkeypatch.setattr(ShardReplica, "_recover_once", lambda self, started: gate.wait(30) and catch_up(self, started))
    restarted = start(1)  # Ray restarts the follower: same name, it reopens its data and recovers
    _write(leader, [3])  # the forward fails (it is recovering): the leader drops it and demotes it
    assert len(bus.held) == 1 and 1 not in leader.members
    gate.set()
    wait_for(lambda: released, timeout=30, what="the rejoin")
    assert released == [False]  # the old membership's demote: ignored
    wait_for(lambda: 1 in leader.members, timeout=30, what="the join's answer")
    assert restarted.state == SERVING and restarted.membership == leader.members[1]
    _write(leader, [4])
    assert restarted.seq == leader.seq and len(restarted.col) == len(leader.col) == 4


def test_demote_that_lands_while_a_recovery_finishes_starts_the_next_one(shard):
    bus, start = shard
    leader, follower = _two_serving(bus, start)
    _write(leader, [1, 2])
    follower._stop_serving()  # it falls behind and recovers (as after a failed forward)
    installs: list[str] = []

    def demote_at_once(replica: ShardReplica, args: tuple[Any, ...]) -> None:
        """Right after the install, before the follower's recovery has seen the join's answer."""
        installs.append(args[3])
        if len(installs) == 1:
            assert replica.demote(args[0], args[3]) is True and replica.state == RECOVERING

    bus.after["install"] = demote_at_once
    wait_for(lambda: len(installs) == 2, timeout=30, what="the next recovery")  # not lost: the thread rejoins
    wait_for(_serving(follower), timeout=30, what="serving again")
    assert follower.membership == installs[1] == leader.members[1] != installs[0]
    _write(leader, [3])
    assert follower.seq == leader.seq and len(follower.col) == 3


def test_demote_ends_only_the_current_membership(shard):
    """A demote naming another membership or an older leader is ignored; the current one stops the
    follower serving (no stale reads), and it rejoins under a new membership."""
    bus, start = shard
    leader, follower = _two_serving(bus, start)
    _write(leader, [1])
    token = follower.membership
    assert token is not None and follower.demote(leader.term, "another-membership") is False
    assert follower.demote(leader.term - 1, token) is False  # from an older leader
    assert follower.state == SERVING
    assert follower.demote(leader.term, token) is True and follower.state == RECOVERING
    wait_for(_serving(follower), timeout=30, what="the rejoin")
    assert follower.membership != token


def test_entries_apply_in_order_only(shard):
    bus, start = shard
    leader, follower = _two_serving(bus, start)
    _write(leader, [1])
    tail = list(leader._tail)
    assert follower.replicate(leader.term, 0, tail) == follower.seq  # a retried forward: applied once
    later = Entry(leader.seq + 2, leader.term, "gap", Upsert([9], np.ones((1, DIM), np.float32), [{}]))
    from shoal.cluster.protocol import Behind

    with pytest.raises(Behind):
        follower.replicate(leader.term, 0, [later])


def test_restart_waits_for_the_old_process_to_release_the_directory(shard, tmp_path):
    """The new process opens while the old one still holds the directory lock (Ray placed it on an idle
    worker at once): it waits for the lock and keeps its data, instead of taking it for damaged."""
    import shoal

    bus, start = shard
    leader, follower = _two_serving(bus, start)
    _write(leader, [1, 2, 3])
    directory = follower.spec.directory
    follower.close()
    old_process = shoal.Database(directory / "db")  # still exiting: holds the lock
    threading.Timer(0.5, old_process.close).start()
    restarted = start(1)
    assert restarted.known and restarted.seq == leader.seq and len(restarted.col) == 3
    assert not list(directory.parent.glob("*.damaged-*"))
    wait_for(_serving(restarted), timeout=30, what="the rejoin")
    assert restarted.catchup == {"snapshots": 0, "entries": 0}
