"""RWLock: readers share, a writer is alone, a waiting writer goes before new readers."""
from __future__ import annotations

import threading

from shoal.engine.locks import RWLock

from tests.conftest import wait_for


def _in_thread(fn) -> threading.Thread:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def test_readers_share_the_lock():
    lock = RWLock()
    inside = threading.Event()
    with lock.read():
        t = _in_thread(lambda: (lock.read().__enter__(), inside.set(), lock.read().__exit__()))
        assert inside.wait(5), "a second reader waited for the first"
    t.join(5)


def test_writer_waits_for_the_last_reader_and_then_runs():
    lock = RWLock()
    order: list[str] = []
    lock.read().__enter__()
    lock.read().__enter__()

    def write() -> None:
        with lock.write():
            order.append("write")
    t = _in_thread(write)
    wait_for(lambda: lock._writers_waiting == 1, what="writer waiting")
    lock.read().__exit__()
    assert order == [] and t.is_alive(), "the writer ran while a reader held the lock"
    order.append("last reader leaves")
    lock.read().__exit__()  # the release that must wake the writer
    t.join(5)
    assert order == ["last reader leaves", "write"]


def test_waiting_writer_blocks_new_readers():
    lock = RWLock()
    events: list[str] = []
    lock.read().__enter__()

    def write() -> None:
        with lock.write():
            events.append("write")

    def read() -> None:
        with lock.read():
            events.append("read")
    w = _in_thread(write)
    wait_for(lambda: lock._writers_waiting == 1, what="writer waiting")
    r = _in_thread(read)
    wait_for(lambda: len(lock._cond._waiters) == 2, what="the new reader blocked behind the writer")
    assert events == []
    lock.read().__exit__()
    w.join(5)
    r.join(5)
    assert events == ["write", "read"]


def test_writers_exclude_each_other_and_readers_resume():
    lock = RWLock()
    active, most = [0], [0]
    guard = threading.Lock()

    def write() -> None:
        for _ in range(200):
            with lock.write():
                with guard:
                    active[0] += 1
                    most[0] = max(most[0], active[0])
                with guard:
                    active[0] -= 1
    threads = [_in_thread(write) for _ in range(3)]
    for t in threads:
        t.join(20)
    assert most[0] == 1
    with lock.read():  # nothing left holding or waiting
        assert lock._readers == 1 and not lock._writer and not lock._writers_waiting
