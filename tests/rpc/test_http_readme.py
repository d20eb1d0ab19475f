"""The README's curl examples run as written against ``shoal serve --http-port`` (each answers JSON, no error)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.rpc.conftest import start_server

README = Path(__file__).resolve().parents[2] / "README.md"


def _curl_block() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    block = next(b for b in blocks if "export SHOAL=" in b)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_curl_examples(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    (tmp_path / "key.txt").write_text("readme-key\n")
    srv = start_server(tmp_path, "--data", str(tmp_path / "data"), "--http-port", "0",
                       "--api-key-file", str(tmp_path / "key.txt"))
    try:
        port = int(srv.proc.stdout.readline().rsplit(":", 1)[1])
        export, *calls = _curl_block()
        export = export.replace("http://localhost:8080", f"http://127.0.0.1:{port}")
        assert len(calls) >= 10
        for call in calls:
            out = subprocess.run(["bash", "-c", f"set -euo pipefail; {export}; {call}"], cwd=tmp_path,
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, (call, out.stderr)
            answer = json.loads(out.stdout)
            assert "error" not in answer, (call, answer)
        assert (tmp_path / "data" / "snapshots" / "nightly-1").is_dir()
    finally:
        srv.stop()
