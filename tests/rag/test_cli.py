"""`shoal ingest` / `shoal ask` on a durable database (bloom embedder; a stand-in generator:
the real model runs end to end in test_service.py and test_pipeline_model.py)."""
import shoal
import shoal.rag.generation
from shoal.cli import main
from shoal.rag.generation import TokenEvent


class FakeGenerator:
    loads = 0

    def __init__(self, path=None, numerics="float32"):
        FakeGenerator.loads += 1
        FakeGenerator.numerics = numerics

    def stream(self, messages, params=None):
        assert params.max_new_tokens == 2
        yield from (TokenEvent(0, "It runs [1]"), TokenEvent(0, "."))

    def close(self):
        pass


def test_ingest_ask_delete_roundtrip(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shoal.rag.generation, "load_generator", FakeGenerator)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "loops.md").write_text("# Loops\n\nThe for statement iterates over the items of a sequence. "
                                   "The else clause runs when the loop was not ended by break.\n")
    (docs / "contact.txt").write_text("Questions about loops go to help@example.org or +1 555 123 4567.")
    data = str(tmp_path / "db")
    assert main(["ingest", str(docs), "--data", data, "--embedder", "bloom", "--meta", "category=docs",
                 "--meta", "year=2024", "--scrub-pii"]) == 0
    out = capsys.readouterr().out
    assert "ingested 2 documents as 2 chunks" in out and "1 e-mails and 1 phone numbers" in out
    with shoal.Database(data) as db:
        col = db.get_collection("rag")
        loops = col.get([f"{docs / 'loops.md'}#0"]).metadata[0]
        assert loops["title"] == "Loops" and loops["category"] == "docs" and loops["year"] == 2024
        assert col.get([f"{docs / 'contact.txt'}#0"]).metadata[0]["text"].endswith("go to [EMAIL] or [PHONE].")

    assert main(["ask", "What does the else clause of a for loop do?", "--data", data, "--embedder", "bloom",
                 "--filter", '{"year": {"$gte": 2024}}', "--max-new-tokens", "2", "--stream", "-k", "1",
                 "--numerics", "llama.cpp"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("It runs [1].\n") and FakeGenerator.loads == 1 and FakeGenerator.numerics == "llama.cpp"
    assert f"[1] {docs / 'loops.md'} 'Loops' chunk 0" in out and "embed_ms" in out

    assert main(["ask", "What does the else clause of a for loop do?", "--data", data, "--embedder", "bloom",
                 "--filter", '{"year": 1999}']) == 0
    assert "I don't know" in capsys.readouterr().out
    assert FakeGenerator.loads == 1  # no sources: the model is not even loaded

    assert main(["ingest", "--delete", str(docs / "loops.md"), "--data", data, "--embedder", "bloom"]) == 0
    assert "deleted 1 chunks" in capsys.readouterr().out
    with shoal.Database(data) as db:
        assert db.get_collection("rag").count() == 1


def test_errors_are_reported(tmp_path, capsys):
    assert main(["ask", "question?"]) == 1
    assert "--data DIR" in capsys.readouterr().err
    assert main(["ingest", str(tmp_path / "missing.md"), "--data", str(tmp_path / "db"), "--embedder", "bloom"]) == 1
    assert "neither a file nor a directory" in capsys.readouterr().err
