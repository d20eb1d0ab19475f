"""The generation throughput bench runs end to end (a 2-layer random model, so it is quick) and reports every figure."""
import json

from shoal.bench import llm_bench


def test_llm_bench_random_weights(tmp_path, capsys):
    out = tmp_path / "llm.json"
    assert llm_bench.main(["--random", "--layers", "2", "--prompt", "8", "--tokens", "4", "--concurrent", "3",
                           "--backends", "numpy,cupy", "--numerics", "float32,llama.cpp", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["weights"] == "random"
    rows = {(r["backend"], r["numerics"]): r for r in report["results"]}
    assert not any(n == "llama.cpp" for _, n in rows)  # float weights: skipped, with a line
    row = rows["numpy", "float32"]
    assert row["concurrent"] == 3
    assert row["prefill_tok_s"] > 0 and row["decode_tok_s"] > 0 and row["concurrent_generated_tok_s"] > 0
    assert 1 <= row["max_batch"] <= 3
    assert "skipped" in capsys.readouterr().out


def test_llm_bench_llama_cpp_peer_absent(monkeypatch, capsys):
    """Without llama-cpp-python the peer comparison says so and exits cleanly."""
    import sys

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import fails as if not installed
    assert llm_bench.main(["--llama-cpp", "--threads", "1"]) == 0
    assert "llama-cpp-python is not installed" in capsys.readouterr().out
