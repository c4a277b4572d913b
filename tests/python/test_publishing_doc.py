"""docs/publishing.md runs as documented: its shell blocks verbatim (in a folder holding the
demo mesh, with `meshql` on PATH), its Python block against the running demo server (the port
replaced: tests never use fixed ports), and each ```text block's lines appear, in order, in the
output of the commands before it (`...` stands for anything)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import running_server

DOC = Path(__file__).resolve().parents[2] / "docs" / "publishing.md"


def blocks():
    return re.findall(r"```([\w-]+)\n(.*?)```", DOC.read_text(), flags=re.S)


def assert_lines_in_order(expected: str, output: str) -> None:
    lines = output.splitlines()
    at = 0
    for want in expected.strip().splitlines():
        pattern = re.compile(".*?".join(re.escape(part) for part in want.split("...")) + r"\s*")
        while at < len(lines) and not pattern.fullmatch(lines[at]):
            at += 1
        assert at < len(lines), f"expected line not found in order: {want!r}\n--- output ---\n{output}"
        at += 1


def test_the_publishing_guide_runs_verbatim(meshql_bin: Path, demo_dir: Path, tmp_path: Path, tmp_path_factory):
    found = blocks()
    kinds = [k for k, _ in found]
    assert kinds.count("sh") >= 6 and kinds.count("python") == 1 and kinds.count("sh-server") == 1, kinds
    (server_cmd,) = [b for k, b in found if k == "sh-server"]
    assert server_cmd.strip() == "meshql serve --demo"
    # The demo mesh `meshql serve --demo` would write, in the folder the guide runs in.
    shutil.copytree(demo_dir, tmp_path / "demo-mesh", ignore=shutil.ignore_patterns("audit"))
    # `meshql` and this interpreter (with pyarrow) first on PATH.
    path = os.pathsep.join([str(meshql_bin.parent), str(Path(sys.executable).parent), os.environ["PATH"]])
    env = dict(os.environ, PATH=path)
    args = ["serve", "--demo", "--bind", "127.0.0.1:0"]
    with running_server(
        meshql_bin,
        args,
        tmp_path / "demo-mesh" / "meshql.toml",
        tmp_path_factory.mktemp("publishing-doc"),
        cwd=tmp_path,
        env={"MESHQL__CATALOG__REFRESH_INTERVAL": "300ms"},
    ) as srv:
        output = ""
        ran = checked = 0
        for kind, body in found:
            if kind == "sh":
                r = subprocess.run(
                    ["bash", "-e", "-c", body],
                    cwd=tmp_path,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                    stdin=subprocess.DEVNULL,
                )
                assert r.returncode == 0, f"{body}\n--- stdout ---\n{r.stdout}\n--- stderr ---\n{r.stderr}"
                output = r.stdout
                ran += 1
            elif kind == "python":
                assert "127.0.0.1:50051" in body
                code = body.replace("127.0.0.1:50051", f"{srv.host}:{srv.port}")
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    exec(compile(code, "docs/publishing.md python", "exec"), {})
                output = out.getvalue()
                assert "[('BER', 'Berlin', 1200), ('LYS', 'Lyon', 800), ('MAD', 'Madrid', 450)]" in output, output
                assert "('in_force'," in output, output
                ran += 1
            elif kind == "text":
                assert_lines_in_order(body, output)
                checked += 1
        assert ran == kinds.count("sh") + 1
        assert checked == kinds.count("text") >= 4
    # What the guide did is in the catalog: the deprecation (1.1.0) is the published version.
    installed = (tmp_path / "demo-mesh" / "catalog" / "inventory" / "products" / "warehouses.toml").read_text()
    assert 'version = "1.1.0"' in installed and 'deprecated = "use the locations product instead"' in installed
    assert 'name = "city"' in installed
