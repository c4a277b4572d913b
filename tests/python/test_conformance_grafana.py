"""Grafana's Flight SQL data source: it lists tables with types `["BASE TABLE", "table"]`
and accepts exactly one endpoint per query. See reference/flightsql-clients.md, section 4."""

from __future__ import annotations

import flightsql.flightsql_pb2 as pb
import pytest

from conformance_fixtures import PRODUCTS, RawFlightSql, sql_info_values


@pytest.fixture
def grafana(server):
    client = RawFlightSql(server.uri, "admin")
    yield client
    client.close()


def test_table_list_with_grafana_table_types(grafana):
    _, tables = grafana.fetch(pb.CommandGetTables(table_types=["BASE TABLE", "table"]))
    got = sorted(zip(tables.column("db_schema_name").to_pylist(), tables.column("table_name").to_pylist()))
    assert got == PRODUCTS


def test_columns_and_info(grafana):
    _, tables = grafana.fetch(pb.CommandGetTables(include_schema=True, table_name_filter_pattern="stock"))
    assert tables.num_rows == 1
    _, info = grafana.fetch(pb.CommandGetSqlInfo())
    assert sql_info_values(info)[0][1] == "meshql"


def test_query_answers_with_exactly_one_endpoint(grafana):
    info = grafana.info(pb.CommandStatementQuery(query="SELECT sku, on_hand, updated_at FROM inventory.stock LIMIT 10"))
    assert len(info.endpoints) == 1
    schema, table = grafana.read(info)
    assert table.num_rows == 10
    # Grafana (arrow Go v12) predates view types: plain utf8 and timestamps only.
    assert str(schema.field("sku").type) == "string"
    assert str(schema.field("updated_at").type).startswith("timestamp")
