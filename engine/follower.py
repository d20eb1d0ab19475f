"""A read-only Database that follows another process writing the same directory.

``shoal serve --workers N`` (``rpc/workers.py``) runs one writing process and N-1 readers; each reader
holds a :class:`FollowerDatabase`. Before answering a read it makes its copy current:

* ``collections/`` changed (its mtime: a collection was created, dropped or renamed): rescan it;
* a collection's ``MANIFEST`` is another file (every manifest write is an atomic rename: a seal,
  a merge, a compaction) or its ``wal.log`` is another file (rotated at a seal): reopen that
  collection from the files (segments are memory-mapped, so this reads the index and the log);
* the same ``wal.log`` grew: parse only the records appended since the last look
  (``storage.wal.parse_records`` from the previous end) and apply them under the shard's write lock.

So a read that starts after a write was acknowledged sees it: the writer acknowledges only after
the record is in the log (written to the OS in every sync mode), and the reader's check comes after
that. Reads never see a torn record (checksums; a partial tail is simply not there yet). The check
costs three ``stat`` calls per read when nothing changed; a write makes the next read on every reader
pay for catching up (the records, or a reopen after a seal), so followers suit read-mostly traffic.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from ..storage.io_errors import storage_errors
from ..storage.manifest import NAME as MANIFEST
from ..storage.wal import parse_records
from .collection import Collection
from .database import COLLECTIONS, Database
from .errors import ShoalError
from .stores import WAL

#: What identifies a file's version for a follower: (inode, size, mtime ns); None when it is missing.
FileToken = tuple[int, int, int] | None


def file_token(path: Path) -> FileToken:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class _Followed:
    """One collection as loaded: the files' tokens taken before loading it, and where its log was read to."""

    def __init__(self, col: Collection, manifest: FileToken, wal: FileToken) -> None:
        self.col, self.manifest, self.wal = col, manifest, wal
        self.log_end = col._shard.store.log_end


class FollowerDatabase(Database):
    """``Database(path, read_only=True)`` that catches up with the writer before every lookup.

    ``get_collection`` and ``list_collections`` return the current state; a Collection object
    handed out earlier keeps answering from the state it was loaded with (searches in flight are
    never cut off), and the next lookup gives the newer one.
    """

    def __init__(self, path: str | os.PathLike, **options: Any) -> None:
        self._followed: dict[str, _Followed] = {}
        self._catching_up = threading.Lock()
        root = Path(path) / COLLECTIONS
        self._dir_token = file_token(root)  # before the open: a change meanwhile is seen on the next lookup
        tokens = {child.name: self._tokens(child) for child in root.iterdir()} if root.is_dir() else {}
        super().__init__(path, read_only=True, **options)
        for name, col in self._collections.items():
            manifest, wal = tokens.get(name, (None, None))
            self._followed[name] = _Followed(col, manifest, wal)

    @staticmethod
    def _tokens(directory: Path) -> tuple[FileToken, FileToken]:
        return file_token(directory / MANIFEST), file_token(directory / WAL)

    # ------------------------------------------------------------------ lookups
    def get_collection(self, name: str) -> Collection:
        self._check_open(writing=False)
        self._rescan_if_changed()
        followed = self._followed.get(name)
        if followed is not None:
            self._catch_up(name, followed)
        return super().get_collection(name)

    def list_collections(self) -> list[str]:
        self._check_open(writing=False)
        self._rescan_if_changed()
        return super().list_collections()

    # ------------------------------------------------------------------ catching up
    def _rescan_if_changed(self) -> None:
        root = Path(self.path) / COLLECTIONS  # type: ignore[arg-type]
        if file_token(root) == self._dir_token:
            return
        with self._catching_up:
            token = file_token(root)
            if token == self._dir_token:
                return
            with storage_errors(root, "list collections"):
                names = {c.name for c in root.iterdir() if not c.name.startswith((".tmp-", ".drop-"))}
            for gone in set(self._collections) - names:
                del self._collections[gone]
                self._followed.pop(gone, None)
            for gone in set(self.unavailable) - names:
                del self.unavailable[gone]
            for new in sorted(names - set(self._collections) - set(self.unavailable)):
                self._reopen(new)
            self._dir_token = token

    def _catch_up(self, name: str, followed: _Followed) -> None:
        directory = self._dir(name)
        manifest, wal = self._tokens(directory)
        if manifest == followed.manifest and wal == followed.wal:
            return
        with self._catching_up:
            followed = self._followed.get(name, followed)
            manifest, wal = self._tokens(directory)
            if manifest == followed.manifest and wal == followed.wal:
                return
            # The same log, grown. Shorter than what was read: the writer cut back a record it failed to
            # make durable (and never acknowledged), so reload rather than keep it.
            same_log = manifest == followed.manifest and wal is not None and followed.wal is not None \
                and wal[0] == followed.wal[0] and wal[1] >= followed.log_end
            if not (same_log and self._read_tail(directory / WAL, followed, wal)):
                self._reopen(name)

    def _read_tail(self, path: Path, followed: _Followed, token: FileToken) -> bool:
        """Apply the records appended to the log since ``followed.log_end``; False if the file is not the one
        ``token`` names any more (rotated meanwhile: the caller reopens)."""
        assert token is not None
        try:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_ino != token[0]:
                    return False
                data = f.read()
        except FileNotFoundError:
            return False
        records, end, _ = parse_records(data, followed.log_end, path)
        shard = followed.col._shard
        with shard.lock.write():
            shard.replay(records, False, path)
        followed.log_end, followed.wal = end, token
        return True

    def _reopen(self, name: str) -> None:
        """Load a collection again from its files (tokens first, so a change during the load is seen next time)."""
        directory = self._dir(name)
        manifest, wal = self._tokens(directory)
        self.unavailable.pop(name, None)
        try:
            col = self._open_collection(directory)
        except ShoalError as exc:  # reported by get_collection, as a failed open is
            self._collections.pop(name, None)
            self._followed.pop(name, None)
            self.unavailable[name] = exc
            return
        self._collections[name] = col
        self._followed[name] = _Followed(col, manifest, wal)
