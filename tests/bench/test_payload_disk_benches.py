"""The payload-index and vectors-on-disk benchmarks run end to end on tiny data (their numbers live
in the closing notes; here only that they run and check what they claim)."""
from __future__ import annotations

import json

import numpy as np

from shoal.bench import disk_vectors_bench, payload_index_bench


def test_payload_index_bench_runs(capsys):
    payload_index_bench.main(["--n", "3000", "--dim", "8", "--queries", "12", "--repeats", "1", "--crossover"])
    out = json.loads(capsys.readouterr().out)
    assert set(out["families"]) == set(payload_index_bench.families(1))
    assert all(len(f["plain_qps"]) == 1 and f["indexed_qps"][0] > 0 for f in out["families"].values())
    assert {row["filter"] for row in out["crossover"]} == {"range", "keyword $in"}


def test_disk_vectors_bench_phases(tmp_path):
    path = str(tmp_path / "db")
    disk_vectors_bench.ingest(path, 1500, 8, "HNSW8", 10, 5)
    for on_disk in (False, True):
        disk_vectors_bench.set_layout(path, on_disk)
        run = disk_vectors_bench.search(path, 1500, 8, 10, 5, 32)
        assert run["vectors_on_disk"] is on_disk and run["recall"] > 0.8


def test_list_payload_bench_phases(tmp_path):
    """Build and reopen on tiny data: every family measured, lists stored as list columns."""
    from shoal.bench import list_payload_bench

    path = str(tmp_path / "db")
    built = list_payload_bench.build(path, 600, 4, indexed=True, batch=200)
    assert built["rows_file_bytes_per_row"] > 0
    run = list_payload_bench.reopen(path, 4)
    assert run["n"] == 600 and set(run["count_ms"]) == set(list_payload_bench._families(np.random.default_rng(7)))
    assert all(v > 0 for v in run["search_ms"].values())
