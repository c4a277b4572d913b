"""flightsql-dbapi 0.2.2 and SQLAlchemy 1.4 (what Superset uses): connect, reflect schemas,
tables and columns, `SELECT 1`, parameterised queries (dense-union parameters, original handle
kept). See reference/flightsql-clients.md, sections 3 and 4."""

from __future__ import annotations

import flightsql
import flightsql.sqlalchemy  # noqa: F401  registers the `datafusion+flightsql` dialect name
import pytest
import sqlalchemy
from flightsql import FlightSQLClient
from sqlalchemy import inspect, text

from conformance_fixtures import PRODUCTS


@pytest.fixture
def dbapi(server):
    client = FlightSQLClient(
        host=server.host, port=server.port, user="admin", password="admin", insecure=True
    )
    conn = flightsql.connect(client)
    yield conn
    conn.close()


@pytest.fixture
def engine(server):
    engine = sqlalchemy.create_engine(
        f"datafusion+flightsql://admin:admin@{server.host}:{server.port}?insecure=true"
    )
    yield engine
    engine.dispose()


def test_execute_without_parameters(dbapi):
    cur = dbapi.cursor()
    cur.execute("SELECT order_id, status FROM sales.orders ORDER BY order_id LIMIT 3")
    rows = cur.fetchall()
    assert [r[0] for r in rows] == [1, 2, 3]
    # Strings arrive as utf8, which flightsql-dbapi maps to TEXT (views would become BLOB).
    assert [d[0] for d in cur.description] == ["order_id", "status"]


def test_execute_with_dense_union_parameters(dbapi):
    cur = dbapi.cursor()
    # flightsql-dbapi sends each value as a dense union and keeps the original handle.
    cur.execute("SELECT order_id, region FROM sales.orders WHERE order_id = ? AND region <> ?", (4, "nowhere"))
    rows = cur.fetchall()
    assert [r[0] for r in rows] == [4]
    cur.executemany("SELECT order_id FROM sales.orders WHERE order_id = ?", [(1,), (2,)])


def test_sqlalchemy_connect_and_select_1(engine):
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1


def test_entry_point_dialect_name(server):
    # `datafusion://` is flightsql-dbapi's entry point: it loads without any import.
    engine = sqlalchemy.create_engine(
        f"datafusion://admin:admin@{server.host}:{server.port}?insecure=true"
    )
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 41 + 1")).scalar() == 42
    engine.dispose()


def test_sqlalchemy_reflection(engine):
    insp = inspect(engine)
    schemas = insp.get_schema_names()
    assert {d for d, _ in PRODUCTS} <= set(schemas)
    assert sorted(insp.get_table_names(schema="sales")) == ["order_items", "orders"]
    columns = insp.get_columns("orders", schema="sales")
    assert [c["name"] for c in columns] == [
        "order_id", "customer_id", "order_ts", "status", "total_amount", "region"
    ]
    types = {c["name"]: type(c["type"]).__name__ for c in columns}
    assert types["status"] == "TEXT", types
    assert types["order_id"] == "BIGINT", types


def test_sqlalchemy_parameterised_query(server, engine):
    # By default the dialect renders values into the SQL text (what Superset sends): fine for
    # expressions whose values are known when compiling.
    orders = sqlalchemy.table("orders", sqlalchemy.column("order_id"), schema="sales")
    with engine.connect() as conn:
        rows = conn.execute(sqlalchemy.select(orders.c.order_id).where(orders.c.order_id == 6)).fetchall()
    assert [r[0] for r in rows] == [6]
    # With flightsql-dbapi's prepared-statement feature, values are bound as parameters
    # (`text()` parameters need it: the literal compiler renders them as NULL).
    prepared = sqlalchemy.create_engine(
        f"datafusion+flightsql://admin:admin@{server.host}:{server.port}"
        "?insecure=true&feature-sqlalchemy-prepared-statements=on"
    )
    with prepared.connect() as conn:
        rows = conn.execute(
            text("SELECT order_id FROM sales.orders WHERE order_id = :id"), {"id": 6}
        ).fetchall()
    prepared.dispose()
    assert [r[0] for r in rows] == [6]
