"""The README's two promises for a newcomer: `meshql serve --demo` serves the demo mesh, and the
README's ADBC snippet prints rows of a cross-domain join. The snippet is taken from README.md
and run unchanged except for the port (tests never use fixed ports)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from conftest import running_server

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_python_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no ```python block"
    return blocks[0]


def test_serve_demo_and_readme_snippet(meshql_bin: Path, tmp_path: Path) -> None:
    # As a newcomer would: a relative demo directory in the current working directory.
    # `--demo` serves the web UI too (127.0.0.1:8080 by default; port 0 in tests).
    args = ["serve", "--demo", "--demo-dir", "demo-mesh", "--bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"]
    config = tmp_path / "demo-mesh" / "meshql.toml"
    with running_server(meshql_bin, args, config, tmp_path, cwd=tmp_path, http=True) as srv:
        assert config.exists()
        assert srv.http_url and srv.http_url.startswith("http://127.0.0.1:")
        snippet = readme_python_snippet()
        assert "grpc://127.0.0.1:50051" in snippet
        snippet = snippet.replace("grpc://127.0.0.1:50051", srv.uri)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(snippet, "README.md", "exec"), {})
        printed = out.getvalue()
        # pyarrow prints the table's schema and its rows.
        assert "region:" in printed and "revenue:" in printed, printed
        assert re.search(r"\[\[\"(EU|NA|APAC)\"", printed), printed
    stderr = srv.stderr()
    assert "DEMO CREDENTIALS" in stderr, stderr
