"""Parity cases CPU (numba) vs GPU (cupy) backends, shared by the stand-in and the real-device tests.

Each case builds the same index on both backends (same data, same seeds) and compares:
exact search must return the same ids (up to ties) and distances; approximate search must
return the same ids as the CPU backend on the same trained index for nearly every query
(float summation order may flip near-ties) and the same recall against brute force.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from shoal.index.flat import FlatIndex
from shoal.index.ivf import IVFIndex
from shoal.index.pq import PQIndex
from shoal.quant.kmeans import KMeans
from tests.conftest import assert_knn_equal, brute_force
from tests.quant.helpers import clustered, recall

METRICS = ("l2", "cosine", "ip")
IVF_CODECS = (("flat", None), ("sq8", None), ("pq", 8))


def data(n: int = 3000, dim: int = 32, nq: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = clustered(n + nq, dim, seed=seed)
    return x[:n], x[n:]


def check_flat(metric: str, n: int = 3000, dim: int = 32, k: int = 10) -> None:
    x, q = data(n, dim)
    ids = np.arange(n, dtype=np.int64) * 3 + 7  # sparse ids
    allowed = np.zeros(ids.max() + 1, bool)
    allowed[ids[::3]] = True
    out = {}
    for name in ("numba", "cupy"):
        idx = FlatIndex(dim, metric, backend=name)
        idx.add(x[: n // 2], ids[: n // 2])
        idx.search(q[:2], k)  # makes the first half resident; the next add must upload only the tail
        idx.add(x[n // 2:], ids[n // 2:])
        idx.remove(ids[5:15])
        out[name] = (idx.search(q, k), idx.search(q, k, allowed=allowed), idx.range_search(q[:5], _radius(metric)))
    for (d, i), (rd, ri) in zip(out["cupy"][:2], out["numba"][:2]):
        assert_knn_equal(d, i, rd, ri, atol=1e-3)
    lims, rd, ri = out["numba"][2]
    glims, gd, gi = out["cupy"][2]
    np.testing.assert_array_equal(glims, lims)
    np.testing.assert_array_equal(np.sort(gi), np.sort(ri))
    np.testing.assert_allclose(np.sort(gd), np.sort(rd), atol=1e-3, rtol=1e-4)


def _radius(metric: str) -> float:
    return {"l2": 40.0, "cosine": 0.2, "ip": -30.0}[metric]


def check_ivf(codec: str, m: int | None, metric: str, tmp_path: Path, n: int = 4000, dim: int = 32,
              k: int = 10) -> None:
    """Trained on the GPU backend, saved, loaded on both: same answers, same recall; then both
    take the same new vectors (in-place list appends) and still agree."""
    x, q = data(n, dim)
    first = n - 500
    trained = IVFIndex(dim, metric, nlist=16, codec=codec, m=m, backend="cupy")
    trained.train(x[:first])
    trained.add(x[:first], np.arange(first))
    trained.save(tmp_path / "ivf.shoal")
    cpu = IVFIndex.load(tmp_path / "ivf.shoal", backend="numba")
    gpu = IVFIndex.load(tmp_path / "ivf.shoal", backend="cupy")
    allowed = np.arange(n) % 2 == 0
    for step in range(2):
        if step == 1:
            gpu.search(q[:3], k)  # lists resident before the append
            for idx in (cpu, gpu):
                idx.add(x[first:], np.arange(first, n))
        rows = first if step == 0 else n
        for params in ({"nprobe": 4, "rescore": False} if codec != "flat" else {"nprobe": 4}, {"nprobe": 16}):
            for kw in ({}, {"allowed": allowed}):
                cd, ci = cpu.search(q, k, params=params, **kw)
                gd, gi = gpu.search(q, k, params=params, **kw)
                same = np.mean([set(a) == set(b) for a, b in zip(ci.tolist(), gi.tolist())])
                assert same >= 0.9, (codec, metric, params, same)
                np.testing.assert_allclose(gd, cd, atol=1e-2, rtol=1e-3)
                ok = np.ones(rows, bool) if not kw else allowed[:rows]
                truth = brute_force(q, x[:rows][ok], k, metric, labels=np.flatnonzero(ok))[1]
                assert abs(recall(gi, truth) - recall(ci, truth)) <= 0.02


def check_pq_flat(metric: str, n: int = 4096, dim: int = 32, k: int = 10, tmp_path: Path | None = None) -> None:
    """PQ codebooks trained on each backend are equally good (reconstruction error, recall); one index
    trained on the GPU, saved and loaded on both, gives the same ADC distances and the same
    rescored (exact) distances of the ids it returns."""
    import tempfile

    from shoal.engine.metrics import prepare, reference_distances

    x, q = data(n, dim)
    stored = prepare(x, metric)  # what the index holds (normalised for cosine)
    out = {}
    for name in ("numba", "cupy"):
        idx = PQIndex(dim, metric, m=8, backend=name)
        idx.train(x)
        idx.add(x, np.arange(n))
        error = float(np.mean((idx.pq.decode(idx.pq.encode(stored)) - stored) ** 2))
        out[name] = (idx.search(q, k, params={"rescore": False}), idx.search(q, k), error, idx)
    truth = brute_force(q, x, k, metric)[1]
    for (gd, gi), (cd, ci) in zip(out["cupy"][:2], out["numba"][:2]):
        assert abs(recall(gi, truth) - recall(ci, truth)) <= 0.03
    assert abs(out["cupy"][2] - out["numba"][2]) <= 0.05 * out["numba"][2], (out["cupy"][2], out["numba"][2])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp_path or tmp) / "pq.shoal"
        trained = out["cupy"][3]
        trained.save(path)
        cpu, gpu = PQIndex.load(path, backend="numba"), PQIndex.load(path, backend="cupy")
    np.testing.assert_array_equal(cpu.pq.centroids, trained.pq.centroids)
    (cd, ci), (gd, gi) = cpu.search(q, k, params={"rescore": False}), gpu.search(q, k, params={"rescore": False})
    same = np.mean([set(a) == set(b) for a, b in zip(ci.tolist(), gi.tolist())])
    assert same >= 0.9, same
    np.testing.assert_allclose(gd, cd, atol=1e-2, rtol=1e-3)  # the same tables, summed on each device
    for d, i in (cpu.search(q, k), gpu.search(q, k)):  # rescored: the exact distance of each id returned
        exact = np.take_along_axis(reference_distances(q, x, metric), i, 1)
        np.testing.assert_allclose(d, exact, atol=1e-3, rtol=1e-4)


def check_kmeans(n: int = 3000, dim: int = 16, k: int = 24) -> None:
    x = clustered(n, dim, seed=3)
    cpu = KMeans(k, niter=8, seed=1, backend="numba").fit(x)
    gpu = KMeans(k, niter=8, seed=1, backend="cupy").fit(x)
    assert abs(gpu.inertia - cpu.inertia) <= 0.02 * cpu.inertia
    lab_c, d_c = cpu.assign(x)
    lab_g, d_g = _with_centroids(k, cpu.centroids).assign(x)
    assert np.mean(lab_c == lab_g) >= 0.999
    np.testing.assert_allclose(d_g, d_c, rtol=1e-3, atol=1e-2)


def _with_centroids(k: int, centroids: np.ndarray) -> KMeans:
    km = KMeans(k, backend="cupy")
    km.centroids = centroids
    return km


def check_collection(tmp_spec: str = "IVF16,SQ8", n: int = 3000, dim: int = 16, k: int = 5) -> None:
    """A collection on each backend, searched through its index (the planner is told to, and explain
    shows it): planner, filters and segment hand-over give the same hits, with a recall floor."""
    from shoal.engine.collection import Collection

    x, q = data(n, dim, nq=10)
    meta = [{"even": i % 2 == 0} for i in range(n)]
    found = {}
    for name in ("numba", "cupy"):
        col = Collection("c", dim, "l2", index=tmp_spec, backend=name, optimizer={"background": False},
                         planner={"exact_max_rows": 0, "index_cost_factor": 0.0})
        col.upsert(list(range(n)), x, meta)
        col.optimize()  # the growing segment is sealed and indexed
        plain = col.search(q, k, params={"nprobe": 4}, explain=True)
        filtered = col.search(q, k, filter={"even": True}, params={"nprobe": 4}, explain=True)
        assert [p["path"] for p in plain[0].plan] == ["index"], plain[0].plan
        assert [p["path"] for p in filtered[0].plan] == ["filtered-index"], filtered[0].plan
        found[name] = [[r.ids for r in plain], [r.ids for r in filtered]]
    plain = np.mean([set(a) == set(b) for a, b in zip(found["numba"][0], found["cupy"][0])])
    filtered = np.mean([set(a) == set(b) for a, b in zip(found["numba"][1], found["cupy"][1])])
    assert plain >= 0.9 and filtered >= 0.9, (plain, filtered)
    assert all(i % 2 == 0 for row in found["cupy"][1] for i in row)
    truth = brute_force(q, x, k, "l2")[1]
    even = np.flatnonzero(np.arange(n) % 2 == 0)
    truth_even = brute_force(q, x[even], k, "l2", labels=even)[1]
    for name in ("numba", "cupy"):
        assert recall(np.array(found[name][0]), truth) >= 0.8, name
        assert recall(np.array(found[name][1]), truth_even) >= 0.8, name
