"""A readers-writer lock: many searches run at once, a change to the index runs alone.

Graph searches release the GIL and run in parallel on one index; an add relinks neighbour
lists in place and may reallocate the arrays a search is reading, so adds and removals take
the lock exclusively (between insert batches, so long adds let searches through). Writers are
preferred: once one waits, new readers queue behind it, so a stream of searches cannot starve
an add. Not re-entrant.
"""
from __future__ import annotations

import threading


class ReadWriteLock:
    """``acquire_read``/``release_read`` around searches, ``writing()`` around changes."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    def acquire_read(self) -> None:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True

    def release_write(self) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()

    def writing(self) -> "_Writing":
        """Context manager holding the lock exclusively."""
        return _Writing(self)


class _Writing:
    __slots__ = ("_lock",)

    def __init__(self, lock: ReadWriteLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock.acquire_write()

    def __exit__(self, *exc: object) -> None:
        self._lock.release_write()
