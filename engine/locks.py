"""A readers-writer lock: many concurrent searches, one writer per collection."""
from __future__ import annotations

import threading


class RWLock:
    """Writer-preferring: a waiting writer blocks new readers so writes cannot starve.

    ``read()`` and ``write()`` return small context objects rather than generator-based
    context managers: a one-query search takes two read locks (collection and index), so an
    uncontended read is one mutex acquire and release each way, and a reader's release wakes
    the condition only when a writer waits.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._read = _Read(self)
        self._write = _Write(self)

    def read(self) -> "_Read":
        return self._read

    def write(self) -> "_Write":
        return self._write


class _Side:
    """One side of the lock as a context object (stateless beyond its lock, so shared by threads)."""

    __slots__ = ("_lock",)

    def __init__(self, lock: RWLock) -> None:
        self._lock = lock


class _Read(_Side):
    """``with lock.read():``"""

    __slots__ = ()

    def __enter__(self) -> None:
        lock = self._lock
        with lock._mutex:
            while lock._writer or lock._writers_waiting:
                lock._cond.wait()
            lock._readers += 1

    def __exit__(self, *exc: object) -> None:
        lock = self._lock
        with lock._mutex:
            lock._readers -= 1
            if not lock._readers and lock._writers_waiting:  # only writers wait for readers to leave
                lock._cond.notify_all()


class _Write(_Side):
    """``with lock.write():``"""

    __slots__ = ()

    def __enter__(self) -> None:
        lock = self._lock
        with lock._mutex:
            lock._writers_waiting += 1
            while lock._writer or lock._readers:
                lock._cond.wait()
            lock._writers_waiting -= 1
            lock._writer = True

    def __exit__(self, *exc: object) -> None:
        lock = self._lock
        with lock._mutex:
            lock._writer = False
            lock._cond.notify_all()
