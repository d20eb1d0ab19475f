"""Every benchmark row says which path served it, and an exact scan never appears under an index's name."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from shoal.bench import datasets, plans, report
from shoal.bench.runners import BruteSubsetRunner, ShoalRunner
from shoal.bench.suite import FORCE_INDEX, BenchConfig, FilteredShoal, run_benchmark, run_filtered

CFG = BenchConfig(k=5, threads=1, n_single=3, quick=True, cache_dir="", progress=False, batch_runs=1)


@pytest.fixture(scope="module")
def tiny() -> datasets.Dataset:
    return datasets.clustered(n=1500, dim=8, n_test=20, n_clusters=6, seed=5)


def seg(path: str, fallback: int = 0) -> dict[str, Any]:
    return {"path": path, "fallback_queries": fallback}


def test_summarise_names_the_path_that_served() -> None:
    assert plans.summarise([seg("index"), seg("skip")], 4)["path"] == "index"
    assert plans.summarise([seg("exact"), seg("exact")], 4)["path"] == "exact"
    assert plans.summarise([seg("index"), seg("exact")], 4)["path"] == "mixed"
    assert plans.summarise([seg("filtered-index"), seg("index")], 4)["path"] == "filtered-index"
    assert plans.summarise([seg("skip")], 4)["path"] == "skip"
    # the only index answered every query by its exact fallback: that is an exact scan
    assert plans.summarise([seg("index", fallback=4)], 4)["path"] == "exact"
    assert plans.summarise([seg("index", fallback=1)], 4)["path"] == "index"
    assert plans.describe(plans.summarise([seg("index", fallback=1)], 4)) == "index (1/4 fell back)"
    assert plans.describe(plans.summarise([seg("exact"), seg("index")], 4)) == "exact 1/index 1"


def test_rows_without_a_plan_are_refused() -> None:
    with pytest.raises(KeyError, match="carries no plan"):
        plans.index_comparable({"algorithm": "shoal:HNSW16"})


class TwoPointHNSW(ShoalRunner):
    """A graph setting, and one past GRAPH_MAX_EF, where the index answers every query exactly."""

    def sweep(self, quick: bool) -> list[dict[str, Any]]:
        return [{"ef_search": 4}, {"ef_search": 4096}]


def test_index_row_served_exactly_is_never_reported_as_that_index(tiny: datasets.Dataset, tmp_path: Any) -> None:
    records, _ = run_benchmark(tiny, [TwoPointHNSW("HNSW8"), ShoalRunner("Flat")], CFG)
    assert all("plan" in r for r in records)
    by = {(r["algorithm"], r["params"].get("ef_search")): r for r in records}
    wide = by[("shoal:HNSW8", 4096)]
    assert wide["plan"]["path"] == "exact" and wide["plan"]["fallback_queries"] == tiny.test.shape[0]
    assert wide["recall"] == 1.0 and not plans.index_comparable(wide)
    narrow = by[("shoal:HNSW8", 4)]
    assert narrow["plan"]["path"] == "index" and plans.index_comparable(narrow)
    flat = by[("shoal:Flat", None)]
    assert flat["plan"]["path"] == "exact" and plans.index_comparable(flat)  # exact by nature: Flat is its name
    # the table at a target only the exact fallback reaches shows the graph's best own setting, flagged below
    table = report.markdown_table(records, 1.0 if narrow["recall"] < 1.0 else 1.01)
    hnsw_line = next(line for line in table.splitlines() if line.startswith("| shoal:HNSW8 |"))
    assert "ef_search=4 " in hnsw_line and "4096" not in hnsw_line
    assert "Left out (an exact scan served them, not the index): shoal:HNSW8 ef_search=4096" in table
    report.plot(records, str(tmp_path / "p.png"))  # the plot draws only comparable rows (and does not fail)
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_filtered_rows_say_which_path_served_each_selectivity(tiny: datasets.Dataset) -> None:
    specs = [FilteredShoal.of("HNSW8"), FilteredShoal("shoal:HNSW8 forced-index", "HNSW8", FORCE_INDEX)]
    records, skipped = run_filtered(tiny, specs, [BruteSubsetRunner("brute-subset")], CFG, selectivities=(0.05, 1.0))
    assert not skipped
    by = {(r["algorithm"], r["selectivity"]): r for r in records}
    # 1,500 rows: the planner scans the matching rows exactly (at most exact_max_rows match, or the walk costs more)
    assert by[("shoal:HNSW8", 0.05)]["plan"]["path"] == "exact"
    forced = by[("shoal:HNSW8 forced-index", 0.05)]["plan"]
    assert forced["path"] == "filtered-index", forced
    assert by[("shoal:HNSW8 forced-index", 1.0)]["plan"]["path"] in plans.INDEX_PATHS
    assert by[("numpy:brute-subset", 0.05)]["plan"]["path"] == "exact"
    assert all(r["recall"] == 1.0 for r in records if r["plan"]["path"] == "exact")
    table = report.filtered_table(records)
    line = next(line for line in table.splitlines() if line.startswith("| 5% |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2].endswith("(exact)") and "(filtered-index" in cells[3]
    assert np.isfinite([r["qps_batch"] for r in records]).all()
