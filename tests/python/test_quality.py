"""Quality rules, product status, freshness SLAs and lineage through the real binary:
`meshql catalog check` / `catalog lint` as a user runs them, and `meshql serve` queried with ADBC
as every demo principal. docs/quality.md's example is run and its output compared.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from conftest import connect, running_server

DOC = Path(__file__).resolve().parents[2] / "docs" / "quality.md"
USERS = ["admin", "sales_analyst", "eu_analyst", "shipping_ds", "guest"]
RULE_LINE = re.compile(r"^  (pass |FAIL |ERROR)  (error|warning)\s+(\S+)\s+(.*)  \((.*)\)$")


def meshql(meshql_bin: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(meshql_bin), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def copy_mesh(demo_dir: Path, target: Path) -> Path:
    shutil.copytree(demo_dir, target, ignore=shutil.ignore_patterns("audit"))
    return target


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def age(directory: Path, seconds: int) -> None:
    then = time.time() - seconds
    for f in directory.iterdir():
        if f.is_file():
            os.utime(f, (then, then))


def query(conn, sql: str) -> pa.Table:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def parse_check(stdout: str) -> Dict[Tuple[str, str], Tuple[str, str, str]]:
    """`catalog check` text output -> {(product, rule): (status, severity, observed)}."""
    out = {}
    product = None
    for line in stdout.splitlines():
        if line and not line.startswith(" ") and "  " in line:
            product = line.split("  ")[0]
            continue
        m = RULE_LINE.match(line)
        if m:
            out[(product, m.group(3))] = (m.group(1).strip(), m.group(2), m.group(4))
    return out


def demo_rules(mesh: Path) -> Dict[Tuple[str, str], dict]:
    rules = {}
    for manifest in sorted((mesh / "catalog").glob("*/products/*.toml")):
        data = tomllib.loads(manifest.read_text())
        for rule in data.get("quality", []):
            rules[(f"{data['domain']}.{data['name']}", rule["name"])] = rule
    return rules


# --------------------------------------------------------------------------------------------
# docs/quality.md's example


def doc_blocks(kind: str) -> List[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(), flags=re.S)


def normalize(text: str) -> List[str]:
    text = re.sub(r"parquet:[0-9a-f]{16}", "parquet:<hash>", text)
    text = re.sub(r"\d+ ms", "<n> ms", text)
    text = re.sub(r"is \S.*? old > max_age", "is <age> old > max_age", text)
    return text.strip().splitlines()


def test_the_documented_example_runs_as_documented(meshql_bin: Path, tmp_path: Path) -> None:
    config_text, manifest_text = doc_blocks("toml")[:2]
    (csv_text,) = doc_blocks("csv")
    expected = doc_blocks("text")[0]
    (tmp_path / "meshql.toml").write_text(config_text)
    products = tmp_path / "catalog" / "shipping" / "products"
    products.mkdir(parents=True)
    (products / "parcels.toml").write_text(manifest_text)
    schema = pa.schema(
        [
            ("parcel_id", pa.int64()),
            ("carrier", pa.string()),
            ("weight_kg", pa.decimal128(6, 2)),
            ("status", pa.string()),
            ("scanned_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    table = pacsv.read_csv(
        pa.BufferReader(csv_text.encode()),
        convert_options=pacsv.ConvertOptions(column_types=schema),
    )
    data = tmp_path / "buckets" / "shipping" / "parcels"
    data.mkdir(parents=True)
    pq.write_table(table.select(schema.names).cast(schema), data / "parcels.parquet")

    r = meshql(meshql_bin, "catalog", "check", "--config", str(tmp_path / "meshql.toml"))
    assert r.returncode == 1, r.stdout + r.stderr
    assert normalize(r.stdout) == normalize(expected), r.stdout


# --------------------------------------------------------------------------------------------
# catalog check / lint on the demo


def test_catalog_check_reports_every_demo_rule(meshql_bin: Path, demo_dir: Path, admin) -> None:
    r = meshql(meshql_bin, "catalog", "check", "--config", str(demo_dir / "meshql.toml"))
    assert r.returncode == 0, r.stdout + r.stderr
    results = parse_check(r.stdout)
    rules = demo_rules(demo_dir)
    assert set(results) == set(rules), r.stdout
    failing = {k: v for k, v in results.items() if v[0] != "pass"}
    assert list(failing) == [("shipping.shipments", "carrier_ship_day_not_after_delivery")], r.stdout
    status, severity, observed = failing[("shipping.shipments", "carrier_ship_day_not_after_delivery")]
    assert (status, severity) == ("FAIL", "warning")
    # The count agrees with the same question asked over Flight SQL.
    predicate = rules[("shipping.shipments", "carrier_ship_day_not_after_delivery")]["predicate"]
    n = query(admin, f"SELECT count(*) AS n FROM shipping.shipments WHERE NOT ({predicate})")
    n = n.column("n")[0].as_py()
    assert n > 0
    assert observed == f"{n} rows violate it"
    assert f"7 product(s), {len(rules)} rule(s): {len(rules) - 1} passed" in r.stdout

    r = meshql(meshql_bin, "catalog", "check", "--config", str(demo_dir / "meshql.toml"),
               "--format", "json", "shipping.shipments")
    assert r.returncode == 0, r.stderr
    import json

    (check,) = json.loads(r.stdout)
    assert check["product"] == "shipping.shipments"
    assert check["data_version"] == "delta:0"
    assert [x["status"] for x in check["rules"]].count("fail") == 1

    r = meshql(meshql_bin, "catalog", "check", "--config", str(demo_dir / "meshql.toml"), "sales.nope")
    assert r.returncode == 1
    assert "unknown product `sales.nope`" in r.stderr


def test_catalog_check_exits_1_when_an_error_rule_fails(meshql_bin: Path, demo_dir: Path, tmp_path: Path) -> None:
    mesh = copy_mesh(demo_dir, tmp_path / "mesh")
    append(
        mesh / "catalog/sales/products/orders.toml",
        '\n[[quality]]\nname = "total_small"\nrule = "range"\ncolumn = "total_amount"\nmax = 100\n',
    )
    r = meshql(meshql_bin, "catalog", "check", "--config", str(mesh / "meshql.toml"), "sales.orders")
    assert r.returncode == 1, r.stdout + r.stderr
    results = parse_check(r.stdout)
    assert {p for p, _ in results} == {"sales.orders"}
    status, severity, observed = results[("sales.orders", "total_small")]
    assert (status, severity) == ("FAIL", "error")
    assert re.fullmatch(r"\d+ rows out of range: max \d+\.\d\d > 100", observed), observed


def test_lint_and_check_report_a_bad_predicate_with_file_and_field(
    meshql_bin: Path, demo_dir: Path, tmp_path: Path
) -> None:
    mesh = copy_mesh(demo_dir, tmp_path / "mesh")
    manifest = mesh / "catalog/sales/products/orders.toml"
    append(manifest, '\n[[quality]]\nname = "bad"\nrule = "sql"\npredicate = "total_amount * 2"\n')
    append(
        manifest,
        '\n[[quality]]\nname = "sneaky"\nrule = "sql"\n'
        'predicate = "order_id IN (SELECT order_id FROM customers.customers)"\n',
    )
    for command in ("lint", "check"):
        r = meshql(meshql_bin, "catalog", command, "--config", str(mesh / "meshql.toml"))
        assert r.returncode == 1, r.stdout
        lines = r.stdout.splitlines()
        assert any(
            line.startswith(f"{manifest}: quality[5].predicate: ") and "not boolean" in line
            for line in lines
        ), r.stdout
        assert any(
            line.startswith(f"{manifest}: quality[6].predicate: ") and "subqueries" in line
            for line in lines
        ), r.stdout


# --------------------------------------------------------------------------------------------
# the server, through ADBC


def test_lineage_as_every_principal(server) -> None:
    expected = {
        "admin": [
            ("sales.orders", "customers.customers"),
            ("shipping.delivery_performance", "sales.orders"),
            ("shipping.delivery_performance", "shipping.shipments"),
        ],
        "sales_analyst": [("sales.orders", "customers.customers")],
        "eu_analyst": [("sales.orders", "customers.customers")],
        "shipping_ds": [
            ("shipping.delivery_performance", "sales.orders"),
            ("shipping.delivery_performance", "shipping.shipments"),
        ],
        "guest": [],
    }
    for user in USERS:
        conn = connect(server, user)
        try:
            t = query(conn, "SELECT product, input FROM meshql.lineage ORDER BY product, input")
            assert list(zip(t.column("product").to_pylist(), t.column("input").to_pylist())) == expected[user], user
            cols = query(conn, "SELECT * FROM meshql.column_lineage").to_pylist()
            seen = {r["product"] for r in cols} | {r["input"] for r in cols}
            allowed = {p for edge in expected[user] for p in edge}
            assert seen <= allowed, (user, cols)
        finally:
            conn.close()


def test_quality_results_per_principal(server) -> None:
    for user in USERS:
        conn = connect(server, user)
        try:
            visible = set(query(conn, "SELECT domain || '.' || name AS p FROM meshql.products").column("p").to_pylist())
            rows = query(
                conn, "SELECT domain || '.' || product AS p, rule, status, observed FROM meshql.quality"
            ).to_pylist()
        finally:
            conn.close()
        assert {r["p"] for r in rows} == visible, user
        for r in rows:
            assert r["status"] in ("pass", "fail"), (user, r)
            withheld = r["observed"].startswith("withheld")
            if user == "eu_analyst":
                assert withheld, r
            elif user == "sales_analyst":
                assert withheld == r["rule"].startswith("email_"), r
            else:
                assert not withheld, (user, r)


@pytest.fixture(scope="module")
def troubled(meshql_bin: Path, demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A server over a demo copy where sales.orders fails an error rule and shipping.shipments
    is stale under `on_breach = "refuse"`."""
    mesh = copy_mesh(demo_dir, tmp_path_factory.mktemp("troubled") / "mesh")
    append(
        mesh / "catalog/sales/products/orders.toml",
        '\n[[quality]]\nname = "total_small"\nrule = "range"\ncolumn = "total_amount"\nmax = 100\n',
    )
    shipments = mesh / "catalog/shipping/products/shipments.toml"
    shipments.write_text(
        shipments.read_text().replace('freshness = "6h"\n', 'freshness = "6h"\non_breach = "refuse"\n')
    )
    age(mesh / "buckets/shipping/shipments/_delta_log", 86_400 + 3_600)
    config = mesh / "meshql.toml"
    args = ["serve", "--config", str(config), "--bind", "127.0.0.1:0"]
    with running_server(meshql_bin, args, config, tmp_path_factory.mktemp("troubled-log")) as srv:
        yield srv


def statuses(conn) -> Dict[str, dict]:
    t = query(
        conn,
        "SELECT domain || '.' || name AS p, status, status_detail, at_risk_upstream FROM meshql.products",
    )
    return {r["p"]: r for r in t.to_pylist()}


def test_a_failing_error_rule_shows_failing_through_adbc(troubled) -> None:
    conn = connect(troubled, "admin")
    try:
        s = statuses(conn)
        assert s["sales.orders"]["status"] == "failing", s["sales.orders"]
        assert "error rule `total_small` failed" in s["sales.orders"]["status_detail"]
        assert s["shipping.shipments"]["status"] == "stale", s["shipping.shipments"]
        assert "past its freshness SLA of 6h" in s["shipping.shipments"]["status_detail"]
        perf = s["shipping.delivery_performance"]
        assert perf["status"] == "at_risk", perf
        assert perf["at_risk_upstream"] == "sales.orders, shipping.shipments", perf
        rule = query(
            conn,
            "SELECT status, severity, observed, data_version FROM meshql.quality "
            "WHERE product = 'orders' AND rule = 'total_small'",
        ).to_pylist()
        assert rule[0]["status"] == "fail" and rule[0]["severity"] == "error", rule
        assert rule[0]["data_version"] == "delta:1"
        assert "out of range" in rule[0]["observed"]
    finally:
        conn.close()
    conn = connect(troubled, "eu_analyst")
    try:
        s = statuses(conn)
        assert sorted(s) == ["customers.customers", "sales.orders"]
        assert s["sales.orders"]["status"] == "failing"
        # EU rows only: nothing computed over other rows is shown.
        assert s["sales.orders"]["status_detail"] == "error rule `total_small` failed"
    finally:
        conn.close()


def test_a_stale_product_under_refuse_refuses_queries_naming_its_sla(troubled) -> None:
    for user in ("admin", "sales_analyst", "shipping_ds"):
        conn = connect(troubled, user)
        try:
            with pytest.raises(Exception) as excinfo:
                query(conn, "SELECT count(*) FROM shipping.shipments")
            text = str(excinfo.value)
            assert "product `shipping.shipments` is stale" in text, text
            assert "past its freshness SLA of 6h" in text and "1d 1h" in text, text
            # Time travel reads old data on purpose.
            n = query(conn, "SELECT count(*) AS n FROM shipping.shipments VERSION AS OF 0")
            assert n.column("n")[0].as_py() > 0
        finally:
            conn.close()
    # Hidden from guest: "not found", exactly like a product that does not exist.
    conn = connect(troubled, "guest")
    try:
        errors = []
        for table in ("shipping.shipments", "shipping.no_such_thing"):
            with pytest.raises(Exception) as excinfo:
                query(conn, f"SELECT count(*) FROM {table}")
            errors.append(str(excinfo.value))
        assert errors[0].replace("shipments", "X") == errors[1].replace("no_such_thing", "X")
        assert "stale" not in errors[0]
    finally:
        conn.close()
