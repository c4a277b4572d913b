"""A live catalog (issue 10): a running `meshql serve` picks up published products, policy and
user changes without a restart, keeps serving through a broken change, and `catalog diff` /
`product publish` tell a domain who a contract change would break.

One server per module, on a private copy of the demo mesh, with a short refresh interval. Tests
change catalog files and always put them back; they wait for a change by polling
`meshql.catalog_status` (bounded), never by sleeping a fixed time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import Server, connect, running_server

# How often the test server looks for catalog changes.
REFRESH = "200ms"
# How long a change may take to come into force (generous: debug build on a busy 2-core box).
RELOAD_TIMEOUT_S = 60
PRINCIPALS = ["admin", "sales_analyst", "eu_analyst", "shipping_ds", "guest"]


@pytest.fixture(scope="module")
def mesh(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the demo mesh (these tests edit it)."""
    target = tmp_path_factory.mktemp("live") / "mesh"
    shutil.copytree(demo_dir, target, ignore=shutil.ignore_patterns("audit"))
    return target


@pytest.fixture(scope="module")
def live(meshql_bin: Path, mesh: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = mesh / "meshql.toml"
    args = ["serve", "--config", str(config), "--bind", "127.0.0.1:0"]
    env = {"MESHQL__CATALOG__REFRESH_INTERVAL": REFRESH}
    with running_server(meshql_bin, args, config, tmp_path_factory.mktemp("live-server"), env=env) as srv:
        yield srv


@pytest.fixture
def conns(live: Server) -> Iterator[Callable[[str], object]]:
    opened = []

    def _connect(user: str):
        c = connect(live, user)
        opened.append(c)
        return c

    yield _connect
    for c in opened:
        try:
            c.close()
        except Exception:
            pass


def rows(conn, sql: str, params=None) -> List[tuple]:
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        return [tuple(r) for r in cur.fetchall()]
    finally:
        cur.close()


def status(conn) -> dict:
    """The caller's view of `meshql.catalog_status`: the in-force row and the rejected rows."""
    out = {"in_force": None, "rejected": []}
    for kind, generation, files, products, file, field, problem in rows(
        conn,
        "SELECT kind, generation, files, products, file, field, problem "
        "FROM meshql.catalog_status ORDER BY kind, file, field",
    ):
        if kind == "in_force":
            out["in_force"] = {"generation": generation, "files": files, "products": products}
        else:
            out["rejected"].append({"file": file, "field": field, "problem": problem})
    return out


def generation(conn) -> int:
    return status(conn)["in_force"]["generation"]


def wait_until(what: str, predicate: Callable[[], object], timeout: float = RELOAD_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def wait_for_generation_after(conn, before: int) -> int:
    return wait_until(
        f"a catalog generation after {before}", lambda: (g := generation(conn)) > before and g
    )


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Edit:
    """Changes a file for the duration of a `with` block, and puts the original back."""

    def __init__(self, path: Path, change: Callable[[str], str]):
        self.path, self.change = path, change
        self.original = path.read_text()

    def __enter__(self):
        changed = self.change(self.original)
        assert changed != self.original, f"the edit of {self.path} changes nothing"
        write_atomically(self.path, changed)
        return self

    def __exit__(self, *exc):
        write_atomically(self.path, self.original)


def meshql(meshql_bin: Path, *args: str, cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(meshql_bin), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def table_names(conn, schema: str) -> List[str]:
    objects = conn.adbc_get_objects(depth="tables", db_schema_filter=schema).read_all().to_pylist()
    return sorted(
        t["table_name"]
        for c in objects
        for s in (c["catalog_db_schemas"] or [])
        if s["db_schema_name"] == schema
        for t in (s["db_schema_tables"] or [])
    )


WAREHOUSES_MANIFEST = """\
name = "warehouses"
domain = "inventory"
version = "1.0.0"
description = "Warehouses and their capacity."
owner = "supply-chain@acme.example"
format = "parquet"
location = "warehouses"

[[schema]]
name = "warehouse"
type = "string"
primary_key = true
description = "Warehouse code."

[[schema]]
name = "capacity"
type = "bigint"
nullable = false
description = "Pallet places."
"""


def test_published_product_is_listed_and_queryable_on_an_open_connection(live, mesh, meshql_bin, conns):
    admin = conns("admin")
    before = generation(admin)
    assert "warehouses" not in table_names(admin, "inventory")
    data = mesh / "buckets" / "inventory" / "warehouses"
    data.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "warehouse": pa.array(["BER", "LYS", "MAD"]),
                "capacity": pa.array([1200, 800, 450], pa.int64()),
            }
        ),
        data / "part-0.parquet",
    )
    manifest = mesh / "warehouses.toml"
    manifest.write_text(WAREHOUSES_MANIFEST)
    installed = mesh / "catalog" / "inventory" / "products" / "warehouses.toml"
    try:
        result = meshql(meshql_bin, "product", "publish", "--config", str(mesh / "meshql.toml"), str(manifest))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "published inventory.warehouses 1.0.0" in result.stdout
        assert installed.read_text() == WAREHOUSES_MANIFEST
        published = wait_for_generation_after(admin, before)
        # Same connection: GetTables lists it and a query reads it.
        assert "warehouses" in table_names(admin, "inventory")
        assert rows(admin, "SELECT warehouse, capacity FROM inventory.warehouses ORDER BY warehouse") == [
            ("BER", 1200),
            ("LYS", 800),
            ("MAD", 450),
        ]
        # Nobody else was granted the inventory domain: still invisible to them.
        for user in ["sales_analyst", "eu_analyst", "shipping_ds", "guest"]:
            assert "warehouses" not in table_names(conns(user), "inventory"), user
    finally:
        installed.unlink(missing_ok=True)
        shutil.rmtree(data, ignore_errors=True)
    wait_for_generation_after(admin, published)
    assert "warehouses" not in table_names(admin, "inventory")


def test_a_revoked_grant_is_revoked_on_the_next_query_of_an_open_connection(live, mesh, conns):
    admin, sales = conns("admin"), conns("sales_analyst")
    count = rows(sales, "SELECT count(*) FROM customers.customers")[0][0]
    assert count > 0
    # A prepared statement, kept open across the reloads (re-planned on each execution).
    prepared = sales.cursor()
    by_region = "SELECT count(*) FROM customers.customers WHERE region = ?"
    prepared.execute(by_region, ("EU",))
    eu = prepared.fetchall()[0][0]
    assert 0 < eu < count
    policies = mesh / "catalog" / "customers" / "policies.toml"
    before = generation(admin)
    grant = '[[grants]]\nto = ["group:sales"]\nproducts = ["customers"]\n'
    with Edit(policies, lambda t: t.replace(grant, "")):
        before = wait_for_generation_after(admin, before)
        with pytest.raises(Exception, match=r"(?i)customers.*not found|not found.*customers"):
            rows(sales, "SELECT count(*) FROM customers.customers")
        assert "customers" not in table_names(sales, "customers")
        with pytest.raises(Exception, match=r"(?i)not found"):
            prepared.execute(by_region, ("EU",))
            prepared.fetchall()
        # Other principals are untouched.
        assert rows(conns("eu_analyst"), "SELECT count(*) FROM customers.customers")[0][0] > 0
    wait_for_generation_after(admin, before)
    assert rows(sales, "SELECT count(*) FROM customers.customers")[0][0] == count
    prepared.execute(by_region, ("EU",))
    assert prepared.fetchall()[0][0] == eu
    prepared.close()


def test_a_broken_manifest_is_rejected_as_a_whole_and_reported_by_file_and_field(live, mesh, conns):
    admin = conns("admin")
    manifest = mesh / "catalog" / "customers" / "products" / "customers.toml"
    in_force = status(admin)
    assert in_force["rejected"] == []
    before = in_force["in_force"]["generation"]
    tier = '[[schema]]\nname = "tier"\ntype = "string"'
    with Edit(manifest, lambda t: t.replace(tier, tier.replace('"string"', '"bogus_type"'))):
        rejected = wait_until("the rejection", lambda: status(admin)["rejected"])
        assert len(rejected) == 1, rejected
        (p,) = rejected
        assert p["file"] == "catalog/customers/products/customers.toml", p
        assert re.fullmatch(r"schema\[\d+\]\.type", p["field"]), p
        assert "bogus_type" in p["problem"], p
        # A warn-level log line names the problem.
        logged = wait_until(
            "the warn log line",
            lambda: [l for l in live.stderr().splitlines() if "catalog change rejected" in l],
        )
        assert "WARN" in logged[-1] and "bogus_type" in logged[-1], logged[-1]
        # The previous catalog keeps serving.
        assert generation(admin) == before
        assert rows(admin, "SELECT count(*) FROM customers.customers")[0][0] > 0
        assert "tier" in [r[0] for r in rows(admin, "SELECT name FROM meshql.columns WHERE product = 'customers'")]
        # Access: who sees what of the rejection.
        for user in PRINCIPALS:
            seen = status(conns(user))
            assert seen["in_force"]["generation"] == before, user
            text = json.dumps(seen["rejected"])
            if user in ("admin", "sales_analyst", "eu_analyst"):
                # They can see the customers domain: the problem is theirs to see.
                assert seen["rejected"] == rejected, user
            else:
                # Counted, but no file, field or message of a domain they cannot see.
                assert seen["rejected"] == [
                    {"file": None, "field": None, "problem": "1 problem(s) in files you cannot see"}
                ], user
                assert "customers" not in text and "bogus" not in text, user
    after = wait_for_generation_after(admin, before)
    assert status(admin) == {
        "in_force": {**status(admin)["in_force"], "generation": after},
        "rejected": [],
    }


def test_changed_groups_apply_to_open_sessions_and_removed_users_are_logged_out(live, mesh, conns):
    admin, sales = conns("admin"), conns("sales_analyst")
    assert rows(sales, "SELECT count(*) FROM customers.customers")[0][0] > 0
    config = mesh / "meshql.toml"
    before = generation(admin)
    groups = 'groups = ["sales", "analysts"]'
    with Edit(config, lambda t: t.replace(groups, 'groups = ["analysts"]')):
        before = wait_for_generation_after(admin, before)
        with pytest.raises(Exception, match=r"(?i)not found"):
            rows(sales, "SELECT count(*) FROM customers.customers")
    before = wait_for_generation_after(admin, before)
    assert rows(sales, "SELECT count(*) FROM customers.customers")[0][0] > 0
    guest = conns("guest")
    rows(guest, "SELECT 1")
    guest_block = re.compile(r'\[\[users\]\]\nname = "guest"\n(?:[^\[].*\n|\n)*?(?=\[\[|\Z)')
    with Edit(config, lambda t: guest_block.sub("", t, count=1)):
        before = wait_for_generation_after(admin, before)
        with pytest.raises(Exception, match=r"(?i)unauthenticated|authenticate"):
            rows(guest, "SELECT 1")
    wait_for_generation_after(admin, before)
    rows(conns("guest"), "SELECT 1")


def test_catalog_status_and_new_columns_as_every_principal(live, conns):
    for user in PRINCIPALS:
        conn = conns(user)
        s = status(conn)
        assert s["in_force"]["generation"] >= 1, user
        assert s["in_force"]["files"] > 0, user
        visible = rows(conn, "SELECT count(*) FROM meshql.products")[0][0]
        assert s["in_force"]["products"] == visible, user
        assert s["rejected"] == [], user
        # The status is read-only like every system table.
        with pytest.raises(Exception):
            rows(conn, "DELETE FROM meshql.catalog_status")


def test_catalog_diff_lists_the_readers_of_a_dropped_column(live, mesh, meshql_bin, conns, tmp_path):
    # Some queries read `tier`, some do not.
    for user in ["sales_analyst", "eu_analyst"]:
        rows(conns(user), "SELECT tier, count(*) FROM customers.customers GROUP BY tier")
    rows(conns("admin"), "SELECT name FROM customers.customers LIMIT 1")
    published = (mesh / "catalog" / "customers" / "products" / "customers.toml").read_text()
    tier = '[[schema]]\nname = "tier"\ntype = "string"\nnullable = false\ndescription = "Loyalty tier: bronze, silver, gold or platinum."\n\n'
    assert tier in published
    dropped = tmp_path / "customers.toml"
    dropped.write_text(published.replace(tier, ""))
    config = str(mesh / "meshql.toml")
    # The audit writer is asynchronous: wait until the records are in the file.
    audit = mesh / "audit" / "audit.jsonl"
    wait_until(
        "the audit records",
        lambda: audit.exists() and audit.read_text().count("GROUP BY tier") >= 2,
    )
    result = meshql(meshql_bin, "catalog", "diff", "--config", config, str(dropped))
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "column `tier` (string) removed [breaking]" in out
    assert "verdict: breaking, without a major version bump (use 2.0.0 or later)" in out
    assert re.search(r"^  sales_analyst: \d+ quer(y|ies), last ", out, re.M), out
    assert re.search(r"^  eu_analyst: \d+ quer(y|ies), last ", out, re.M), out
    assert "admin:" not in out  # admin never read `tier`
    assert "GROUP BY tier" in out
    as_json = meshql(meshql_bin, "catalog", "diff", "--format", "json", "--config", config, str(dropped))
    assert as_json.returncode == 1
    doc = json.loads(as_json.stdout)
    assert doc["verdict"] == "breaking_without_major_bump" and doc["exit_code"] == 1
    assert {p["user"] for p in doc["affected"]["principals"]} == {"sales_analyst", "eu_analyst"}
    assert doc["affected"]["columns"] == ["tier"]

    # publish refuses it at the same major version, and installs nothing.
    before = (mesh / "catalog" / "customers" / "products" / "customers.toml").read_text()
    refused = meshql(meshql_bin, "product", "publish", "--config", config, str(dropped))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "refused: customers.customers 1.0.0 is breaking, without a major version bump" in refused.stdout
    assert "sales_analyst" in refused.stdout
    assert (mesh / "catalog" / "customers" / "products" / "customers.toml").read_text() == before

    # With a major bump it is accepted (dry run first: nothing installed), then published.
    bumped = tmp_path / "customers-v2.toml"
    bumped.write_text(dropped.read_text().replace('version = "1.0.0"', 'version = "2.0.0"'))
    dry = meshql(meshql_bin, "product", "publish", "--dry-run", "--config", config, str(bumped))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "dry run: customers.customers 2.0.0 would be installed" in dry.stdout
    assert (mesh / "catalog" / "customers" / "products" / "customers.toml").read_text() == before
    admin = conns("admin")
    g = generation(admin)
    installed = mesh / "catalog" / "customers" / "products" / "customers.toml"
    try:
        ok = meshql(meshql_bin, "product", "publish", "--config", config, str(bumped))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        g = wait_for_generation_after(admin, g)
        names = [r[0] for r in rows(admin, "SELECT name FROM meshql.columns WHERE domain = 'customers' AND product = 'customers'")]
        assert "tier" not in names and "region" in names
        assert rows(admin, "SELECT version FROM meshql.products WHERE domain = 'customers' AND name = 'customers'") == [("2.0.0",)]
    finally:
        write_atomically(installed, published)
    wait_for_generation_after(admin, g)


def test_publish_exit_codes_for_ci(live, mesh, meshql_bin, tmp_path):
    config = str(mesh / "meshql.toml")
    published = (mesh / "catalog" / "inventory" / "products" / "stock.toml").read_text()
    # Invalid manifest: 4, every problem by file and field.
    bad = tmp_path / "bad.toml"
    bad.write_text(published.replace('type = "string"', 'type = "strng"', 1))
    r = meshql(meshql_bin, "product", "publish", "--config", config, str(bad))
    assert r.returncode == 4, r.stdout + r.stderr
    assert f"{bad}: schema[0].type" in r.stdout
    # Contract changed without a new version: 3.
    changed = tmp_path / "changed.toml"
    changed.write_text(published.replace('description = "Units on hand per SKU and warehouse."', 'description = "Stock."'))
    r = meshql(meshql_bin, "catalog", "diff", "--config", config, str(changed))
    assert r.returncode == 3, r.stdout + r.stderr
    # Data that does not match the contract: 5 (a column the files do not have).
    extra = tmp_path / "extra.toml"
    extra.write_text(
        published.replace('version = "1.0.0"', 'version = "1.1.0"')
        + '\n[[schema]]\nname = "no_such_column"\ntype = "bigint"\nnullable = false\ndescription = "x"\n'
    )
    r = meshql(meshql_bin, "product", "publish", "--config", config, str(extra))
    assert r.returncode == 5, r.stdout + r.stderr
    assert "no_such_column" in r.stdout
    # Nothing of that was installed.
    assert (mesh / "catalog" / "inventory" / "products" / "stock.toml").read_text() == published


def test_queries_never_fail_while_the_catalog_changes_50_times(live, mesh, conns):
    admin = conns("admin")
    manifest = mesh / "catalog" / "inventory" / "products" / "stock.toml"
    original = manifest.read_text()
    rows_in_stock = rows(admin, "SELECT count(*) FROM inventory.stock")[0][0]
    column_sql = (
        "SELECT name, description FROM meshql.columns "
        "WHERE domain = 'inventory' AND product = 'stock' AND name IN ('sku', 'warehouse') ORDER BY name"
    )
    base = dict(rows(admin, column_sql))

    def variant(i: int) -> str:
        text = original
        for col, desc in base.items():
            text = text.replace(f'description = "{desc}"', f'description = "{desc} (v{i})"', 1)
        return text

    stop = threading.Event()
    errors: List[str] = []
    seen_variants: List[set] = []
    answered = [0] * 4

    def client(k: int) -> None:
        conn = connect(live, "admin")
        versions = set()
        try:
            while not stop.is_set():
                try:
                    got = dict(rows(conn, column_sql))
                    suffixes = {re.search(r"( \(v\d+\))?$", d).group(0) for d in got.values()}
                    # Both descriptions come from the same catalog.
                    if len(suffixes) != 1 or set(got) != set(base):
                        errors.append(f"client {k}: mixed answer {got}")
                    versions |= suffixes
                    n = rows(conn, "SELECT count(*) FROM inventory.stock")[0][0]
                    if n != rows_in_stock:
                        errors.append(f"client {k}: {n} rows instead of {rows_in_stock}")
                    answered[k] += 1
                except Exception as e:  # any failure is a finding
                    errors.append(f"client {k}: {type(e).__name__}: {e}")
        finally:
            seen_variants.append(versions)
            conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        g = generation(admin)
        for i in range(1, 51):
            write_atomically(manifest, variant(i))
            g = wait_for_generation_after(admin, g)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
        write_atomically(manifest, original)
    wait_for_generation_after(admin, g)
    assert not errors, errors[:10]
    assert all(n > 0 for n in answered), answered
    # The clients saw more than one catalog (they really ran during the reloads).
    assert len(set().union(*seen_variants)) > 1, seen_variants


def test_deprecated_product_and_column_stay_queryable_and_are_marked_everywhere(live, mesh, conns):
    from conformance_fixtures import RawFlightSql
    import flightsql.flightsql_pb2 as pb

    admin = conns("admin")
    manifest = mesh / "catalog" / "customers" / "products" / "customers.toml"
    tier = '[[schema]]\nname = "tier"\ntype = "string"\n'
    reason = "use loyalty.members instead"

    def deprecate(text: str) -> str:
        text = text.replace(
            'tags = ["core", "pii"]\n',
            'tags = ["core", "pii"]\ndeprecated = "moving to the loyalty domain"\nsunset = "2031-12-31"\n',
        )
        return text.replace(tier, tier + f'deprecated = "{reason}"\nsunset = "2030-06-30"\n')

    before = generation(admin)
    with Edit(manifest, deprecate):
        before = wait_for_generation_after(admin, before)
        assert status(admin)["rejected"] == []
        for user in PRINCIPALS:
            conn = conns(user)
            cols = rows(
                conn,
                "SELECT name, deprecated, CAST(sunset AS VARCHAR) FROM meshql.columns "
                "WHERE domain = 'customers' AND product = 'customers' AND deprecated IS NOT NULL",
            )
            products = rows(
                conn,
                "SELECT deprecated, CAST(sunset AS VARCHAR) FROM meshql.products "
                "WHERE domain = 'customers' AND name = 'customers'",
            )
            if user in ("admin", "sales_analyst", "eu_analyst"):
                assert cols == [("tier", reason, "2030-06-30")], user
                assert products == [("moving to the loyalty domain", "2031-12-31")], user
                # Still queryable; the audit record names what deprecated thing was read.
                rows(conn, "SELECT tier FROM customers.customers LIMIT 1")
                (audit,) = rows(
                    conn,
                    "SELECT products FROM meshql.audit WHERE sql = 'SELECT tier FROM customers.customers LIMIT 1' "
                    f"AND \"user\" = '{user}' ORDER BY time DESC LIMIT 1",
                )
                (read,) = [p for p in json.loads(audit[0]) if p["product"] == "customers.customers"]
                assert read["deprecated"] == [
                    "product: moving to the loyalty domain (sunset 2031-12-31)",
                    f"column tier: {reason} (sunset 2030-06-30)",
                ], (user, read)
            else:
                # Nothing of a product they cannot see.
                assert cols == [] and products == [], user
        # A query that reads no deprecated column records the product's deprecation only.
        rows(admin, "SELECT name FROM customers.customers LIMIT 1")
        (audit,) = rows(
            admin,
            "SELECT products FROM meshql.audit WHERE sql = 'SELECT name FROM customers.customers LIMIT 1' "
            "ORDER BY time DESC LIMIT 1",
        )
        (read,) = [p for p in json.loads(audit[0]) if p["product"] == "customers.customers"]
        assert read["deprecated"] == ["product: moving to the loyalty domain (sunset 2031-12-31)"]
        # Flight SQL metadata (GetTables with schemas): remarks keep the description and append
        # the deprecation.
        raw = RawFlightSql(live.uri, "sales_analyst")
        try:
            _, tables = raw.fetch(
                pb.CommandGetTables(db_schema_filter_pattern="customers", table_name_filter_pattern="customers", include_schema=True)
            )
        finally:
            raw.close()
        (row,) = tables.to_pylist()
        schema = pa.ipc.read_schema(pa.py_buffer(row["table_schema"]))
        md = {k.decode(): v.decode() for k, v in schema.field("tier").metadata.items()}
        assert md["ARROW:FLIGHT:SQL:REMARKS"] == (
            f"Loyalty tier: bronze, silver, gold or platinum. DEPRECATED: {reason} (sunset 2030-06-30)"
        )
        name_md = {k.decode(): v.decode() for k, v in schema.field("name").metadata.items()}
        assert name_md["ARROW:FLIGHT:SQL:REMARKS"] == "Full name."
        product_md = {k.decode(): v.decode() for k, v in schema.metadata.items()}
        assert product_md["meshql:description"].endswith(
            "DEPRECATED: moving to the loyalty domain (sunset 2031-12-31)"
        )
    wait_for_generation_after(admin, before)
    assert rows(admin, "SELECT count(*) FROM meshql.columns WHERE deprecated IS NOT NULL") == [(0,)]
