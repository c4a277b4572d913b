"""Shared fixtures for the end-to-end tests: a demo mesh and a running `meshql serve`.

The binary comes from $MESHQL_BIN (set by scripts/test.sh), falling back to the default cargo
target directory. One server is started per test session on an ephemeral port; its real port is
read from the single stdout line it prints once it accepts connections.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import pytest

# How long `meshql serve` may take to print its listening line (a cold debug build reading the
# demo mesh is slow on small CI machines).
STARTUP_TIMEOUT_S = 120
# How long the server may take to exit after SIGTERM.
SHUTDOWN_TIMEOUT_S = 10
# How long `meshql demo` may take to generate the demo mesh.
DEMO_TIMEOUT_S = 600
# Client-side deadline for every ADBC RPC, so a hung server fails a test instead of CI.
RPC_TIMEOUT_S = "120"

LISTENING_RE = re.compile(
    r"^meshql listening on (?P<scheme>grpc|grpc\+tls)://(?P<host>\S+):(?P<port>\d+)$"
)
WORKER_LISTENING_RE = re.compile(
    r"^meshql worker listening on (?P<scheme>http)://(?P<host>\S+):(?P<port>\d+)$"
)

# The cluster's shared secret in tests (`[cluster] secret_env` defaults to this variable).
CLUSTER_SECRET_ENV = "MESHQL_CLUSTER_SECRET"
CLUSTER_SECRET = "test-cluster-secret-0123456789abcdef"
HTTP_RE = re.compile(r"^meshql http on (?P<url>http://\S+:(?P<port>\d+))$")

DEFAULT_TARGET_DIR = Path.home() / ".cache" / "meshql-target"


def _tail(text: str, limit: int = 6000) -> str:
    return text if len(text) <= limit else "...\n" + text[-limit:]


@dataclass
class Server:
    """A running `meshql serve` process."""

    uri: str
    host: str
    port: int
    config: Path
    process: subprocess.Popen
    stderr_path: Path
    stdout_lines: List[str] = field(default_factory=list)
    # For a cluster coordinator: the URLs of its workers (empty for a single node).
    workers: List[str] = field(default_factory=list)
    # Set by a test that kills the process on purpose (fault tests).
    killed_on_purpose: bool = False
    # `http://HOST:PORT` when the server was started with HTTP (`--http-bind`, `--demo`).
    http_url: Optional[str] = None

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""


def connect(server: Server, user: str, password: Optional[str] = None) -> flight_sql.Connection:
    """Open an ADBC Flight SQL DB-API connection as `user` (demo password == user name)."""
    timeouts = adbc_driver_flightsql.DatabaseOptions
    return flight_sql.connect(
        server.uri,
        db_kwargs={
            "username": user,
            "password": user if password is None else password,
            timeouts.TIMEOUT_FETCH.value: RPC_TIMEOUT_S,
            timeouts.TIMEOUT_QUERY.value: RPC_TIMEOUT_S,
            timeouts.TIMEOUT_UPDATE.value: RPC_TIMEOUT_S,
        },
        # Flight SQL has no transactions here; asking ADBC to disable autocommit only warns.
        autocommit=True,
    )


@pytest.fixture(scope="session")
def meshql_bin() -> Path:
    configured = os.environ.get("MESHQL_BIN")
    if configured:
        path = Path(configured)
        origin = "$MESHQL_BIN"
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR", DEFAULT_TARGET_DIR))
        path = target / "debug" / "meshql"
        origin = "the default cargo target dir"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"meshql binary not found at {path} (from {origin}). Build it with "
            "`cargo build -p meshql-cli --bin meshql` or run scripts/test.sh.",
            pytrace=False,
        )
    return path.resolve()


def run_demo(meshql_bin: Path, directory: Path) -> subprocess.CompletedProcess:
    """Run `meshql demo --dir DIRECTORY`, failing the test with its output if it fails."""
    try:
        result = subprocess.run(
            [str(meshql_bin), "demo", "--dir", str(directory)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=DEMO_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`meshql demo --dir {directory}` did not finish in {DEMO_TIMEOUT_S}s: {exc}")
    if result.returncode != 0:
        pytest.fail(
            f"`meshql demo --dir {directory}` exited with {result.returncode}\n"
            f"--- stdout ---\n{_tail(result.stdout)}\n--- stderr ---\n{_tail(result.stderr)}",
            pytrace=False,
        )
    return result


@pytest.fixture(scope="session")
def demo_dir(meshql_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("mesh") / "demo-mesh"
    run_demo(meshql_bin, directory)
    config = directory / "meshql.toml"
    if not config.is_file():
        pytest.fail(f"`meshql demo --dir {directory}` succeeded but wrote no {config}")
    return directory


def _pump_lines(stream, sink: "queue.Queue[Optional[str]]") -> None:
    """Forward every line of `stream` to `sink`; None marks end of stream (process exit)."""
    try:
        for line in stream:
            sink.put(line.rstrip("\r\n"))
    finally:
        sink.put(None)


def _wait_for_listening_line(
    process: subprocess.Popen,
    lines: "queue.Queue[Optional[str]]",
    seen: List[str],
    describe_failure: Callable[[str], str],
    pattern: re.Pattern = LISTENING_RE,
) -> re.Match:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            process.kill()
            process.wait()
            pytest.fail(
                describe_failure(f"did not print its listening line within {STARTUP_TIMEOUT_S}s"),
                pytrace=False,
            )
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            code = process.wait()
            pytest.fail(
                describe_failure(f"exited with code {code} before printing its listening line"),
                pytrace=False,
            )
        seen.append(line)
        match = pattern.match(line.strip())
        if match:
            return match


@pytest.fixture(scope="session")
def server(
    meshql_bin: Path, demo_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    config = demo_dir / "meshql.toml"
    args = ["serve", "--config", str(config), "--bind", "127.0.0.1:0"]
    with running_server(meshql_bin, args, config, tmp_path_factory.mktemp("server")) as srv:
        yield srv


@contextlib.contextmanager
def running_server(
    meshql_bin: Path,
    args: List[str],
    config: Path,
    log_dir: Path,
    cwd: Optional[Path] = None,
    env: Optional[dict] = None,
    pattern: re.Pattern = LISTENING_RE,
    log_name: str = "stderr.log",
    http: bool = False,
) -> Iterator[Server]:
    """Runs `meshql ARGS`, waits for its listening line (and with `http`, its HTTP line), and
    stops it with SIGTERM on exit, failing the test if it does not exit cleanly (unless the test
    killed it on purpose)."""
    stderr_path = log_dir / log_name
    command = [str(meshql_bin), *args]
    env = dict(os.environ, RUST_BACKTRACE="1", **(env or {}))

    with open(stderr_path, "w") as stderr_file:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            text=True,
            bufsize=1,
            env=env,
        )

    lines: "queue.Queue[Optional[str]]" = queue.Queue()
    # Keeps draining stdout for the whole session so the server can never block on a full pipe.
    reader = threading.Thread(
        target=_pump_lines, args=(process.stdout, lines), name="meshql-stdout", daemon=True
    )
    reader.start()
    seen: List[str] = []

    def describe_failure(what: str) -> str:
        stderr = stderr_path.read_text(errors="replace") if stderr_path.exists() else ""
        stdout = "\n".join(seen)
        return (
            f"`{' '.join(command)}` {what}\n"
            f"--- stdout ---\n{_tail(stdout)}\n--- stderr ---\n{_tail(stderr)}"
        )

    match = _wait_for_listening_line(process, lines, seen, describe_failure, pattern)
    host, port = match.group("host"), int(match.group("port"))
    if port == 0:
        process.kill()
        process.wait()
        pytest.fail(describe_failure("reported port 0 instead of the real ephemeral port"))

    http_url = None
    if http:
        http_match = _wait_for_listening_line(process, lines, seen, describe_failure, HTTP_RE)
        if http_match.group("port") == "0":
            process.kill()
            process.wait()
            pytest.fail(describe_failure("reported HTTP port 0 instead of the real port"))
        http_url = http_match.group("url")

    srv = Server(
        uri=f"{match.group('scheme')}://{host}:{port}",
        http_url=http_url,
        host=host,
        port=port,
        config=config,
        process=process,
        stderr_path=stderr_path,
        stdout_lines=seen,
    )
    try:
        yield srv
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                pytest.fail(
                    describe_failure(f"did not exit within {SHUTDOWN_TIMEOUT_S}s of SIGTERM"),
                    pytrace=False,
                )
            if process.returncode != 0:
                pytest.fail(
                    describe_failure(f"exited with code {process.returncode} on SIGTERM"),
                    pytrace=False,
                )
        elif not srv.killed_on_purpose:
            pytest.fail(
                describe_failure(f"died during the test session (exit code {process.returncode})"),
                pytrace=False,
            )
        reader.join(timeout=5)


def cluster_env(worker_urls: List[str], probe_interval: str = "1s") -> dict:
    """Environment for a `meshql serve` coordinating `worker_urls` (plus the shared secret). Scans
    are spread over the workers however small the data is, so the demo mesh really distributes."""
    return {
        CLUSTER_SECRET_ENV: CLUSTER_SECRET,
        "MESHQL__CLUSTER__WORKERS": ",".join(worker_urls),
        "MESHQL__CLUSTER__SCAN_BYTES_PER_PARTITION": "1",
        "MESHQL__CLUSTER__PROBE_INTERVAL": probe_interval,
        "MESHQL__CLUSTER__CONNECT_TIMEOUT": "2s",
        # Cluster tests watch queries run on the workers: none may be answered from the
        # coordinator's result cache.
        "MESHQL__ENGINE__RESULT_CACHE_SIZE": "0",
    }


@contextlib.contextmanager
def running_worker(
    meshql_bin: Path, config: Path, log_dir: Path, bind: str = "127.0.0.1:0", name: str = "worker"
) -> Iterator[Server]:
    """Runs `meshql worker` (with the test cluster secret) until the block ends."""
    args = ["worker", "--config", str(config), "--bind", bind]
    with running_server(
        meshql_bin,
        args,
        config,
        log_dir,
        env={CLUSTER_SECRET_ENV: CLUSTER_SECRET},
        pattern=WORKER_LISTENING_RE,
        log_name=f"{name}.log",
    ) as worker:
        yield worker


@contextlib.contextmanager
def running_cluster(
    meshql_bin: Path, config: Path, log_dir: Path, workers: int = 2, env: Optional[dict] = None
) -> Iterator[Server]:
    """`workers` workers and a `meshql serve` coordinating them, all on 127.0.0.1 ports 0.
    Yields the coordinator; its `workers` lists the worker URLs."""
    with contextlib.ExitStack() as stack:
        started = [
            stack.enter_context(running_worker(meshql_bin, config, log_dir, name=f"worker{i}"))
            for i in range(workers)
        ]
        urls = [w.uri for w in started]
        args = ["serve", "--config", str(config), "--bind", "127.0.0.1:0"]
        with running_server(
            meshql_bin, args, config, log_dir, env={**cluster_env(urls), **(env or {})}
        ) as srv:
            srv.workers = urls
            yield srv


@pytest.fixture
def connect_as(server: Server) -> Iterator[Callable[..., flight_sql.Connection]]:
    """Factory fixture: `connect_as(user, password=None)`; connections are closed at teardown."""
    opened: List[flight_sql.Connection] = []

    def _connect(user: str, password: Optional[str] = None) -> flight_sql.Connection:
        conn = connect(server, user, password)
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        try:
            conn.close()
        except Exception:  # closing after a failed test must not mask the real failure
            pass


@pytest.fixture
def admin(connect_as) -> flight_sql.Connection:
    """A fresh ADBC connection as the demo `admin` user."""
    return connect_as("admin")
