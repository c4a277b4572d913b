"""Soak benchmark: N clients (default 8) for M minutes (default 10) against one `meshql serve`.

Each client is a process that loops over a seeded, weighted mix of operations:

  query_dashboard  cross-domain aggregation (orders x customers), as admin / sales_analyst /
                   eu_analyst
  query_point      prepared statement with a bound parameter (order by id)
  query_stream     a 1M-row result with strings, read to the end and counted
  query_time_travel  Delta `VERSION AS OF 0`
  query_system     meshql.products / meshql.audit
  metadata_*       GetTables (+ columns), GetSqlInfo, GetDbSchemas, table schema, table types
  cancel           a large result started with raw pyarrow.flight, cancelled with
                   CancelFlightInfo after a few batches (must end CANCELLED)
  disconnect       a large result whose client goes away after a few batches
  bad_sql          syntax errors, unknown and hidden tables, failing casts, writes (must fail
                   with a clean status)

The main process samples the server's RSS (and CPU time) every second. At the end it checks the
server is alive and answers, and writes `soak.json` (every figure) and `soak.md` (a summary:
operations, errors by kind, p50/p99 latency per operation kind, RSS over time).

    python benches/soak/soak.py --minutes 10                    # starts its own server
    python benches/soak/soak.py --uri grpc://127.0.0.1:50051 --pid 1234

Without --uri it writes the demo mesh (`--scale`) into a temporary directory and starts
`$MESHQL_BIN serve` (default target/release/meshql). Errors are counted, never fatal; the exit
code is 1 if the server died or unexpected errors occurred.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

LISTENING = re.compile(r"^meshql listening on (grpc://\S+:\d+)$")
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

STREAM_ROWS = 1_000_000
STREAM_SQL = (
    "SELECT value, concat('row-', CAST(value AS VARCHAR)) AS label "
    f"FROM generate_series(1, {STREAM_ROWS})"
)
DASHBOARD_SQL = (
    "SELECT c.region, c.tier, count(*) AS orders, sum(o.total_amount) AS revenue "
    "FROM sales.orders o JOIN customers.customers c ON o.customer_id = c.customer_id "
    "GROUP BY c.region, c.tier ORDER BY revenue DESC"
)
BAD_SQL = [
    "SELEC 1",
    "SELECT * FROM sales.no_such_product",
    "SELECT * FROM marketing.leads",  # hidden from the analysts
    "SELECT CAST(name AS INT) FROM customers.customers",
    "INSERT INTO sales.orders (order_id) VALUES (1)",
    "SELECT 1/0",
    "SELECT * FROM sales.orders VERSION AS OF 999",
    "SELECT nosuchfunction(1)",
]
# (operation, weight)
MIX = [
    ("query_dashboard", 20),
    ("query_point", 15),
    ("query_stream", 4),
    ("query_time_travel", 5),
    ("query_system", 5),
    ("metadata_tables", 6),
    ("metadata_sql_info", 4),
    ("metadata_schemas", 3),
    ("metadata_table_schema", 4),
    ("metadata_table_types", 2),
    ("cancel", 4),
    ("disconnect", 4),
    ("bad_sql", 12),
]


# -- server ------------------------------------------------------------------------------------


def start_server(binary: Path, scale: int) -> Tuple[subprocess.Popen, str, Path]:
    work = Path(tempfile.mkdtemp(prefix="meshql-soak-"))
    subprocess.run(
        [str(binary), "demo", "--dir", str(work / "mesh"), "--scale", str(scale)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = open(work / "server.log", "w")
    proc = subprocess.Popen(
        [str(binary), "serve", "--config", str(work / "mesh" / "meshql.toml"), "--bind", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        m = LISTENING.match(line.strip())
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, m.group(1), work
    raise RuntimeError(f"meshql serve did not start; see {work / 'server.log'}")


def rss_and_cpu(pid: int) -> Tuple[Optional[int], Optional[float]]:
    try:
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * PAGE
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICKS
        return rss, cpu
    except (OSError, ValueError, IndexError):
        return None, None


# -- clients -----------------------------------------------------------------------------------


def grpc_code(exc: BaseException) -> str:
    """The gRPC status of a client error (ADBC puts it at the end of its message; pyarrow in the
    exception class)."""
    message = str(exc)
    m = re.search(r"\((\w+); [^;()]*\)(\. Vendor code: \d+)?\s*$", message)
    if m:
        return re.sub(r"(?<!^)(?=[A-Z])", "_", m.group(1)).upper()
    import pyarrow as pa
    import pyarrow.flight as flight

    for cls, code in (
        (flight.FlightCancelledError, "CANCELLED"),
        (flight.FlightTimedOutError, "DEADLINE_EXCEEDED"),
        (flight.FlightUnavailableError, "UNAVAILABLE"),
        (flight.FlightUnauthenticatedError, "UNAUTHENTICATED"),
        (flight.FlightUnauthorizedError, "PERMISSION_DENIED"),
        (flight.FlightInternalError, "INTERNAL"),
        (pa.ArrowInvalid, "INVALID_ARGUMENT"),
        (pa.ArrowNotImplementedError, "UNIMPLEMENTED"),
        (pa.ArrowKeyError, "NOT_FOUND"),
    ):
        if isinstance(exc, cls):
            return code
    return "CLIENT_" + type(exc).__name__


class Worker:
    def __init__(self, uri: str, seed: str, timeout_s: int):
        import adbc_driver_flightsql
        import adbc_driver_flightsql.dbapi as flight_sql

        self.uri = uri
        self.rng = random.Random(seed)
        self.timeout_s = timeout_s
        self._flight_sql = flight_sql
        self._opts = adbc_driver_flightsql.DatabaseOptions
        self.conns: Dict[str, object] = {}

    def conn(self, user: str):
        if user not in self.conns:
            self.conns[user] = self._flight_sql.connect(
                self.uri,
                db_kwargs={
                    "username": user,
                    "password": user,
                    self._opts.TIMEOUT_FETCH.value: str(self.timeout_s),
                    self._opts.TIMEOUT_QUERY.value: str(self.timeout_s),
                },
                autocommit=True,
            )
        return self.conns[user]

    def drop(self, user: str) -> None:
        conn = self.conns.pop(user, None)
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def query(self, user: str, sql: str, params=None) -> int:
        with self.conn(user).cursor() as cur:
            cur.execute(sql, params)
            return cur.fetch_arrow_table().num_rows

    def raw(self):
        import pyarrow.flight as flight

        client = flight.FlightClient(self.uri)
        token = client.authenticate_basic_token("admin", "admin")
        return client, flight.FlightCallOptions(headers=[token], timeout=self.timeout_s)

    def statement_info(self, client, options, sql: str):
        import flightsql.flightsql_pb2 as pb
        import pyarrow.flight as flight
        from google.protobuf import any_pb2

        any_msg = any_pb2.Any()
        any_msg.Pack(pb.CommandStatementQuery(query=sql))
        return client.get_flight_info(flight.FlightDescriptor.for_command(any_msg.SerializeToString()), options)

    # Each operation returns None (as intended) or raises / returns a problem string.

    def op_query_dashboard(self):
        user = self.rng.choice(["admin", "sales_analyst", "eu_analyst"])
        n = self.query(user, DASHBOARD_SQL)
        if n == 0:
            return "wrong_result"

    def op_query_point(self):
        user = self.rng.choice(["admin", "shipping_ds"])
        n = self.query(user, "SELECT * FROM sales.orders WHERE order_id = ?", (self.rng.randint(1, 5000),))
        if n != 1:
            return "wrong_result"

    def op_query_stream(self):
        n = self.query("admin", STREAM_SQL)
        if n != STREAM_ROWS:
            return "wrong_result"

    def op_query_time_travel(self):
        if self.query("sales_analyst", "SELECT count(*) FROM sales.orders VERSION AS OF 0") != 1:
            return "wrong_result"

    def op_query_system(self):
        user = self.rng.choice(["admin", "guest", "eu_analyst"])
        table = self.rng.choice(["meshql.products", "meshql.columns", "meshql.audit"])
        self.query(user, f"SELECT * FROM {table} LIMIT 200")

    def op_metadata_tables(self):
        depth = self.rng.choice(["tables", "columns"])
        self.conn("sales_analyst").adbc_get_objects(depth=depth).read_all()

    def op_metadata_sql_info(self):
        self.conn("guest").adbc_get_info()

    def op_metadata_schemas(self):
        self.conn("shipping_ds").adbc_get_objects(depth="db_schemas").read_all()

    def op_metadata_table_schema(self):
        self.conn("admin").adbc_get_table_schema("orders", db_schema_filter="sales")

    def op_metadata_table_types(self):
        self.conn("admin").adbc_get_table_types()

    def op_cancel(self):
        client, options = self.raw()
        try:
            info = self.statement_info(client, options, STREAM_SQL)
            reader = client.do_get(info.endpoints[0].ticket, options)
            for _ in range(3):
                reader.read_chunk()
            body = b"\x0a" + varint(len(info.serialize())) + info.serialize()
            list(client.do_action(flight_action("CancelFlightInfo", body), options))
            try:
                while True:
                    reader.read_chunk()
            except StopIteration:
                return "not_cancelled"
            except Exception as e:
                if grpc_code(e) != "CANCELLED":
                    raise
        finally:
            client.close()

    def op_disconnect(self):
        client, options = self.raw()
        try:
            info = self.statement_info(client, options, STREAM_SQL)
            reader = client.do_get(info.endpoints[0].ticket, options)
            for _ in range(self.rng.randint(1, 5)):
                reader.read_chunk()
        finally:
            client.close()

    def op_bad_sql(self):
        user = self.rng.choice(["sales_analyst", "eu_analyst", "guest"])
        sql = self.rng.choice(BAD_SQL)
        try:
            self.query(user, sql)
        except Exception as e:
            code = grpc_code(e)
            if code in ("INVALID_ARGUMENT", "NOT_FOUND", "PERMISSION_DENIED", "UNAVAILABLE", "FAILED_PRECONDITION"):
                return None
            raise
        return "bad_sql_accepted"


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def flight_action(kind: str, body: bytes):
    import pyarrow.flight as flight

    return flight.Action(kind, body)


def run_worker(index: int, uri: str, seed: str, deadline: float, timeout_s: int, out: "mp.Queue", mix) -> None:
    worker = Worker(uri, f"{seed}:{index}", timeout_s)
    ops, weights = zip(*mix)
    records: List[Tuple[str, float, float, str]] = []  # (op, start, seconds, outcome)
    while time.time() < deadline:
        op = worker.rng.choices(ops, weights)[0]
        start = time.time()
        t0 = time.perf_counter()
        try:
            problem = getattr(worker, f"op_{op}")()
            outcome = problem or "ok"
        except Exception as e:  # counted by kind, never fatal
            outcome = grpc_code(e)
            for user in list(worker.conns):
                if outcome in ("UNAVAILABLE", "DEADLINE_EXCEEDED") or outcome.startswith("CLIENT_"):
                    worker.drop(user)
        records.append((op, start, time.perf_counter() - t0, outcome))
    for conn in list(worker.conns):
        worker.drop(conn)
    out.put((index, records))


# -- report ------------------------------------------------------------------------------------


def percentile(values: List[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def summarize(records, samples, started: float, args, alive_at_end: bool, server_error: Optional[str]) -> dict:
    by_op: Dict[str, List[float]] = defaultdict(list)
    outcomes: Dict[str, Counter] = defaultdict(Counter)
    for op, start, seconds, outcome in records:
        outcomes[op][outcome] += 1
        if outcome == "ok":
            by_op[op].append(seconds)
    ops = {}
    for op, _ in MIX:
        lat = by_op.get(op, [])
        ops[op] = {
            "count": sum(outcomes[op].values()),
            "ok": len(lat),
            "outcomes": dict(outcomes[op]),
            "p50_ms": round(percentile(lat, 0.5) * 1000, 1) if lat else None,
            "p99_ms": round(percentile(lat, 0.99) * 1000, 1) if lat else None,
            "max_ms": round(max(lat) * 1000, 1) if lat else None,
        }
    errors = Counter(o for _, _, _, o in records if o != "ok")
    rss = [(round(t - started, 1), r) for t, r, _ in samples if r is not None]
    # RSS at 11 evenly spaced points (0%, 10%, ... 100% of the run), keyed by minute.
    marks = {}
    total = args.minutes * 60
    for i in range(11):
        at = total * i / 10
        near = [r for t, r in rss if t >= at]
        if near:
            marks[f"{at / 60:g}"] = round(near[0] / 2**20, 1)
    if rss:
        marks[f"{rss[-1][0] / 60:.2g}"] = round(rss[-1][1] / 2**20, 1)
    half = [(t, r) for t, r in rss if t >= (rss[-1][0] / 2 if rss else 0)]
    slope = None
    if len(half) >= 2:
        ts, rs = zip(*half)
        mt, mr = statistics.fmean(ts), statistics.fmean(rs)
        den = sum((t - mt) ** 2 for t in ts)
        if den:
            slope = sum((t - mt) * (r - mr) for t, r in zip(ts, rs)) / den * 60 / 2**20
    unexpected = {k: v for k, v in errors.items() if k not in ("ok",)}
    return {
        "config": {
            "clients": args.clients,
            "minutes": args.minutes,
            "seed": args.seed,
            "binary": str(args.bin) if not args.uri else None,
            "uri": args.uri,
            "scale": args.scale,
            "mix": dict(MIX) if not args.only else {op: w for op, w in MIX if op in args.only.split(",")},
        },
        "operations": ops,
        "total_operations": len(records),
        "errors": dict(unexpected),
        "rss_mib": {
            "start": round(rss[0][1] / 2**20, 1) if rss else None,
            "peak": round(max(r for _, r in rss) / 2**20, 1) if rss else None,
            "end": round(rss[-1][1] / 2**20, 1) if rss else None,
            "by_minute": marks,
            "slope_second_half_mib_per_min": round(slope, 2) if slope is not None else None,
        },
        "server_cpu_s": round(samples[-1][2] - samples[0][2], 1) if samples and samples[-1][2] is not None and samples[0][2] is not None else None,
        "rss_series": [(t, round(r / 2**20, 1)) for t, r in rss],
        "alive_at_end": alive_at_end,
        "server_error": server_error,
    }


def markdown(s: dict) -> str:
    c = s["config"]
    lines = [
        f"Soak: {c['clients']} clients, {c['minutes']} min, seed {c['seed']}, "
        f"{s['total_operations']} operations, server alive at the end: {'yes' if s['alive_at_end'] else 'NO'}.",
        "",
        "| operation | count | ok | p50 ms | p99 ms | max ms | other outcomes |",
        "|---|---|---|---|---|---|---|",
    ]
    for op, o in s["operations"].items():
        other = ", ".join(f"{k} {v}" for k, v in sorted(o["outcomes"].items()) if k != "ok") or "-"
        lines.append(f"| {op} | {o['count']} | {o['ok']} | {o['p50_ms']} | {o['p99_ms']} | {o['max_ms']} | {other} |")
    r = s["rss_mib"]
    lines += [
        "",
        "Errors by kind (all operations): "
        + (", ".join(f"{k} {v}" for k, v in sorted(s["errors"].items())) or "none"),
        "",
        f"Server RSS (MiB): start {r['start']}, peak {r['peak']}, end {r['end']}; "
        f"slope over the second half {r['slope_second_half_mib_per_min']} MiB/min; "
        f"server CPU {s['server_cpu_s']} s.",
        "",
        "| minute | " + " | ".join(str(m) for m in r["by_minute"]) + " |",
        "|---|" + "---|" * len(r["by_minute"]),
        "| RSS MiB | " + " | ".join(str(v) for v in r["by_minute"].values()) + " |",
    ]
    return "\n".join(lines) + "\n"


def alive(uri: str) -> Tuple[bool, Optional[str]]:
    import adbc_driver_flightsql.dbapi as flight_sql

    try:
        conn = flight_sql.connect(uri, db_kwargs={"username": "guest", "password": "guest"}, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                return cur.fetchone() == (1,), None
        finally:
            conn.close()
    except Exception as e:
        return False, str(e)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seed", default="soak")
    ap.add_argument("--uri", help="a running server (then --pid for its RSS)")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--bin", default=os.environ.get("MESHQL_BIN", "target/release/meshql"))
    ap.add_argument("--scale", type=int, default=1, help="demo mesh scale when starting a server")
    ap.add_argument("--sample-seconds", type=float, default=1.0)
    ap.add_argument("--timeout", type=int, default=120, help="client deadline per call, seconds")
    ap.add_argument("--out", default="benches/results/soak")
    ap.add_argument("--only", help="comma-separated operations to run (default: the whole mix)")
    args = ap.parse_args(argv)

    proc = None
    if args.uri:
        uri, pid = args.uri, args.pid
    else:
        proc, uri, work = start_server(Path(args.bin).resolve(), args.scale)
        pid = proc.pid
        print(f"server {uri} (pid {pid}), log {work / 'server.log'}", flush=True)

    samples: List[Tuple[float, Optional[int], Optional[float]]] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            if pid:
                rss, cpu = rss_and_cpu(pid)
                samples.append((time.time(), rss, cpu))
            stop.wait(args.sample_seconds)

    sampler = threading.Thread(target=sample, daemon=True)
    started = time.time()
    sampler.start()
    deadline = started + args.minutes * 60
    mix = MIX
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {op for op, _ in MIX}
        if unknown:
            ap.error(f"unknown operations {sorted(unknown)}")
        mix = [(op, w) for op, w in MIX if op in wanted]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    workers = [
        ctx.Process(target=run_worker, args=(i, uri, args.seed, deadline, args.timeout, queue, mix))
        for i in range(args.clients)
    ]
    for w in workers:
        w.start()
    records = []
    for _ in workers:
        _, recs = queue.get(timeout=args.minutes * 60 + args.timeout * 3 + 120)
        records.extend(recs)
    for w in workers:
        w.join()
    stop.set()
    sampler.join()
    ok, error = alive(uri)
    if proc is not None and proc.poll() is not None:
        ok, error = False, f"server exited with {proc.returncode}"
    summary = summarize(records, samples, started, args, ok, error)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(summary, indent=2))
    md = markdown(summary)
    (out / "soak.md").write_text(md)
    print(md)
    print(f"wrote {out / 'soak.json'} and {out / 'soak.md'}")
    if proc is not None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    unexpected = {k: v for k, v in summary["errors"].items()}
    return 0 if ok and not unexpected else 1


if __name__ == "__main__":
    sys.exit(main())
