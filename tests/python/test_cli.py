"""The `meshql` command line: catalog lint and one-off queries, run as a user would."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest



def meshql(meshql_bin: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(meshql_bin), *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=300
    )


@pytest.fixture
def mesh_copy(demo_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the demo mesh that a test may break."""
    target = tmp_path / "mesh"
    shutil.copytree(demo_dir, target)
    return target


def test_lint_passes_on_the_demo(meshql_bin: Path, demo_dir: Path) -> None:
    r = meshql(meshql_bin, "catalog", "lint", "--config", str(demo_dir / "meshql.toml"), "--data")
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert b"7 product(s)" in r.stdout


def test_lint_reports_all_three_mistakes_with_file_and_field(meshql_bin: Path, mesh_copy: Path) -> None:
    manifest = mesh_copy / "catalog" / "sales" / "products" / "orders.toml"
    text = manifest.read_text()
    text = text.replace('format = "delta"', 'format = "csv"')  # mistake 1
    text = text.replace('version = "1.0.0"', 'version = "latest"')  # mistake 2
    text = text.replace('name = "status"\ntype = "string"', 'name = "status"\ntype = "strng"')  # mistake 3
    manifest.write_text(text)
    r = meshql(meshql_bin, "catalog", "lint", "--config", str(mesh_copy / "meshql.toml"))
    out = r.stdout.decode()
    assert r.returncode == 1, out
    problems = [line for line in out.splitlines() if line.startswith(str(manifest))]
    assert len(problems) == 3, out
    assert any(": format: " in p and "csv" in p for p in problems), out
    assert any(": version: " in p and "latest" in p for p in problems), out
    assert any(": schema[3].type: " in p and "strng" in p for p in problems), out
    assert "3 problem(s) found" in out


def test_lint_data_reports_contract_drift(meshql_bin: Path, mesh_copy: Path) -> None:
    manifest = mesh_copy / "catalog" / "inventory" / "products" / "stock.toml"
    manifest.write_text(manifest.read_text() + '\n[[schema]]\nname = "bin_location"\ntype = "string"\n')
    config = str(mesh_copy / "meshql.toml")
    assert meshql(meshql_bin, "catalog", "lint", "--config", config).returncode == 0
    r = meshql(meshql_bin, "catalog", "lint", "--config", config, "--data")
    out = r.stdout.decode()
    assert r.returncode == 1, out
    assert "inventory.stock" in out and "bin_location" in out, out


def test_bad_config_is_a_clear_error(meshql_bin: Path, tmp_path: Path) -> None:
    config = tmp_path / "meshql.toml"
    config.write_text('[catalog]\ndir = "catalog"\n[[domains]]\nname = "sales"\n')
    r = meshql(meshql_bin, "serve", "--config", str(config), "--bind", "127.0.0.1:0")
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "domains[0].bucket" in err and "missing required field" in err, err
    r = meshql(meshql_bin, "serve", "--config", str(tmp_path / "nope.toml"))
    assert r.returncode == 1
    assert "nope.toml" in r.stderr.decode()


def test_query_formats(meshql_bin: Path, demo_dir: Path) -> None:
    config = str(demo_dir / "meshql.toml")
    sql = "SELECT region, count(*) AS n FROM customers.customers GROUP BY region ORDER BY region"
    table = meshql(meshql_bin, "query", "--config", config, "--user", "admin", sql)
    assert table.returncode == 0, table.stderr.decode()
    assert b"| region |" in table.stdout and b"3 row(s)" in table.stdout

    rows = list(csv.DictReader(io.StringIO(meshql(meshql_bin, "query", "--config", config, "--user", "admin", "--format", "csv", sql).stdout.decode())))
    assert [r["region"] for r in rows] == ["APAC", "EU", "NA"]

    lines = meshql(meshql_bin, "query", "--config", config, "--user", "admin", "--format", "json", sql).stdout.decode().splitlines()
    assert sum(json.loads(line)["n"] for line in lines) == 1000

    arrow = meshql(meshql_bin, "query", "--config", config, "--user", "admin", "--format", "arrow", sql).stdout
    t = pa.ipc.open_stream(arrow).read_all()
    assert t.column_names == ["region", "n"] and t.num_rows == 3


def test_query_errors_exit_1(meshql_bin: Path, demo_dir: Path) -> None:
    config = str(demo_dir / "meshql.toml")
    r = meshql(meshql_bin, "query", "--config", config, "--user", "nobody", "SELECT 1")
    assert r.returncode == 1 and b"unknown user `nobody`" in r.stderr
    r = meshql(meshql_bin, "query", "--config", config, "--user", "admin", "SELECT * FROM sales.nope")
    assert r.returncode == 1 and b"nope" in r.stderr
    r = meshql(meshql_bin, "query", "--config", config, "--user", "admin", "DROP TABLE sales.orders")
    assert r.returncode == 1 and b"read-only" in r.stderr


def test_demo_with_relative_dir_is_idempotent(meshql_bin: Path, tmp_path: Path) -> None:
    first = subprocess.run([str(meshql_bin), "demo"], cwd=tmp_path, capture_output=True, timeout=600)
    assert first.returncode == 0, first.stderr.decode()
    config = tmp_path / "demo-mesh" / "meshql.toml"
    config.write_text(config.read_text().replace("127.0.0.1:50051", "127.0.0.1:6000"))
    again = subprocess.run([str(meshql_bin), "demo"], cwd=tmp_path, capture_output=True, timeout=600)
    assert again.returncode == 0
    assert b"kept" in again.stderr and b"meshql.toml" in again.stderr, again.stderr
    assert "127.0.0.1:6000" in config.read_text()
