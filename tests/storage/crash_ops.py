"""The deterministic operation sequence shared by the crash child and the checking parent."""
from __future__ import annotations

from typing import Any

import numpy as np

COLLECTION = "crash"
DIM = 8
BATCH = 16


def vector(ext: int, op: int) -> np.ndarray:
    return np.sin(np.arange(DIM, dtype=np.float64) * (ext + 1) * 0.37 + op).astype(np.float32)


def op_plan(op: int) -> tuple[str, list[int]]:
    """Every 4th op deletes half of an earlier batch; the others upsert a batch that overlaps the previous one."""
    if op % 4 == 3:
        base = (op - 2) * BATCH // 2
        return "delete", list(range(base, base + BATCH // 2))
    base = op * BATCH // 2
    return "upsert", list(range(base, base + BATCH))


def apply_op(col: Any, op: int) -> None:
    kind, ids = op_plan(op)
    if kind == "delete":
        present = [i for i in ids if i in col._shard.tracker]
        col.delete(ids=present) if present else col.delete(filter={"op": -1})
    else:
        col.upsert(ids=ids, vectors=np.stack([vector(i, op) for i in ids]), metadata=[{"op": op} for _ in ids])


def expected_state(n_ops: int) -> dict[int, int]:
    """id -> op that last wrote it, after ops ``0..n_ops-1``."""
    state: dict[int, int] = {}
    for op in range(n_ops):
        kind, ids = op_plan(op)
        for i in ids:
            if kind == "delete":
                state.pop(i, None)
            else:
                state[i] = op
    return state
