"""Every Python snippet in docs/clients.md runs unchanged against a demo server, except for the
port (tests never use fixed ports)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "clients.md"


def snippets():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 3, "docs/clients.md lost its Python snippets"
    return blocks


@pytest.mark.parametrize("index", range(len(snippets())))
def test_doc_snippet_runs(server, index):
    snippet = snippets()[index]
    assert "127.0.0.1:50051" in snippet
    snippet = snippet.replace("127.0.0.1:50051", f"{server.host}:{server.port}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet, f"docs/clients.md snippet {index}", "exec"), {})
    assert out.getvalue().strip(), "the snippet printed nothing"


def test_jdbc_url_and_driver_class_are_documented():
    text = DOC.read_text()
    assert "org.apache.arrow.driver.jdbc.ArrowFlightJdbcDriver" in text
    assert "jdbc:arrow-flight-sql://127.0.0.1:50051?useEncryption=false&user=admin&password=admin" in text
    assert "datafusion+flightsql://admin:admin@127.0.0.1:50051?insecure=true" in text
