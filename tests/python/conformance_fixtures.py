"""Helpers for the client-conformance tests: a raw `pyarrow.flight` Flight SQL client that
replays what a driver sends (the JDBC jar cannot be downloaded here), and the Flight SQL
spec's exact metadata schemas.

Flight SQL commands are packed into `google.protobuf.Any` with the message classes shipped by
flightsql-dbapi (`flightsql.flightsql_pb2`).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import flightsql.flightsql_pb2 as pb
import pyarrow as pa
import pyarrow.flight as flight
from google.protobuf import any_pb2
from google.protobuf.message import Message

# Every SqlInfo id the Flight SQL JDBC driver reads and the Java type it casts the value to
# (from reference/jdbc-sqlinfo-ids.txt). The union branch each type needs: string=0, bool=1,
# bigint=2, int32_bitmask=3, string_list=4, int32_to_int32_list_map=5.
JDBC_SQLINFO_TYPES: Dict[int, str] = {
    0: "String", 1: "String", 3: "Boolean", 504: "String", 508: "List", 509: "List",
    510: "List", 511: "List", 512: "List", 513: "String", 514: "String", 515: "Boolean",
    516: "Boolean", 517: "Map", 518: "Boolean", 519: "Boolean", 520: "Boolean", 521: "Boolean",
    522: "Integer", 523: "Boolean", 524: "Boolean", 525: "Integer", 526: "Integer",
    527: "Boolean", 528: "Integer", 529: "String", 530: "String", 531: "String",
    532: "Boolean", 533: "Integer", 534: "Integer", 535: "Integer", 536: "Boolean",
    537: "Boolean", 538: "Integer", 539: "Boolean", 540: "Integer", 541: "Long", 542: "Long",
    543: "Long", 544: "Long", 545: "Long", 546: "Long", 547: "Long", 548: "Long", 549: "Long",
    550: "Long", 551: "Long", 552: "Long", 553: "Long", 554: "Long", 555: "Long",
    556: "Boolean", 557: "Long", 558: "Long", 559: "Long", 560: "Long", 561: "Long",
    562: "Long", 563: "Boolean", 564: "Integer", 565: "Boolean", 566: "Boolean",
    567: "Integer", 572: "Boolean", 573: "Boolean", 574: "Boolean", 575: "Boolean",
    576: "Boolean",
}
JAVA_TYPE_UNION_CODE = {"String": 0, "Boolean": 1, "Long": 2, "Integer": 3, "List": 4, "Map": 5}

# The Flight SQL spec's result schemas (FlightSql.proto), nullability included.
CATALOGS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8(), nullable=False)])
DB_SCHEMAS_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.utf8()),
        pa.field("db_schema_name", pa.utf8(), nullable=False),
    ]
)
TABLES_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.utf8()),
        pa.field("db_schema_name", pa.utf8()),
        pa.field("table_name", pa.utf8(), nullable=False),
        pa.field("table_type", pa.utf8(), nullable=False),
    ]
)
TABLES_WITH_SCHEMA_SCHEMA = TABLES_SCHEMA.append(
    pa.field("table_schema", pa.binary(), nullable=False)
)
TABLE_TYPES_SCHEMA = pa.schema([pa.field("table_type", pa.utf8(), nullable=False)])
PRIMARY_KEYS_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.utf8()),
        pa.field("db_schema_name", pa.utf8()),
        pa.field("table_name", pa.utf8(), nullable=False),
        pa.field("column_name", pa.utf8(), nullable=False),
        pa.field("key_name", pa.utf8()),
        pa.field("key_sequence", pa.int32(), nullable=False),
    ]
)
FOREIGN_KEYS_SCHEMA = pa.schema(
    [
        pa.field("pk_catalog_name", pa.utf8()),
        pa.field("pk_db_schema_name", pa.utf8()),
        pa.field("pk_table_name", pa.utf8(), nullable=False),
        pa.field("pk_column_name", pa.utf8(), nullable=False),
        pa.field("fk_catalog_name", pa.utf8()),
        pa.field("fk_db_schema_name", pa.utf8()),
        pa.field("fk_table_name", pa.utf8(), nullable=False),
        pa.field("fk_column_name", pa.utf8(), nullable=False),
        pa.field("key_sequence", pa.int32(), nullable=False),
        pa.field("fk_key_name", pa.utf8()),
        pa.field("pk_key_name", pa.utf8()),
        pa.field("update_rule", pa.uint8(), nullable=False),
        pa.field("delete_rule", pa.uint8(), nullable=False),
    ]
)

PRODUCTS = [
    ("customers", "customers"),
    ("inventory", "stock"),
    ("marketing", "leads"),
    ("sales", "order_items"),
    ("sales", "orders"),
    ("shipping", "delivery_performance"),
    ("shipping", "shipments"),
]


def pack(message: Message) -> bytes:
    """A Flight SQL command as the serialized `Any` every client sends."""
    any_msg = any_pb2.Any()
    any_msg.Pack(message)
    return any_msg.SerializeToString()


def unpack(data: bytes, message: Message) -> Message:
    any_msg = any_pb2.Any()
    any_msg.ParseFromString(data)
    if not any_msg.Unpack(message):
        raise AssertionError(f"expected {message.DESCRIPTOR.full_name}, got {any_msg.type_url}")
    return message


def decode_bytes_field_1(data: bytes) -> Optional[bytes]:
    """Field 1 (bytes) of a protobuf message, e.g. `DoPutPreparedStatementResult.handle`."""
    i = 0
    while i < len(data):
        key = data[i]
        i += 1
        if key == 0x0A:  # field 1, length-delimited
            length, shift = 0, 0
            while True:
                b = data[i]
                i += 1
                length |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    break
            return data[i : i + length]
        return None
    return None


class RawFlightSql:
    """A Flight SQL client made of raw `pyarrow.flight` calls, like the JDBC driver's."""

    def __init__(self, uri: str, user: str, password: Optional[str] = None, **kwargs) -> None:
        self.client = flight.FlightClient(uri, **kwargs)
        # Padded Basic auth (as JDBC and pyarrow send it); the answer must carry the bearer
        # token in the `authorization` response header.
        header = self.client.authenticate_basic_token(user, user if password is None else password)
        assert header[0].lower() in (b"authorization", "authorization"), header
        self.bearer = header[1] if isinstance(header[1], bytes) else header[1].encode()
        assert self.bearer.lower().startswith(b"bearer "), self.bearer
        self.options = flight.FlightCallOptions(headers=[(b"authorization", self.bearer)])

    def close(self) -> None:
        self.client.close()

    def info(self, command: Message) -> flight.FlightInfo:
        return self.client.get_flight_info(
            flight.FlightDescriptor.for_command(pack(command)), self.options
        )

    def read(self, info: flight.FlightInfo) -> Tuple[pa.Schema, pa.Table]:
        """DoGet of the single endpoint; returns the stream's schema and its rows."""
        assert len(info.endpoints) == 1, f"expected exactly one endpoint, got {len(info.endpoints)}"
        endpoint = info.endpoints[0]
        assert [loc.uri for loc in endpoint.locations] in ([], [b""]), endpoint.locations
        reader = self.client.do_get(endpoint.ticket, self.options)
        table = reader.read_all()
        return reader.schema, table

    def fetch(self, command: Message) -> Tuple[flight.FlightInfo, pa.Table]:
        info = self.info(command)
        schema, table = self.read(info)
        assert info.schema.equals(schema), f"FlightInfo {info.schema} != DoGet {schema}"
        return info, table

    def action(self, kind: str, body: bytes) -> List[bytes]:
        results = self.client.do_action(flight.Action(kind, body), self.options)
        return [r.body.to_pybytes() for r in results]

    def prepare(self, sql: str) -> pb.ActionCreatePreparedStatementResult:
        req = pb.ActionCreatePreparedStatementRequest(query=sql)
        (body,) = self.action("CreatePreparedStatement", pack(req))
        return unpack(body, pb.ActionCreatePreparedStatementResult())

    def close_prepared(self, handle: bytes) -> None:
        req = pb.ActionClosePreparedStatementRequest(prepared_statement_handle=handle)
        self.action("ClosePreparedStatement", pack(req))

    def put(self, command: Message, batch: pa.RecordBatch) -> List[bytes]:
        """DoPut of one batch under `command`; returns each PutResult's app_metadata."""
        descriptor = flight.FlightDescriptor.for_command(pack(command))
        writer, reader = self.client.do_put(descriptor, batch.schema, self.options)
        writer.write_batch(batch)
        writer.done_writing()
        out = []
        while True:
            try:
                buf = reader.read()
            except StopIteration:
                break
            if buf is None:
                break
            out.append(buf.to_pybytes())
        writer.close()
        return out


def sql_info_values(table: pa.Table) -> Dict[int, Tuple[int, object]]:
    """{info_name: (union type code, python value)} of a GetSqlInfo result."""
    names = table.column("info_name").to_pylist()
    values = table.column("value").combine_chunks()
    out = {}
    for i, name in enumerate(names):
        code = values.type_codes[i].as_py()
        out[name] = (code, values[i].as_py())
    return out
