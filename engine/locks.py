"""A readers-writer lock: many concurrent searches, one writer per collection."""
from __future__ import annotations

import threading
from collections.abc import Callable


class RWLock:
    """Writer-preferring: a waiting writer blocks new readers so writes cannot starve.

    ``read()`` and ``write()`` return small context objects rather than generator-based
    context managers: a one-query search takes the read lock once, and the generator
    machinery cost more than the lock itself.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._read = _Held(self._acquire_read, self._release_read)
        self._write = _Held(self._acquire_write, self._release_write)

    def read(self) -> "_Held":
        return self._read

    def write(self) -> "_Held":
        return self._write

    def _acquire_read(self) -> None:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def _release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if not self._readers:
                self._cond.notify_all()

    def _acquire_write(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True

    def _release_write(self) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()


class _Held:
    """``with lock.read():`` — acquire on entry, release on exit (stateless, so shared by threads)."""

    __slots__ = ("_acquire", "_release")

    def __init__(self, acquire: Callable[[], None], release: Callable[[], None]) -> None:
        self._acquire = acquire
        self._release = release

    def __enter__(self) -> None:
        self._acquire()

    def __exit__(self, *exc: object) -> None:
        self._release()
