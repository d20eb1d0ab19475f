"""Child process of the crash tests: applies deterministic operations and acknowledges each.

Usage: ``python crash_child.py DATA_DIR FIRST_OP N_OPS SYNC INDEX``. Prints ``ACK <op>`` (flushed)
after each call returns; the parent SIGKILLs it at a random moment and checks the reopened
database holds every acknowledged operation and no half-applied one.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from crash_ops import COLLECTION, DIM, apply_op  # noqa: E402

import shoal  # noqa: E402


def main() -> None:
    path, first, count, sync, index = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    # 60-row seals keep the background optimizer merging (and building the index) all the time
    db = shoal.Database(path, sync=sync, flush_rows=60, backend="numpy")
    col = db.get_or_create_collection(COLLECTION, DIM, metric="l2", index=index)
    print("READY", flush=True)
    for op in range(first, first + count):
        apply_op(col, op)
        print(f"ACK {op}", flush=True)
    db.close()


if __name__ == "__main__":
    main()
