"""Real-client tests: the ADBC Flight SQL driver (and raw pyarrow.flight) against `meshql serve`.

The demo data is generated, so nothing here hard-codes data values: expectations about rows are
always computed by another query. Column names, domains and products are the fixed demo contract
(SPEC.md section 7).
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Tuple

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from conftest import run_demo

# The demo mesh's products and their contract columns, in contract order.
PRODUCT_COLUMNS: Dict[Tuple[str, str], List[str]] = {
    ("sales", "orders"): [
        "order_id",
        "customer_id",
        "order_ts",
        "status",
        "total_amount",
        "region",
    ],
    ("sales", "order_items"): ["order_id", "line_no", "sku", "quantity", "unit_price"],
    ("customers", "customers"): [
        "customer_id",
        "name",
        "email",
        "country",
        "region",
        "tier",
        "signup_date",
    ],
    ("shipping", "shipments"): [
        "shipment_id",
        "order_id",
        "carrier",
        "shipped_at",
        "carrier_shipped_on",
        "promised_at",
        "delivered_at",
        "returned",
    ],
    ("shipping", "delivery_performance"): [
        "order_id",
        "carrier",
        "region",
        "shipped_at",
        "promised_at",
        "delivered_at",
        "days_late",
        "on_time",
    ],
    ("inventory", "stock"): ["sku", "warehouse", "on_hand", "updated_at"],
    ("marketing", "leads"): [
        "lead_id",
        "customer_id",
        "acquisition_channel",
        "campaign",
        "created_at",
    ],
}
DOMAINS = sorted({domain for domain, _ in PRODUCT_COLUMNS})

# A three-domain join: every order with its customer and its shipment(s).
CROSS_DOMAIN_FROM = """
    FROM sales.orders o
    JOIN customers.customers c ON o.customer_id = c.customer_id
    JOIN shipping.shipments s ON s.order_id = o.order_id
"""
CROSS_DOMAIN_COLUMNS = [
    "order_id",
    "customer_id",
    "total_amount",
    "name",
    "country",
    "carrier",
    "shipped_at",
    "returned",
]
CROSS_DOMAIN_SQL = f"""
    SELECT o.order_id, o.customer_id, o.total_amount, c.name, c.country,
           s.carrier, s.shipped_at, s.returned
    {CROSS_DOMAIN_FROM}
"""


# --------------------------------------------------------------------------------------------
# helpers


def _walk_fields(fields, path: str = "") -> Iterator[Tuple[str, pa.DataType]]:
    """Yield (dotted path, type) for every field, recursing into nested types."""
    for f in fields:
        name = f"{path}.{f.name}" if path else f.name
        yield name, f.type
        t = f.type
        if pa.types.is_struct(t):
            yield from _walk_fields([t.field(i) for i in range(t.num_fields)], name)
        elif pa.types.is_map(t):
            yield from _walk_fields([t.key_field, t.item_field], name)
        elif hasattr(t, "value_field"):  # list, large_list, fixed_size_list, list views
            yield from _walk_fields([t.value_field], name)


def view_or_dictionary_fields(schema: pa.Schema) -> List[str]:
    """Fields whose types many Flight SQL clients mishandle (see reference/flightsql-clients.md)."""
    bad = []
    for name, t in _walk_fields(schema):
        if (
            pa.types.is_string_view(t)
            or pa.types.is_binary_view(t)
            or pa.types.is_list_view(t)
            or pa.types.is_large_list_view(t)
            or pa.types.is_dictionary(t)
        ):
            bad.append(f"{name}: {t}")
    return bad


def query(conn, sql: str) -> pa.Table:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def error_text(excinfo: pytest.ExceptionInfo) -> str:
    """The full text of a driver error, including any driver-provided detail."""
    err = excinfo.value
    parts = [str(err)]
    for attr in ("details", "vendor_code", "sqlstate"):
        value = getattr(err, attr, None)
        if value:
            parts.append(f"{attr}={value!r}")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------
# queries


def test_cross_domain_join(admin):
    table = query(admin, CROSS_DOMAIN_SQL)

    assert table.num_rows > 0, "the demo orders/customers/shipments join returned no rows"
    assert table.schema.names == CROSS_DOMAIN_COLUMNS
    assert view_or_dictionary_fields(table.schema) == []
    assert pa.types.is_decimal128(table.schema.field("total_amount").type) or pa.types.is_decimal256(
        table.schema.field("total_amount").type
    ), f"total_amount should be a decimal128/256, got {table.schema.field('total_amount').type}"
    assert pa.types.is_boolean(table.schema.field("returned").type)


def test_cross_domain_join_row_count_matches_count_star(admin):
    table = query(admin, CROSS_DOMAIN_SQL)
    counted = query(admin, f"SELECT count(*) AS n {CROSS_DOMAIN_FROM}")

    assert counted.num_rows == 1
    assert counted.column(0)[0].as_py() == table.num_rows


@pytest.mark.parametrize(
    "domain,product", list(PRODUCT_COLUMNS), ids=[f"{d}.{p}" for d, p in PRODUCT_COLUMNS]
)
def test_select_star_exposes_contract_columns(admin, domain, product):
    table = query(admin, f"SELECT * FROM {domain}.{product} LIMIT 20")

    assert table.schema.names == PRODUCT_COLUMNS[(domain, product)]
    assert table.num_rows > 0, f"{domain}.{product} is empty in the demo mesh"
    assert view_or_dictionary_fields(table.schema) == []


def test_fully_qualified_name_with_catalog(admin):
    plain = query(admin, "SELECT count(*) AS n FROM sales.orders")
    qualified = query(admin, "SELECT count(*) AS n FROM mesh.sales.orders")

    assert qualified.column(0)[0].as_py() == plain.column(0)[0].as_py()


def test_string_function_output_is_plain_utf8(admin):
    table = query(admin, "SELECT substr(c.name, 1, 3) AS prefix FROM customers.customers c LIMIT 5")

    assert view_or_dictionary_fields(table.schema) == []
    assert pa.types.is_string(table.schema.field("prefix").type) or pa.types.is_large_string(
        table.schema.field("prefix").type
    )


def test_cursor_reexecutes_same_and_different_sql(admin):
    count_sql = "SELECT count(*) AS n FROM sales.orders"
    with admin.cursor() as cur:
        cur.execute(count_sql)
        first = cur.fetch_arrow_table()
        # Same SQL again: ADBC re-executes the same prepared statement handle.
        cur.execute(count_sql)
        second = cur.fetch_arrow_table()
        # Different SQL: ADBC closes the old handle and prepares a new one.
        cur.execute("SELECT order_id FROM sales.orders ORDER BY order_id LIMIT 3")
        third = cur.fetch_arrow_table()
        # And back to the first statement once more.
        cur.execute(count_sql)
        fourth = cur.fetch_arrow_table()

    assert first.equals(second)
    assert first.equals(fourth)
    assert first.column(0)[0].as_py() > 0
    assert third.schema.names == ["order_id"]
    assert third.num_rows == min(3, first.column(0)[0].as_py())


def test_fetchall_python_rows(admin):
    with admin.cursor() as cur:
        cur.execute("SELECT order_id, status FROM sales.orders ORDER BY order_id LIMIT 5")
        rows = cur.fetchall()
        names = [d[0] for d in cur.description]

    assert names == ["order_id", "status"]
    assert 0 < len(rows) <= 5
    order_ids = [r[0] for r in rows]
    assert order_ids == sorted(order_ids)


# --------------------------------------------------------------------------------------------
# system tables


def test_meshql_products_lists_the_demo_products(admin):
    table = query(admin, "SELECT * FROM meshql.products")
    rows = table.to_pylist()

    # The exact column names of meshql.products are not part of the fixed interface, so match a
    # row to a product when it holds both the domain and the product name (or "domain.product").
    found = set()
    for row in rows:
        values = {v for v in row.values() if isinstance(v, str)}
        for domain, product in PRODUCT_COLUMNS:
            if f"{domain}.{product}" in values or {domain, product} <= values:
                found.add((domain, product))

    assert found == set(PRODUCT_COLUMNS), f"meshql.products rows: {rows}"
    assert len(rows) == len(PRODUCT_COLUMNS), f"meshql.products rows: {rows}"
    assert view_or_dictionary_fields(table.schema) == []


def test_meshql_system_tables_are_queryable(admin):
    for name in ("domains", "products", "columns"):
        table = query(admin, f"SELECT * FROM meshql.{name}")
        assert table.num_rows > 0, f"meshql.{name} is empty"
        assert view_or_dictionary_fields(table.schema) == []


# --------------------------------------------------------------------------------------------
# metadata RPCs


def test_get_objects_lists_catalog_schemas_tables_and_columns(admin):
    objects = admin.adbc_get_objects(depth="all").read_all().to_pylist()
    catalogs = {c["catalog_name"]: c for c in objects}

    assert "mesh" in catalogs, f"catalogs: {sorted(map(str, catalogs))}"
    schemas = {s["db_schema_name"]: s for s in catalogs["mesh"]["catalog_db_schemas"] or []}
    for domain in DOMAINS:
        assert domain in schemas, f"db_schemas of mesh: {sorted(schemas)}"

    for domain in DOMAINS:
        tables = {t["table_name"]: t for t in schemas[domain]["db_schema_tables"] or []}
        expected = {p for d, p in PRODUCT_COLUMNS if d == domain}
        assert set(tables) == expected, f"tables of mesh.{domain}"

    orders = {t["table_name"]: t for t in schemas["sales"]["db_schema_tables"]}["orders"]
    columns = sorted(orders["table_columns"] or [], key=lambda c: c["ordinal_position"] or 0)
    assert [c["column_name"] for c in columns] == PRODUCT_COLUMNS[("sales", "orders")]


def test_get_table_schema(admin):
    schema = admin.adbc_get_table_schema("orders", db_schema_filter="sales")

    assert schema.names == PRODUCT_COLUMNS[("sales", "orders")]
    assert view_or_dictionary_fields(schema) == []


def test_get_table_schema_matches_query_schema(admin):
    schema = admin.adbc_get_table_schema("shipments", db_schema_filter="shipping")
    table = query(admin, "SELECT * FROM shipping.shipments LIMIT 1")

    assert [(f.name, f.type) for f in schema] == [(f.name, f.type) for f in table.schema]


# --------------------------------------------------------------------------------------------
# errors


def test_wrong_password_is_unauthenticated(connect_as):
    with pytest.raises(Exception) as excinfo:
        conn = connect_as("admin", "not-the-password")
        # In case the driver authenticates lazily, force a round trip.
        query(conn, "SELECT 1")

    assert "unauthenticated" in error_text(excinfo).lower()


def test_unknown_user_is_unauthenticated(connect_as):
    with pytest.raises(Exception) as excinfo:
        conn = connect_as("no_such_user", "no_such_user")
        query(conn, "SELECT 1")

    assert "unauthenticated" in error_text(excinfo).lower()


def test_syntax_error_is_clear_and_connection_survives(admin):
    with pytest.raises(Exception) as excinfo:
        query(admin, "SELEC order_id FROM sales.orders")
    text = error_text(excinfo)
    assert "SELEC" in text or "syntax" in text.lower() or "pars" in text.lower(), text

    # The same connection keeps working after the failed statement.
    table = query(admin, "SELECT count(*) AS n FROM sales.orders")
    assert table.column(0)[0].as_py() > 0


def test_syntax_error_then_good_query_on_same_cursor(admin):
    with admin.cursor() as cur:
        with pytest.raises(Exception):
            cur.execute("SELECT FROM WHERE")
        cur.execute("SELECT 1 AS one")
        assert cur.fetch_arrow_table().to_pylist() == [{"one": 1}]


def test_missing_product_error_names_it(admin):
    with pytest.raises(Exception) as excinfo:
        query(admin, "SELECT * FROM sales.no_such_product")

    assert "no_such_product" in error_text(excinfo)

    # Not fatal for the connection either.
    assert query(admin, "SELECT 1 AS one").to_pylist() == [{"one": 1}]


# --------------------------------------------------------------------------------------------
# raw pyarrow.flight authentication (padded Basic; ADBC above uses unpadded Basic)


def test_padded_basic_auth_returns_bearer_token(server):
    client = flight.FlightClient(server.uri)
    try:
        # "admin:admin" base64-encodes with '=' padding, which pyarrow sends as is.
        header = client.authenticate_basic_token(b"admin", b"admin")
    finally:
        client.close()

    assert isinstance(header, tuple) and len(header) == 2
    key, value = header
    assert key.lower() == b"authorization"
    assert value.startswith(b"Bearer "), value
    assert len(value) > len(b"Bearer ")


def test_padded_basic_auth_wrong_password_is_unauthenticated(server):
    client = flight.FlightClient(server.uri)
    try:
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.authenticate_basic_token(b"admin", b"wrong")
    finally:
        client.close()


# --------------------------------------------------------------------------------------------
# CLI


def test_demo_is_idempotent(meshql_bin, tmp_path):
    directory = tmp_path / "mesh"
    run_demo(meshql_bin, directory)
    config = directory / "meshql.toml"
    before = config.read_bytes()

    run_demo(meshql_bin, directory)

    assert config.read_bytes() == before
