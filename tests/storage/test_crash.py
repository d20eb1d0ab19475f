"""SIGKILL a writing child process at random moments; every acknowledged write must survive and
no unacknowledged batch may be half-visible.

The long campaign: ``.venv/bin/python -m pytest tests/storage/test_crash.py -m slow -q``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import shoal

from .crash_ops import COLLECTION, expected_state, vector

CHILD = Path(__file__).with_name("crash_child.py")


def _run_child(path: Path, first: int, sync: str, rng: np.random.Generator, index: str = "flat") -> int:
    """Start the child, kill it after a random delay; returns the last acknowledged op (first-1 if none)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(CHILD), str(path), str(first), "400", sync, index],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    assert ready.strip() == "READY", proc.stderr.read() if proc.stderr else ready
    time.sleep(float(rng.uniform(0.0, 0.25)))
    proc.send_signal(signal.SIGKILL)
    # Read the rest through the same buffered stream as READY: communicate() reads the raw pipe and
    # would miss ACK lines that readline() already buffered (seen on a loaded machine).
    out, err = proc.stdout.read(), proc.stderr.read() if proc.stderr else ""
    proc.wait()
    acked = [int(line.split()[1]) for line in out.splitlines() if line.startswith("ACK ")]
    assert proc.returncode == -signal.SIGKILL or not err, err
    return acked[-1] if acked else first - 1


def _recovered_ops(path: Path, last_acked: int) -> int:
    """Reopen; the state must equal ops 0..last_acked, or 0..last_acked+1 (the in-flight op, whole)."""
    with shoal.Database(path, backend="numpy") as db:
        col = db.get_collection(COLLECTION)
        got = set(col._shard.tracker)
        for n_ops in (last_acked + 1, last_acked + 2):
            state = expected_state(n_ops)
            if got != set(state):
                continue
            ids = sorted(state)
            if ids:
                res = col.get(ids)
                want = np.stack([vector(i, state[i]) for i in ids])
                if not np.array_equal(res.vectors, want) or [m["op"] for m in res.metadata] != [state[i] for i in ids]:
                    continue
                hits = col.search(want[0], k=len(ids) + 5)
                assert set(hits.ids) == set(ids), "a deleted or superseded row is visible to search"
            assert len(col) == len(ids)
            return n_ops
    raise AssertionError(f"recovered state matches neither {last_acked + 1} nor {last_acked + 2} ops: "
                         f"{len(got)} ids")


def _campaign(tmp_path: Path, trials: int, seed: int, syncs: tuple[str, ...], index: str = "flat") -> None:
    rng = np.random.default_rng(seed)
    path = tmp_path / "db"
    applied = 0
    for trial in range(trials):
        sync = syncs[trial % len(syncs)]
        last = _run_child(path, applied, sync, rng, index)
        assert last >= applied - 1
        applied = _recovered_ops(path, last)


def test_crash_recovery_randomized(tmp_path: Path) -> None:
    """20 kills, continuing on the same directory so recovery-after-recovery is exercised too.

    Seals every 60 rows keep the optimizer merging, so kills land mid-merge as well."""
    _campaign(tmp_path, 20, seed=7, syncs=("always", "batch", "never", "always"))


def test_crash_during_index_builds(tmp_path: Path) -> None:
    """12 kills while the optimizer builds and extends HNSW graphs in the background."""
    _campaign(tmp_path, 12, seed=11, syncs=("always", "batch", "never"), index="HNSW8")


@pytest.mark.slow
def test_crash_recovery_campaign(tmp_path: Path) -> None:
    _campaign(tmp_path, 200, seed=2024, syncs=("always", "batch", "never"))
