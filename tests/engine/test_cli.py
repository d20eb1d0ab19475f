"""``shoal collections``, ``shoal export`` / ``import`` (JSON lines, Parquet), against a data directory
and a server; ``shoal ask --data`` is read-only and needs an existing directory (issue 19)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import shoal
from shoal.cli import main


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data"
    with shoal.Database(path) as db:
        c = db.create_collection("docs", dim=3, metric="l2", index="hnsw", metadata={"team": "x"}, M=8)
        c.upsert([1, "a", 2 ** 40, -5], np.arange(12, dtype=np.float32).reshape(4, 3),
                 [{"x": 1}, {"n": {"y": [1, 2]}}, {}, {"s": "é"}])
        db.create_collection("other", dim=2)
    return path


@pytest.fixture
def server():
    from shoal.rpc.server import build_server

    srv = build_server(shoal.Database(), port=0)
    yield f"127.0.0.1:{srv.port}"
    srv.stop(0)


def test_collections_list_info_drop(data, capsys):
    assert main(["collections", "list", "--data", str(data)]) == 0
    assert capsys.readouterr().out.split() == ["docs", "other"]
    assert main(["collections", "info", "docs", "--data", str(data)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["count"] == 4 and info["metadata"] == {"team": "x"} and info["index_options"] == {"M": 8}
    assert main(["collections", "drop", "other", "--data", str(data)]) == 0
    assert main(["collections", "info", "other", "--data", str(data)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["collections", "list", "--data", str(data / "missing")]) == 1
    assert not (data / "missing").exists()


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_export_import_round_trip(data, tmp_path, suffix):
    out = tmp_path / f"docs.{suffix}"
    assert main(["export", "docs", "--data", str(data), "-o", str(out)]) == 0
    assert main(["import", str(out), "--data", str(tmp_path / "copy")]) == 0
    with shoal.Database(data, read_only=True) as a, shoal.Database(tmp_path / "copy", read_only=True) as b:
        src, dst = a.get_collection("docs"), b.get_collection("docs")
        got, want = dst.get(), src.get()
        assert got.ids == want.ids == [-5, 1, 2 ** 40, "a"] and got.metadata == want.metadata
        np.testing.assert_array_equal(got.vectors, want.vectors)
        assert dst.describe()["index"] == "hnsw" and dst.describe()["metadata"] == {"team": "x"}
    # into an existing collection of another dim: refused, naming the difference
    with shoal.Database(tmp_path / "clash") as db:
        db.create_collection("docs", dim=5)
    assert main(["import", str(out), "--data", str(tmp_path / "clash")]) == 1


def test_export_filter_and_bad_files(data, tmp_path, capsys):
    out = tmp_path / "some.jsonl"
    assert main(["export", "docs", "--data", str(data), "-o", str(out), "--filter", '{"x": 1}']) == 0
    assert len(out.read_text().splitlines()) == 2  # header + one record
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    assert main(["import", str(bad), "--data", str(tmp_path / "x")]) == 1
    assert "not a Shoal JSON-lines export" in capsys.readouterr().err
    assert main(["export", "docs", "--data", str(data), "-o", str(tmp_path / "x.csv")]) == 1


def test_server_variants(data, tmp_path, server, capsys):
    out = tmp_path / "docs.parquet"
    assert main(["export", "docs", "--data", str(data), "-o", str(out)]) == 0
    assert main(["import", str(out), "--server", server, "--collection", "remote"]) == 0
    assert main(["collections", "list", "--server", server]) == 0
    assert "remote" in capsys.readouterr().out.split()
    assert main(["collections", "info", "remote", "--server", server]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 4
    back = tmp_path / "back.jsonl"
    assert main(["export", "remote", "--server", server, "-o", str(back)]) == 0
    assert len(back.read_text().splitlines()) == 5
    assert main(["collections", "drop", "remote", "--server", server]) == 0


def test_ingest_server_and_ask_read_only(tmp_path, server, capsys):
    doc = tmp_path / "doc.txt"
    doc.write_text("Shoal stores vectors in segments. The optimizer merges them.")
    assert main(["ingest", str(doc), "--server", server, "--embedder", "bloom", "--collection", "rag"]) == 0
    with shoal.Client(server) as client:
        assert client.get_collection("rag").count() >= 1
    # ask --data on a missing directory: an error, and nothing is created
    assert main(["ask", "what merges?", "--data", str(tmp_path / "none"), "--embedder", "bloom"]) == 1
    assert not (tmp_path / "none").exists()
    # ask --data beside a writer (the lock is held): read-only open works
    data = tmp_path / "d"
    assert main(["ingest", str(doc), "--data", str(data), "--embedder", "bloom"]) == 0
    with shoal.Database(data):
        code = main(["ask", "what merges?", "--data", str(data), "--embedder", "bloom", "--min-score", "2"])
    assert code == 0 and "don't know" in capsys.readouterr().out
