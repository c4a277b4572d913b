"""The Flight SQL JDBC driver's call sequence (DBeaver, Tableau), replayed with raw
`pyarrow.flight` calls: handshake, GetSqlInfo, prepared statements, DatabaseMetaData calls,
parameters and updates. See reference/flightsql-clients.md, section 1."""

from __future__ import annotations

import flightsql.flightsql_pb2 as pb
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from conformance_fixtures import (
    FOREIGN_KEYS_SCHEMA,
    JAVA_TYPE_UNION_CODE,
    JDBC_SQLINFO_TYPES,
    PRIMARY_KEYS_SCHEMA,
    PRODUCTS,
    TABLE_TYPES_SCHEMA,
    TABLES_SCHEMA,
    TABLES_WITH_SCHEMA_SCHEMA,
    RawFlightSql,
    decode_bytes_field_1,
    sql_info_values,
)


@pytest.fixture
def jdbc(server):
    client = RawFlightSql(server.uri, "admin")
    yield client
    client.close()


def test_handshake_answers_with_a_bearer_header(server):
    client = RawFlightSql(server.uri, "admin")
    # The token works on later calls (checked inside every call below) ...
    _, table = client.fetch(pb.CommandGetCatalogs())
    assert table.column(0).to_pylist() == ["mesh"]
    client.close()
    # ... and a wrong password is UNAUTHENTICATED.
    with pytest.raises(flight.FlightUnauthenticatedError):
        RawFlightSql(server.uri, "admin", "wrong")


def test_get_sql_info_all_ids_with_jdbc_types(jdbc):
    _, table = jdbc.fetch(pb.CommandGetSqlInfo())
    values = sql_info_values(table)
    missing = sorted(set(JDBC_SQLINFO_TYPES) - set(values))
    assert missing == [], f"SqlInfo ids the JDBC driver reads but the server omits: {missing}"
    wrong = {
        i: (values[i][0], t)
        for i, t in JDBC_SQLINFO_TYPES.items()
        if values[i][0] != JAVA_TYPE_UNION_CODE[t]
    }
    assert wrong == {}, f"ids answered with the wrong union branch (got, java type): {wrong}"
    assert values[0][1] == "meshql"
    assert values[3][1] is True  # read-only
    # 517 (SQL_SUPPORTS_CONVERT) is a map of int32 -> list<int32>.
    assert isinstance(values[517][1], list) and values[517][1]


def test_get_sql_info_superset_ids(jdbc):
    # Superset (flightsql-dbapi's dialect) raises KeyError if 3 or 504 is missing.
    _, table = jdbc.fetch(pb.CommandGetSqlInfo(info=[0, 2, 3, 504]))
    values = sql_info_values(table)
    assert sorted(values) == [0, 2, 3, 504]
    assert values[504] == (0, '"')


def test_prepared_query_sequence(jdbc):
    sql = "SELECT order_id, order_ts, status, total_amount FROM sales.orders ORDER BY order_id LIMIT 5"
    prepared = jdbc.prepare(sql)
    dataset_schema = pa.ipc.read_schema(pa.py_buffer(prepared.dataset_schema))
    assert dataset_schema.names == ["order_id", "order_ts", "status", "total_amount"]
    parameter_schema = pa.ipc.read_schema(pa.py_buffer(prepared.parameter_schema))
    assert len(parameter_schema) == 0
    cmd = pb.CommandPreparedStatementQuery(prepared_statement_handle=prepared.prepared_statement_handle)
    # A handle can be executed many times.
    for _ in range(2):
        info = jdbc.info(cmd)
        assert info.total_records in (-1, 5)
        schema, table = jdbc.read(info)
        assert info.schema.equals(schema)
        assert schema.equals(dataset_schema)
        assert table.num_rows == 5
        assert pa.types.is_decimal128(schema.field("total_amount").type)
        assert pa.types.is_string(schema.field("status").type)
    jdbc.close_prepared(prepared.prepared_statement_handle)
    # Closing twice is harmless; the handle is gone afterwards.
    jdbc.close_prepared(prepared.prepared_statement_handle)
    with pytest.raises(KeyError, match="unknown or closed prepared statement"):
        jdbc.info(cmd)


def test_parameters_bound_through_do_put(jdbc):
    prepared = jdbc.prepare("SELECT order_id, status FROM sales.orders WHERE order_id = ?")
    params = pa.ipc.read_schema(pa.py_buffer(prepared.parameter_schema))
    assert len(params) == 1
    assert params.field(0).type == pa.int64()
    handle = prepared.prepared_statement_handle
    batch = pa.record_batch([pa.array([7], pa.int64())], names=["0"])
    results = jdbc.put(pb.CommandPreparedStatementQuery(prepared_statement_handle=handle), batch)
    assert len(results) == 1
    new_handle = decode_bytes_field_1(results[0])
    assert new_handle, "DoPutPreparedStatementResult must carry a handle"
    for h in {new_handle, handle}:
        _, table = jdbc.fetch(pb.CommandPreparedStatementQuery(prepared_statement_handle=h))
        assert table.column("order_id").to_pylist() == [7]
    jdbc.close_prepared(handle)


def test_update_of_a_statement_that_is_not_a_query(jdbc):
    prepared = jdbc.prepare("CREATE TABLE t AS SELECT 1 AS x")
    assert len(pa.ipc.read_schema(pa.py_buffer(prepared.dataset_schema))) == 0
    # JDBC's executeUpdate: DoPut(CommandPreparedStatementUpdate) with a zero-column batch.
    empty = pa.RecordBatch.from_arrays([], schema=pa.schema([]))
    cmd = pb.CommandPreparedStatementUpdate(prepared_statement_handle=prepared.prepared_statement_handle)
    with pytest.raises(flight.FlightError) as excinfo:
        jdbc.put(cmd, empty)
    assert "read-only" in str(excinfo.value)
    assert "PERMISSION_DENIED" in str(excinfo.value) or isinstance(
        excinfo.value, flight.FlightUnauthorizedError
    ), str(excinfo.value)


def test_database_metadata_calls(jdbc):
    # getCatalogs / getSchemas / getTableTypes.
    _, catalogs = jdbc.fetch(pb.CommandGetCatalogs())
    assert catalogs.column(0).to_pylist() == ["mesh"]
    info, schemas = jdbc.fetch(pb.CommandGetDbSchemas(catalog="mesh", db_schema_filter_pattern="%"))
    assert set(d for d, _ in PRODUCTS) <= set(schemas.column("db_schema_name").to_pylist())
    info, types = jdbc.fetch(pb.CommandGetTableTypes())
    assert info.schema.equals(TABLE_TYPES_SCHEMA)
    assert types.column(0).to_pylist() == ["SYSTEM TABLE", "TABLE"]

    # getTables: include_schema=false, JDBC table types.
    info, tables = jdbc.fetch(pb.CommandGetTables(table_types=["TABLE"]))
    assert info.schema.equals(TABLES_SCHEMA)
    got = sorted(zip(tables.column(1).to_pylist(), tables.column(2).to_pylist()))
    assert got == PRODUCTS

    # getColumns: include_schema=true; names are Utf8 and table_schema Binary (JDBC casts to
    # VarCharVector/VarBinaryVector); column metadata carries type name, precision, remarks.
    info, tables = jdbc.fetch(
        pb.CommandGetTables(db_schema_filter_pattern="sales", table_name_filter_pattern="ord%", include_schema=True)
    )
    assert info.schema.equals(TABLES_WITH_SCHEMA_SCHEMA)
    rows = {r["table_name"]: r for r in tables.to_pylist()}
    assert sorted(rows) == ["order_items", "orders"]
    schema = pa.ipc.read_schema(pa.py_buffer(rows["orders"]["table_schema"]))
    assert schema.names == ["order_id", "customer_id", "order_ts", "status", "total_amount", "region"]
    md = {k.decode(): v.decode() for k, v in schema.field("total_amount").metadata.items()}
    assert md["ARROW:FLIGHT:SQL:TYPE_NAME"] == "DECIMAL"
    t = schema.field("total_amount").type
    assert md["ARROW:FLIGHT:SQL:PRECISION"] == str(t.precision)
    assert md["ARROW:FLIGHT:SQL:SCALE"] == str(t.scale)
    assert md["ARROW:FLIGHT:SQL:IS_AUTO_INCREMENT"] == "0"
    assert md["ARROW:FLIGHT:SQL:REMARKS"], "the contract's column description"
    ts = {k.decode(): v.decode() for k, v in schema.field("order_ts").metadata.items()}
    assert ts["ARROW:FLIGHT:SQL:TYPE_NAME"].startswith("TIMESTAMP")
    product_md = {k.decode(): v.decode() for k, v in schema.metadata.items()}
    assert product_md["meshql:description"] and product_md["meshql:owner"]

    # Keys.
    info, keys = jdbc.fetch(pb.CommandGetPrimaryKeys(db_schema="sales", table="orders"))
    assert info.schema.equals(PRIMARY_KEYS_SCHEMA)
    assert keys.column("column_name").to_pylist() == ["order_id"]
    assert keys.column("key_sequence").to_pylist() == [1]
    for cmd in (
        pb.CommandGetImportedKeys(table="orders"),
        pb.CommandGetExportedKeys(table="orders"),
        pb.CommandGetCrossReference(pk_table="orders", fk_table="order_items"),
    ):
        info, keys = jdbc.fetch(cmd)
        assert info.schema.equals(FOREIGN_KEYS_SCHEMA)
        assert keys.num_rows == 0

    # getTypeInfo.
    _, types = jdbc.fetch(pb.CommandGetXdbcTypeInfo())
    names = types.column("type_name").to_pylist()
    for expected in ("BIGINT", "VARCHAR", "DECIMAL", "TIMESTAMP", "BOOLEAN", "DATE"):
        assert expected in names


def test_timestamps_with_and_without_time_zone(jdbc):
    sql = (
        "SELECT CAST('2024-01-02T03:04:05' AS TIMESTAMP) AS plain, "
        "arrow_cast(CAST('2024-01-02T03:04:05' AS TIMESTAMP), 'Timestamp(Microsecond, Some(\"UTC\"))') AS utc"
    )
    prepared = jdbc.prepare(sql)
    dataset_schema = pa.ipc.read_schema(pa.py_buffer(prepared.dataset_schema))
    _, table = jdbc.fetch(pb.CommandPreparedStatementQuery(prepared_statement_handle=prepared.prepared_statement_handle))
    assert table.schema.equals(dataset_schema)
    assert table.schema.field("plain").type.tz is None
    assert table.schema.field("utc").type.tz == "UTC"
    jdbc.close_prepared(prepared.prepared_statement_handle)


def test_session_options_for_jdbc_catalog_property(jdbc, server):
    # JDBC with `catalog=mesh` sends SetSessionOptions at connect and CloseSession at close.
    # SetSessionOptionsRequest{session_options: {"catalog": SessionOptionValue{string_value}}}
    value = b"\x0a" + bytes([len(b"mesh")]) + b"mesh"
    entry = b"\x0a\x07catalog" + b"\x12" + bytes([len(value)]) + value
    body = b"\x0a" + bytes([len(entry)]) + entry
    (result,) = jdbc.action("SetSessionOptions", body)
    assert result == b"", f"no errors expected, got {result!r}"
    (closed,) = jdbc.action("CloseSession", b"")
    assert closed == b"\x08\x01"  # CloseSessionResult{status: CLOSED}
