"""The engines the TPC-H harness compares. Each has `label`, `run(qid, sql) -> (seconds,
answer)` where answer is a pyarrow Table (or None when not wanted), and `close()`."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa

from queries import DOMAINS, TABLE_DOMAIN, unqualified

THREADS = os.cpu_count() or 2


class EngineUnavailable(Exception):
    """The engine is not installed or cannot start here; the harness skips it and says why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _drain(pipe, sink: list) -> None:
    for line in iter(pipe.readline, ""):
        sink.append(line)
        del sink[:-200]


# The harness measures query execution: every iteration must run, none may be answered from
# meshql's result cache (docs/limits.md#result-cache). `--cached` engines measure the cache.
NO_RESULT_CACHE = {"MESHQL__ENGINE__RESULT_CACHE_SIZE": "0"}


class MeshqlServer:
    """`meshql serve` (or `meshql worker`) on 127.0.0.1:0; the listening line gives the port."""

    def __init__(self, meshql: str, config: Path, command: str = "serve", env: dict | None = None):
        self.log: list[str] = []
        self.proc = subprocess.Popen(
            [meshql, command, "--config", str(config), "--bind", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn"), **NO_RESULT_CACHE,
                 **(env or {})},
        )
        deadline = time.time() + 60
        self.uri = None
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.log.append(line)
            m = re.search(r"listening on ((?:grpc|http)://\S+)", line)
            if m:
                self.uri = m.group(1)
                break
        if not self.uri:
            self.close()
            raise EngineUnavailable(f"meshql {command} did not start:\n" + "".join(self.log[-20:]))
        threading.Thread(target=_drain, args=(self.proc.stdout, self.log), daemon=True).start()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def adbc_connect(uri: str, user: str | None = None):
    import adbc_driver_flightsql.dbapi as flightsql

    kwargs = {"username": user, "password": user} if user else {}
    return flightsql.connect(uri, db_kwargs=kwargs, autocommit=True)


class FlightEngine:
    """Queries over Flight SQL with the ADBC Python client: what a notebook sees."""

    def __init__(self, label: str, uri: str, user: str | None, qualify: bool):
        self.label, self.uri, self.user, self.qualify = label, uri, user, qualify
        self.conn = adbc_connect(uri, user)
        self.cur = self.conn.cursor()

    def run(self, qid, sql: str, want_answer: bool = True):
        sql = sql if self.qualify else unqualified(sql)
        start = time.perf_counter()
        self.cur.execute(sql)
        table = self.cur.fetch_arrow_table()
        return time.perf_counter() - start, table

    def stream(self, sql: str) -> tuple[float, int, int]:
        """Streams a (large) result batch by batch without keeping it: (seconds, rows, bytes)."""
        start = time.perf_counter()
        self.cur.execute(sql if self.qualify else unqualified(sql))
        rows = nbytes = 0
        for batch in self.cur.fetch_record_batch():
            rows += batch.num_rows
            nbytes += batch.nbytes
        return time.perf_counter() - start, rows, nbytes

    def close(self) -> None:
        for c in (self.cur, self.conn):
            try:
                c.close()
            except Exception:
                pass


class MeshqlFlight(FlightEngine):
    def __init__(self, meshql: str, config: Path, label="meshql-flight", user="admin",
                 env: dict | None = None):
        self.server = MeshqlServer(meshql, config, env=env)
        try:
            super().__init__(label, self.server.uri, user, qualify=True)
        except Exception:
            self.server.close()
            raise

    def close(self) -> None:
        super().close()
        self.server.close()


class MeshqlCluster(FlightEngine):
    """`meshql serve` coordinating `workers` `meshql worker`s on this machine (127.0.0.1, ports 0,
    a fresh random shared secret): the distributed path of docs/cluster.md, over Flight SQL.
    `scan_bytes` overrides `[cluster] scan_bytes_per_partition` (the smoke run's tiny data would
    not be spread over the workers otherwise)."""

    def __init__(self, meshql: str, config: Path, workers: int = 2, scan_bytes: int | None = None,
                 label="meshql-cluster", user="admin"):
        import secrets

        secret = {"MESHQL_CLUSTER_SECRET": secrets.token_hex(24)}
        self.workers: list[MeshqlServer] = []
        self.server = None
        try:
            for _ in range(workers):
                self.workers.append(MeshqlServer(meshql, config, command="worker", env=secret))
            env = {**secret, "MESHQL__CLUSTER__WORKERS": ",".join(w.uri for w in self.workers)}
            if scan_bytes:
                env["MESHQL__CLUSTER__SCAN_BYTES_PER_PARTITION"] = str(scan_bytes)
            self.server = MeshqlServer(meshql, config, env=env)
            super().__init__(label, self.server.uri, user, qualify=True)
        except Exception:
            self.close_processes()
            raise

    def close_processes(self) -> None:
        for p in ([self.server] if self.server else []) + self.workers:
            p.close()

    def close(self) -> None:
        super().close()
        self.close_processes()


class MeshqlInProcess:
    """meshql's engine in-process: the `tpch_inprocess` runner (same catalog, same plans, no
    network), driven over a pipe so that it interleaves with the other engines."""

    def __init__(self, runner: str, config: Path, label="meshql-inproc", user="admin"):
        if not runner or not Path(runner).exists():
            raise EngineUnavailable(f"tpch_inprocess runner not found at {runner!r}")
        self.label, self.user = label, user
        self.tmp = tempfile.mkdtemp(prefix="meshql-inproc-")
        self.stderr: list[str] = []
        self.proc = subprocess.Popen(
            [runner, "--config", str(config), "--target-partitions", str(THREADS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **NO_RESULT_CACHE},
        )
        threading.Thread(target=_drain, args=(self.proc.stderr, self.stderr), daemon=True).start()

    def request(self, sql: str, out: str | None) -> dict:
        self.proc.stdin.write(json.dumps({"sql": sql, "user": self.user, "out": out}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("tpch_inprocess exited: " + "".join(self.stderr[-20:]))
        answer = json.loads(line)
        if not answer.get("ok"):
            raise RuntimeError(answer.get("error", "unknown error"))
        return answer

    def run(self, qid, sql: str, want_answer: bool = True):
        out = os.path.join(self.tmp, f"q{qid}.arrow") if want_answer else None
        answer = self.request(sql, out)
        self.last_plan_seconds = answer.get("plan_seconds")
        table = None
        if out:
            with pa.memory_map(out) as source:
                table = pa.ipc.open_file(source).read_all()
            os.unlink(out)
        return answer["seconds"], table

    def stream(self, sql: str) -> tuple[float, int, int]:
        answer = self.request(sql, None)
        return answer["seconds"], answer["rows"], answer["bytes"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def table_dirs(mesh_root: Path) -> dict[str, Path]:
    return {t: mesh_root / "buckets" / TABLE_DOMAIN[t] / t for t in TABLE_DOMAIN}


class DuckDBEngine:
    label = "duckdb"

    def __init__(self, mesh_root: Path):
        try:
            import duckdb
        except ImportError as e:
            raise EngineUnavailable(f"duckdb is not installed ({e})")
        self.con = duckdb.connect()
        self.con.execute(f"SET threads = {THREADS}")
        for domain in DOMAINS:
            self.con.execute(f"CREATE SCHEMA {domain}")
        for table, d in table_dirs(mesh_root).items():
            self.con.execute(
                f"CREATE VIEW {TABLE_DOMAIN[table]}.{table} AS "
                f"SELECT * FROM read_parquet('{d}/*.parquet')"
            )
        self.version = duckdb.__version__

    def run(self, qid, sql: str, want_answer: bool = True):
        start = time.perf_counter()
        table = self.con.sql(sql).to_arrow_table()
        return time.perf_counter() - start, table

    def close(self) -> None:
        self.con.close()


class DataFusionPython:
    label = "datafusion-python"

    def __init__(self, mesh_root: Path):
        try:
            import datafusion
            from datafusion import SessionConfig, SessionContext
        except ImportError as e:
            raise EngineUnavailable(f"datafusion is not installed ({e})")
        self.ctx = SessionContext(SessionConfig().with_target_partitions(THREADS))
        for table, d in table_dirs(mesh_root).items():
            self.ctx.register_parquet(table, f"{d}/")
        self.version = datafusion.__version__

    def run(self, qid, sql: str, want_answer: bool = True):
        start = time.perf_counter()
        table = self.ctx.sql(unqualified(sql)).to_arrow_table()
        return time.perf_counter() - start, table

    def close(self) -> None:
        pass


class Roapi(FlightEngine):
    """ROAPI serving the same Parquet files over Flight SQL, in-memory table mode off."""

    def __init__(self, mesh_root: Path, workdir: Path):
        binary = shutil.which("roapi") or str(Path(sys.executable).parent / "roapi")
        if not Path(binary).exists():
            raise EngineUnavailable("roapi is not installed (pip install roapi)")
        lines = ["tables:"]
        for table, d in table_dirs(mesh_root).items():
            lines += [
                f"  - name: {table}",
                f"    uri: {d}",
                "    option:",
                "      format: parquet",
                "      use_memory_table: false",
            ]
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "roapi.yml"
        config.write_text("\n".join(lines) + "\n")
        port = free_port()
        self.log: list[str] = []
        self.proc = subprocess.Popen(
            [binary, "-c", str(config), "--addr-flight-sql", f"127.0.0.1:{port}",
             "-a", f"127.0.0.1:{free_port()}", "-p", f"127.0.0.1:{free_port()}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.time() + 60
        ready = False
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.log.append(line)
            if "for FlightSQL traffic" in line:
                ready = True
                break
        if not ready:
            self.close_server()
            raise EngineUnavailable("roapi did not start:\n" + "".join(self.log[-20:]))
        threading.Thread(target=_drain, args=(self.proc.stdout, self.log), daemon=True).start()
        self.version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
        try:
            super().__init__("roapi-flight", f"grpc://127.0.0.1:{port}", None, qualify=False)
        except Exception:
            self.close_server()
            raise

    def close_server(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def close(self) -> None:
        super().close()
        self.close_server()
