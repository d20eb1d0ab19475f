"""The database and served suites end to end on tiny data, with the peers installed and without them."""
from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest

from shoal.bench import report

DB_ARGS = ["--dataset", "glove-50", "--n", "2000", "--queries", "30", "--quick", "-k", "5", "--threads", "1"]


def _readme(tmp_path: Any) -> Any:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{report.README_BEGIN}\nold\n{report.README_END}\n")
    return readme


def _hide(monkeypatch: Any, *modules: str) -> None:
    """Make the suites see ``modules`` as not installed."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in modules else real(name, *a))


def test_db_suite_with_peers_present(tmp_path: Any, monkeypatch: Any) -> None:
    pytest.importorskip("chromadb")
    pytest.importorskip("lancedb")
    from shoal.cli import main

    monkeypatch.chdir(tmp_path)
    readme = _readme(tmp_path)
    assert main(["bench", "--suite", "db", *DB_ARGS, "--out", str(tmp_path / "out"), "--readme"]) == 0
    payload = json.loads((tmp_path / "out" / "results-db.json").read_text())
    rows = {r["engine"]: r for r in payload["rows"]}
    assert set(rows) == {"shoal", "chroma", "lancedb"} and not payload["skipped"]
    for r in rows.values():
        assert r["n"] == 2000 and r["ingest_rows_per_s"] > 0 and r["indexed_s"] >= r["ingest_s"] > 0
        assert r["disk_bytes_per_row"] > 50 * 4  # at least the float32 vectors
        assert r["peak_rss_mb"] > 0 and r["reopen_s"] > 0 and r["batch_qps"] > 0
        assert r["chosen"]["recall"] >= 0.8 and set(r["filtered"]) == {"1pct", "10pct"}
        assert all(p["plan"]["path"] for p in r["points"])
    # 2,000 rows: Shoal's planner scans exactly (cheaper than the graph), and the table says so
    shoal = rows["shoal"]
    assert shoal["chosen"]["plan"]["path"] == "exact" and shoal["chosen"]["recall"] == 1.0
    assert shoal["filtered"]["1pct"]["plan"]["path"] == "exact"
    assert rows["lancedb"]["chosen"]["plan"]["path"] == "index"  # from LanceDB's own query plan
    assert rows["chroma"]["chosen"]["plan"]["path"] == "unreported"
    md = (tmp_path / "out" / "results-db.md").read_text()
    shoal_line = next(line for line in md.splitlines() if line.startswith("| shoal |"))
    assert "(exact" in shoal_line
    assert "| chroma |" in md and "| lancedb |" in md and "Shoal vs" in md
    assert (tmp_path / "out" / "db.png").read_bytes()[:4] == b"\x89PNG"
    for name in ("db.json", "db.md", "db.png"):
        assert (tmp_path / "docs" / "bench" / name).exists()
    text = readme.read_text()
    assert "old" not in text and "| shoal |" in text and "docs/bench/db.png" in text and "docs/bench/db.md" in text


def test_db_suite_with_peers_absent(tmp_path: Any, monkeypatch: Any, capsys: Any) -> None:
    from shoal.cli import main

    _hide(monkeypatch, "chromadb", "lancedb")
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--suite", "db", *DB_ARGS, "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "chroma: skipped, the chromadb package is not installed" in out
    assert "lancedb: skipped, the lancedb package is not installed" in out
    payload = json.loads((tmp_path / "out" / "results-db.json").read_text())
    assert [r["engine"] for r in payload["rows"]] == ["shoal"] and len(payload["skipped"]) == 2
    assert "Skipped: chroma: skipped" in (tmp_path / "out" / "results-db.md").read_text()


def test_served_suite_with_and_without_chroma(tmp_path: Any, monkeypatch: Any) -> None:
    from shoal.cli import main

    monkeypatch.chdir(tmp_path)
    args = ["bench", "--suite", "served", "--dataset", "glove-50", "--n", "1000", "--queries", "20", "--quick",
            "-k", "5", "--clients", "2", "--engines", "shoal,chroma"]
    if importlib.util.find_spec("chromadb") is not None:
        assert main([*args, "--out", str(tmp_path / "with")]) == 0
        payload = json.loads((tmp_path / "with" / "results-served.json").read_text())
        rows = {r["engine"]: r for r in payload["rows"]}
        assert set(rows) == {"shoal", "chroma"}
        for r in rows.values():
            assert r["clients"] == 2 and r["qps"] > 0 and r["p50_ms"] <= r["p99_ms"] and r["recall"] >= 0.8
        assert rows["shoal"]["plan"]["path"] == "exact"  # 1,000 rows: the planner's scan, reported as such
        assert "Shoal vs" in (tmp_path / "with" / "results-served.md").read_text()
    _hide(monkeypatch, "chromadb")
    assert main([*args, "--out", str(tmp_path / "without")]) == 0
    payload = json.loads((tmp_path / "without" / "results-served.json").read_text())
    assert [r["engine"] for r in payload["rows"]] == ["shoal"]
    assert payload["skipped"] == ["chroma: skipped, the chromadb package is not installed (pip install 'shoal[bench-db]')"]
