"""The streaming ceiling: a Flight SQL server that does no work.

It holds a result in memory, exactly as meshql sent it (the same schema and the same record
batches, so the same message sizes), and answers a query with those batches: no SQL, no scan, no
decoding. A client reading from it measures what the client, the transport and the encoder cost
on this machine; the gap between it and meshql is meshql's own work. It speaks just enough Flight
SQL for ADBC (`CreatePreparedStatement`, `GetFlightInfo`, `DoGet`, `ClosePreparedStatement`) and
for a plain `pyarrow.flight` client (any descriptor, any ticket).

Run as `python ceiling.py RESULT.arrows`: it loads the Arrow IPC stream file and prints its port.
The harness uses it through `Ceiling` (capture a result from meshql, serve it) and measures both
clients with `stream_pyarrow` and the ADBC engine's own `stream`.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as fl

SQL_PREFIX = "type.googleapis.com/arrow.flight.protocol.sql."


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _bytes_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def any_message(type_name: str, value: bytes) -> bytes:
    """A `google.protobuf.Any` holding a Flight SQL message."""
    return _bytes_field(1, (SQL_PREFIX + type_name).encode()) + _bytes_field(2, value)


def statement_query(sql: str) -> bytes:
    """The descriptor command of a Flight SQL statement (`CommandStatementQuery`)."""
    return any_message("CommandStatementQuery", _bytes_field(1, sql.encode()))


# `CommandGetSqlInfo`'s result schema: ADBC asks for it when it connects; the ceiling answers
# with no rows (no metadata), which clients read as "not reported".
SQL_INFO_SCHEMA = pa.schema([
    pa.field("info_name", pa.uint32(), nullable=False),
    pa.field("value", pa.union([
        pa.field("string_value", pa.utf8()),
        pa.field("bool_value", pa.bool_()),
        pa.field("bigint_value", pa.int64()),
        pa.field("int32_bitmask", pa.int32()),
        pa.field("string_list", pa.list_(pa.utf8())),
        pa.field("int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.int32()))),
    ], mode="dense", type_codes=[0, 1, 2, 3, 4, 5]), nullable=False),
])


class CeilingServer(fl.FlightServerBase):
    def __init__(self, batches: list[pa.RecordBatch], schema: pa.Schema):
        super().__init__("grpc://127.0.0.1:0")
        self.batches, self.schema = batches, schema

    def get_flight_info(self, context, descriptor):
        if b"CommandGetSqlInfo" in (descriptor.command or b""):
            return fl.FlightInfo(SQL_INFO_SCHEMA, descriptor, [fl.FlightEndpoint(b"sql_info", [])],
                                 0, -1)
        endpoint = fl.FlightEndpoint(b"result", [])
        return fl.FlightInfo(self.schema, descriptor, [endpoint], -1, -1)

    def do_get(self, context, ticket):
        if ticket.ticket == b"sql_info":
            return fl.RecordBatchStream(SQL_INFO_SCHEMA.empty_table())
        return fl.GeneratorStream(self.schema, iter(self.batches))

    def do_action(self, context, action):
        if action.type == "CreatePreparedStatement":
            result = _bytes_field(1, b"h") + _bytes_field(2, self.schema.serialize().to_pybytes())
            return [fl.Result(any_message("ActionCreatePreparedStatementResult", result))]
        if action.type == "ClosePreparedStatement":
            return []
        raise fl.FlightServerError(f"the ceiling server has no action {action.type}")


def pyarrow_client(uri: str, user: str | None = None):
    """A `pyarrow.flight` client and its call options (basic auth as `user`/`user`)."""
    client = fl.connect(uri)
    headers = [client.authenticate_basic_token(user, user)] if user else []
    return client, fl.FlightCallOptions(headers=headers)


def _statement_stream(client, options, sql: str):
    info = client.get_flight_info(fl.FlightDescriptor.for_command(statement_query(sql)), options)
    if len(info.endpoints) != 1:
        raise RuntimeError(f"expected one endpoint, got {len(info.endpoints)}")
    return client.do_get(info.endpoints[0].ticket, options)


def stream_pyarrow(client, options, sql: str) -> tuple[float, int, int]:
    """Runs `sql` as a Flight SQL statement with `pyarrow.flight`, reading every batch without
    keeping it: (seconds, rows, bytes)."""
    start = time.perf_counter()
    rows = nbytes = 0
    for chunk in _statement_stream(client, options, sql):
        rows += chunk.data.num_rows
        nbytes += chunk.data.nbytes
    return time.perf_counter() - start, rows, nbytes


class Ceiling:
    """A ceiling server for one result captured from a Flight SQL server: the batches as they
    arrived, at most `max_bytes` of them (a rate needs no more), kept in `path`."""

    def __init__(self, client, options, sql: str, path: Path, max_bytes: int = 1_200_000_000):
        reader = _statement_stream(client, options, sql)
        size = 0
        with pa.OSFile(str(path), "wb") as f, pa.ipc.new_stream(f, reader.schema) as w:
            for chunk in reader:
                w.write_batch(chunk.data)
                size += chunk.data.nbytes
                if size >= max_bytes:
                    break
        # Stop the rest of the result (the server cancels its work when the stream closes).
        reader.cancel()
        self.proc = subprocess.Popen([sys.executable, __file__, str(path)],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise RuntimeError(f"the ceiling server did not start (printed {line!r})")
        self.uri = f"grpc://127.0.0.1:{int(line)}"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def main() -> int:
    with pa.OSFile(sys.argv[1], "rb") as f:
        reader = pa.ipc.open_stream(f)
        schema, batches = reader.schema, list(reader)
    server = CeilingServer(batches, schema)
    print(server.port, flush=True)
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
