"""Large results arrive whole: every row exactly once, every string intact, through ADBC and
raw `pyarrow.flight`, repeatedly, also while other clients stream, disconnect and cancel.

Each result is `generate_series(1, N)` plus a string column derived from the value (with a
non-ASCII character). The client checks every row as it streams in: each value in 1..N seen
exactly once (a bitmap), each label equal to what the value says it must be, and the counts and
sums (rows, sum of values, sum of label characters and bytes) equal to the checksums the server
computes for the same query with an aggregate (and to their closed forms).

Results over 16 MiB need several Flight messages; 1.5M and 15M rows are about 35 MiB and
380 MiB of Arrow data. Unordered queries may deliver batches in any order (two partitions are
merged as they come), so nothing here assumes an order unless the SQL says ORDER BY.

Runtime is bounded: 15M rows are read once per client sequentially and once more per client in
the concurrent test (about 10 s per 15M read on a debug build).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Tuple

import adbc_driver_manager
import flightsql.flightsql_pb2 as pb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pytest

from conformance_fixtures import RawFlightSql
from conftest import Server, connect

N_SMALL = 1_500_000
N_LARGE = 15_000_000
PREFIX = "row-number-"
SUFFIX = "-ü"  # two bytes in UTF-8: character and byte counts differ


def series_sql(n: int, where: str = "", order: str = "") -> str:
    return (
        f"SELECT value, concat('{PREFIX}', CAST(value AS VARCHAR), '{SUFFIX}') AS label "
        f"FROM generate_series(1, {n}){where}{order}"
    )


Checksum = Tuple[int, int, int, int]  # rows, sum(value), sum(chars of label), sum(bytes of label)


def closed_form(n: int) -> Checksum:
    """The checksum of `series_sql(n)` computed without the server."""
    digits = 0
    lo = 1
    while lo <= n:
        hi = min(n, lo * 10 - 1)
        digits += (hi - lo + 1) * len(str(lo))
        lo *= 10
    fixed_chars = len(PREFIX) + len(SUFFIX)
    fixed_bytes = len(PREFIX.encode()) + len(SUFFIX.encode())
    return n, n * (n + 1) // 2, n * fixed_chars + digits, n * fixed_bytes + digits


@pytest.fixture(scope="module")
def server_checksum(server: Server) -> Callable[[str], Checksum]:
    """The server's own count and sums over a query's result (one aggregate per query)."""
    cache: Dict[str, Checksum] = {}
    conn = connect(server, "admin")

    def checksum(sql: str) -> Checksum:
        if sql not in cache:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*), sum(value), sum(character_length(label)), "
                    f"sum(octet_length(label)) FROM ({sql}) AS t"
                )
                row = cur.fetchone()
            cache[sql] = tuple(int(v) for v in row)
        return cache[sql]

    yield checksum
    conn.close()


@dataclass
class Tally:
    """Checks a result batch by batch as it streams in (no whole table in client memory)."""

    n: int
    ordered: str = ""  # "", "asc" or "desc"
    rows: int = 0
    value_sum: int = 0
    chars: int = 0
    octets: int = 0
    batches: int = 0
    last: int = 0
    seen: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.seen = np.zeros(self.n + 1, dtype=bool)
        self.last = 0 if self.ordered != "desc" else self.n + 1

    def add(self, batch: pa.RecordBatch) -> None:
        assert batch.schema.names == ["value", "label"], batch.schema
        assert batch.schema.field("value").type == pa.int64(), batch.schema
        assert batch.schema.field("label").type == pa.string(), batch.schema
        if batch.num_rows == 0:
            return
        values = batch.column(0)
        labels = batch.column(1)
        assert values.null_count == 0 and labels.null_count == 0
        v = values.to_numpy()
        lo, hi = int(v.min()), int(v.max())
        assert 1 <= lo and hi <= self.n, f"value outside 1..{self.n}: {lo}..{hi}"
        if self.ordered == "asc":
            assert v[0] == self.last + 1 and bool(np.all(np.diff(v) == 1)), "not in order"
        elif self.ordered == "desc":
            assert v[0] == self.last - 1 and bool(np.all(np.diff(v) == -1)), "not in order"
        self.last = int(v[-1])
        dup = self.seen[v]
        assert not dup.any(), f"row {int(v[np.argmax(dup)])} arrived twice"
        self.seen[v] = True
        expected = pc.binary_join_element_wise(PREFIX, pc.cast(values, pa.string()), SUFFIX, "")
        if not pc.all(pc.equal(labels, expected)).as_py():
            bad = pc.index(pc.equal(labels, expected), False).as_py()
            raise AssertionError(
                f"label of row {v[bad]} is {labels[bad].as_py()!r}, "
                f"expected {expected[bad].as_py()!r}"
            )
        self.rows += batch.num_rows
        self.value_sum += int(v.sum())
        self.chars += int(pc.sum(pc.utf8_length(labels)).as_py())
        self.octets += int(pc.sum(pc.binary_length(labels)).as_py())
        self.batches += 1

    def checksum(self) -> Checksum:
        missing = np.flatnonzero(~self.seen[1:])
        assert missing.size == 0, (
            f"{missing.size} of {self.n} rows missing (first: {missing[:5] + 1}); "
            f"{self.rows} rows in {self.batches} batches"
        )
        return self.rows, self.value_sum, self.chars, self.octets


def tally(batches: Iterable[pa.RecordBatch], n: int, ordered: str = "") -> Tally:
    t = Tally(n, ordered)
    for batch in batches:
        t.add(batch)
    return t


def read_adbc(conn, sql: str, n: int, ordered: str = "", params=None) -> Tally:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return tally(cur.fetch_record_batch(), n, ordered)


def flight_batches(raw: RawFlightSql, sql: str) -> Iterable[pa.RecordBatch]:
    info = raw.info(pb.CommandStatementQuery(query=sql))
    assert len(info.endpoints) == 1
    reader = raw.client.do_get(info.endpoints[0].ticket, raw.options)
    assert reader.schema.equals(info.schema), f"{reader.schema} != {info.schema}"
    for chunk in reader:
        yield chunk.data


def read_flight(raw: RawFlightSql, sql: str, n: int, ordered: str = "") -> Tally:
    return tally(flight_batches(raw, sql), n, ordered)


def cancel_flight_info_request(info: flight.FlightInfo) -> bytes:
    """A serialized `arrow.flight.protocol.CancelFlightInfoRequest{info}` (pyarrow has no
    CancelFlightInfo call): field 1, length-delimited."""
    payload = info.serialize()
    size, length = len(payload), bytearray()
    while True:
        byte, size = size & 0x7F, size >> 7
        length.append(byte | (0x80 if size else 0))
        if not size:
            return b"\x0a" + bytes(length) + payload


@pytest.fixture
def raw(server: Server):
    client = RawFlightSql(server.uri, "admin")
    yield client
    client.close()


def assert_alive(server: Server) -> None:
    assert server.process.poll() is None, "the server died"
    conn = connect(server, "guest")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
    finally:
        conn.close()


@pytest.mark.parametrize("n, repeats", [(N_SMALL, 4), (N_LARGE, 1)], ids=["1.5M", "15M"])
def test_adbc_reads_every_row_repeatedly(admin, server_checksum, n, repeats):
    sql = series_sql(n)
    expected = server_checksum(sql)
    assert expected == closed_form(n)
    for attempt in range(repeats):
        got = read_adbc(admin, sql, n).checksum()
        assert got == expected, f"attempt {attempt}: {got} != {expected}"


@pytest.mark.parametrize("n, repeats", [(N_SMALL, 4), (N_LARGE, 1)], ids=["1.5M", "15M"])
def test_raw_flight_reads_every_row_repeatedly(raw, server_checksum, n, repeats):
    sql = series_sql(n)
    expected = server_checksum(sql)
    for attempt in range(repeats):
        t = read_flight(raw, sql, n)
        assert t.checksum() == expected, f"attempt {attempt}: {t.checksum()} != {expected}"
        # Far more than 16 MiB in total, in many messages.
        assert t.batches > 16


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_ordered_large_result_arrives_in_order(raw, admin, server_checksum, order):
    sql = series_sql(N_SMALL, order=f" ORDER BY value {order.upper()}")
    expected = server_checksum(sql)
    assert read_flight(raw, sql, N_SMALL, ordered=order).checksum() == expected
    assert read_adbc(admin, sql, N_SMALL, ordered=order).checksum() == expected


def test_large_result_of_a_prepared_statement_with_a_parameter(admin, server_checksum):
    n = 1_234_567
    sql = series_sql(N_SMALL, where=" WHERE value <= ?")
    expected = server_checksum(series_sql(n))
    assert read_adbc(admin, sql, n, params=(n,)).checksum() == expected


def test_large_results_while_other_clients_stream_disconnect_and_cancel(server, server_checksum):
    """Eight clients at once: complete readers of both sizes through both clients, one that
    walks away mid-stream, and one whose query is cancelled with CancelFlightInfo mid-stream.
    Every complete reader gets every row; the server stays up."""
    small, large = series_sql(N_SMALL), series_sql(N_LARGE)
    expected = {N_SMALL: server_checksum(small), N_LARGE: server_checksum(large)}
    start = threading.Barrier(8, timeout=120)

    def adbc_reader(n: int) -> Checksum:
        conn = connect(server, "admin")
        try:
            start.wait()
            return read_adbc(conn, series_sql(n), n).checksum()
        finally:
            conn.close()

    def flight_reader(n: int) -> Checksum:
        client = RawFlightSql(server.uri, "admin")
        try:
            start.wait()
            return read_flight(client, series_sql(n), n).checksum()
        finally:
            client.close()

    def walks_away() -> str:
        client = RawFlightSql(server.uri, "admin")
        try:
            start.wait()
            batches = flight_batches(client, large)
            for _ in range(5):
                next(batches)
            batches.close()
        finally:
            client.close()  # drops the connection with the stream unfinished
        return "left"

    def cancelled() -> str:
        client = RawFlightSql(server.uri, "admin")
        try:
            start.wait()
            info = client.info(pb.CommandStatementQuery(query=large))
            reader = client.client.do_get(info.endpoints[0].ticket, client.options)
            rows = sum(reader.read_chunk().data.num_rows for _ in range(3))
            (body,) = client.action("CancelFlightInfo", cancel_flight_info_request(info))
            assert body == b"\x08\x01", body  # CancelFlightInfoResult{status: CANCELLED}
            with pytest.raises(flight.FlightCancelledError):
                for chunk in reader:
                    rows += chunk.data.num_rows
            assert rows < N_LARGE
        finally:
            client.close()
        return "cancelled"

    jobs = [
        (adbc_reader, N_LARGE),
        (flight_reader, N_LARGE),
        (adbc_reader, N_SMALL),
        (adbc_reader, N_SMALL),
        (flight_reader, N_SMALL),
        (flight_reader, N_SMALL),
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(fn, n) for fn, n in jobs]
        left = pool.submit(walks_away)
        cancel = pool.submit(cancelled)
        results = [f.result(timeout=600) for f in futures]
        assert left.result(timeout=600) == "left"
        assert cancel.result(timeout=600) == "cancelled"
    for (fn, n), got in zip(jobs, results):
        assert got == expected[n], f"{fn.__name__}({n}): {got} != {expected[n]}"
    assert_alive(server)
