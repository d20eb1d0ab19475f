"""Child process of the payload-index crash test: declare an index on an existing durable
collection, print DONE when the call returned, then wait to be killed.

argv: path, field, kind, commit delay in seconds (the manifest commit waits that long after the
side files are written, so the parent can kill the child between the two)."""
from __future__ import annotations

import sys
import time

import shoal
from shoal.engine.stores import DiskStore

path, field, kind, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
commit = DiskStore.commit_config


def slow_commit(self, segments, changes):
    print("WRITTEN", flush=True)
    time.sleep(delay)
    commit(self, segments, changes)


DiskStore.commit_config = slow_commit
db = shoal.Database(path)
col = db.get_collection("c")
print("READY", flush=True)
col.create_payload_index(field, kind)
print("DONE", flush=True)
time.sleep(60)
