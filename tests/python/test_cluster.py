"""Distributed execution (SPEC §12) with real processes: `meshql worker`s and a coordinating
`meshql serve` on 127.0.0.1 ports 0, queried over ADBC.

The security suite runs in cluster mode too (test_security.py); this file covers what only a
cluster has: start-up checks, a worker dying mid-query, the remaining worker taking over, a
worker coming back, and the audit record naming the workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import List, Optional

import pytest

from conftest import (
    CLUSTER_SECRET,
    CLUSTER_SECRET_ENV,
    cluster_env,
    connect,
    running_server,
    running_worker,
)

# A distributed query that keeps both workers busy for a while in a debug build: a three-way
# self-join of the order lines on their SKU (millions of joined rows, one count).
LONG_QUERY = (
    "SELECT count(*) AS n FROM sales.order_items a "
    "JOIN sales.order_items b ON a.sku = b.sku "
    "JOIN sales.order_items c ON b.sku = c.sku "
    "JOIN sales.order_items d ON c.sku = d.sku"
)
# A short distributed query with a known answer, tagged so its audit record can be found.
SHORT_QUERY = (
    "SELECT '{tag}' AS tag, sku, sum(quantity) AS q FROM sales.order_items GROUP BY sku ORDER BY sku"
)
# How long a query may take to fail once its worker is gone: far above the detection time
# (a killed worker breaks its connections at once), far below a hang.
FAIL_WITHIN_S = 60


@pytest.fixture
def mesh(demo_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "mesh"
    shutil.copytree(demo_dir, root, ignore=shutil.ignore_patterns("audit"))
    return root


def meshql(meshql_bin: Path, args: List[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != CLUSTER_SECRET_ENV and not k.startswith("MESHQL__CLUSTER")}
    return subprocess.run(
        [str(meshql_bin), *args],
        env={**clean, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_worker_and_coordinator_refuse_to_start_without_a_good_secret(meshql_bin: Path, mesh: Path) -> None:
    config = str(mesh / "meshql.toml")
    worker = ["worker", "--config", config, "--bind", "127.0.0.1:0"]
    for env, expected in [
        ({}, CLUSTER_SECRET_ENV),
        ({CLUSTER_SECRET_ENV: "short"}, "at least 16"),
    ]:
        r = meshql(meshql_bin, worker, env)
        assert r.returncode != 0
        assert "listening" not in r.stdout, r.stdout
        assert expected in r.stderr, r.stderr
        assert "short" not in r.stderr.replace("at least", ""), "the secret is never echoed"
    serve = ["serve", "--config", config, "--bind", "127.0.0.1:0"]
    r = meshql(meshql_bin, serve, {"MESHQL__CLUSTER__WORKERS": "http://127.0.0.1:9"})
    assert r.returncode != 0 and "listening" not in r.stdout
    assert CLUSTER_SECRET_ENV in r.stderr, r.stderr
    r = meshql(
        meshql_bin,
        serve,
        {CLUSTER_SECRET_ENV: CLUSTER_SECRET, "MESHQL__CLUSTER__WORKERS": "grpc://127.0.0.1:9"},
    )
    assert r.returncode != 0 and "cluster.workers[0]" in r.stderr, r.stderr


def audit_records(mesh: Path) -> List[dict]:
    path = mesh / "audit" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def records_with(mesh: Path, tag: str, within_s: float = 10) -> List[dict]:
    """The audit records whose SQL contains `tag`, waiting (bounded) for at least one: the server
    writes its audit file in the background, shortly after the query."""
    deadline = time.monotonic() + within_s
    while True:
        found = [r for r in audit_records(mesh) if tag in (r.get("sql") or "")]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def workers_of(mesh: Path, tag: str) -> List[List[str]]:
    """The workers of each run of SHORT_QUERY tagged `tag`."""
    return [r.get("workers", []) for r in records_with(mesh, f"'{tag}'")]


def short(conn, tag: str) -> list:
    cur = conn.cursor()
    try:
        cur.execute(SHORT_QUERY.format(tag=tag))
        return cur.fetch_arrow_table().drop_columns(["tag"]).to_pylist()
    finally:
        cur.close()


def test_a_lost_worker_fails_its_query_and_the_cluster_carries_on(meshql_bin: Path, mesh: Path) -> None:
    # Three workers: after losing one, two remain (with a single worker left, datafusion-distributed
    # keeps queries on the coordinator: a one-task stage is not worth a network hop).
    config = mesh / "meshql.toml"
    with contextlib.ExitStack() as stack:
        w0, w2, w1 = (
            stack.enter_context(running_worker(meshql_bin, config, mesh.parent, name=f"w{i}"))
            for i in range(3)
        )
        args = ["serve", "--config", str(config), "--bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"]
        srv = stack.enter_context(
            running_server(
                meshql_bin, args, config, mesh.parent, env=cluster_env([w0.uri, w1.uri, w2.uri]),
                http=True,
            )
        )
        conn = stack.enter_context(contextlib.closing(connect(srv, "admin")))

        expected = short(conn, "before")
        assert expected
        assert sorted(workers_of(mesh, "before")[-1]) == sorted([w0.uri, w1.uri, w2.uri])

        # 1. A worker dies mid-query: that query fails with UNAVAILABLE naming it, promptly.
        outcome: dict = {}

        def long_query() -> None:
            cur = conn.cursor()
            try:
                cur.execute(LONG_QUERY)
                outcome["rows"] = cur.fetch_arrow_table().to_pylist()
            except Exception as e:  # the error is the point
                outcome["error"] = str(e)
            finally:
                cur.close()

        sent = fragments_sent(srv, w1)
        thread = threading.Thread(target=long_query, daemon=True)
        thread.start()
        # Kill w1 once the query has reached it: the coordinator counts fragments sent to it.
        wait_for_fragments(srv, w1, sent)
        assert thread.is_alive(), f"LONG_QUERY finished too early to test a mid-query failure: {outcome}"
        w1.killed_on_purpose = True
        w1.process.send_signal(signal.SIGKILL)
        w1.process.wait(timeout=10)
        thread.join(timeout=FAIL_WITHIN_S)
        assert not thread.is_alive(), f"the query did not end within {FAIL_WITHIN_S}s of its worker dying"
        assert "error" in outcome, f"a query whose worker died returned a result: {outcome}"
        message = outcome["error"]
        assert "unavailable" in message.lower(), message
        assert w1.uri in message, message
        failed = [r for r in records_with(mesh, LONG_QUERY) if r.get("sql") == LONG_QUERY]
        assert failed and failed[-1]["outcome"] == "error" and failed[-1]["rows"] == 0, failed

        # 2. The next query runs on the remaining workers, with the full answer.
        assert short(conn, "after-kill") == expected
        assert sorted(workers_of(mesh, "after-kill")[-1]) == sorted([w0.uri, w2.uri])

        # 3. The worker comes back at the same address and is used again (health checks run
        #    every second here; bounded wait).
        port = w1.uri.rsplit(":", 1)[1]
        stack.enter_context(
            running_worker(meshql_bin, config, mesh.parent, bind=f"127.0.0.1:{port}", name="w1-again")
        )
        deadline = time.monotonic() + 30
        used: List[str] = []
        attempt = 0
        while time.monotonic() < deadline:
            attempt += 1
            tag = f"back-{attempt}"
            assert short(conn, tag) == expected
            used = workers_of(mesh, tag)[-1]
            if w1.uri in used:
                break
            time.sleep(0.5)
        assert w1.uri in used, f"the restarted worker was not used again: {used}"


def test_a_hung_worker_fails_its_query_instead_of_hanging(meshql_bin: Path, mesh: Path) -> None:
    """A worker that stops answering without closing its connections (SIGSTOP: a frozen VM, a
    partition) is detected by HTTP/2 keep-alive (probe_interval + 20 s), then named by a health
    check (connect_timeout, 2s here)."""
    config = mesh / "meshql.toml"
    with contextlib.ExitStack() as stack:
        w0, w1 = (
            stack.enter_context(running_worker(meshql_bin, config, mesh.parent, name=f"h{i}"))
            for i in range(2)
        )
        args = ["serve", "--config", str(config), "--bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"]
        srv = stack.enter_context(
            running_server(
                meshql_bin, args, config, mesh.parent, env=cluster_env([w0.uri, w1.uri]), http=True
            )
        )
        conn = stack.enter_context(contextlib.closing(connect(srv, "admin")))
        outcome: dict = {}

        def long_query() -> None:
            cur = conn.cursor()
            try:
                cur.execute(LONG_QUERY)
                outcome["rows"] = cur.fetch_arrow_table().to_pylist()
            except Exception as e:  # the error is the point
                outcome["error"] = str(e)
            finally:
                cur.close()

        sent = fragments_sent(srv, w1)
        thread = threading.Thread(target=long_query, daemon=True)
        thread.start()
        wait_for_fragments(srv, w1, sent)
        assert thread.is_alive(), f"LONG_QUERY finished too early: {outcome}"
        w1.killed_on_purpose = True
        w1.process.send_signal(signal.SIGSTOP)
        try:
            thread.join(timeout=FAIL_WITHIN_S)
            assert not thread.is_alive(), f"the query hung on a frozen worker for {FAIL_WITHIN_S}s"
        finally:
            w1.process.send_signal(signal.SIGKILL)
            w1.process.wait(timeout=10)
        assert "error" in outcome, f"a query whose worker froze returned a result: {outcome}"
        assert "unavailable" in outcome["error"].lower() and w1.uri in outcome["error"], outcome


def scrape(http_url: str) -> dict:
    """`GET /metrics` as {(name, worker label): value} for the meshql_worker_* series."""
    import re
    import urllib.request

    with urllib.request.urlopen(f"{http_url}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for m in re.finditer(r'^(meshql_worker_\w+)\{worker="([^"]+)"\} (\S+)$', text, re.M):
        out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def fragments_sent(srv, worker) -> float:
    """Plan fragments the coordinator has sent to `worker` so far."""
    return scrape(srv.http_url).get(("meshql_worker_fragments_total", worker.uri), 0.0)


def wait_for_fragments(srv, worker, before: float, timeout: float = 30.0) -> None:
    """Waits (bounded) until the coordinator has sent `worker` a fragment beyond `before`."""
    deadline = time.monotonic() + timeout
    while fragments_sent(srv, worker) <= before:
        assert time.monotonic() < deadline, f"no fragment reached {worker.uri} in {timeout}s"
        time.sleep(0.05)


def test_per_worker_metrics_move_with_distributed_queries(meshql_bin: Path, mesh: Path) -> None:
    config = mesh / "meshql.toml"
    with contextlib.ExitStack() as stack:
        w0, w1 = (
            stack.enter_context(running_worker(meshql_bin, config, mesh.parent, name=f"m{i}"))
            for i in range(2)
        )
        args = ["serve", "--config", str(config), "--bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"]
        srv = stack.enter_context(
            running_server(
                meshql_bin, args, config, mesh.parent, env=cluster_env([w0.uri, w1.uri]), http=True
            )
        )
        conn = stack.enter_context(contextlib.closing(connect(srv, "admin")))
        # Workers are health-checked every second: both report up (bounded wait).
        deadline = time.monotonic() + 20
        before = scrape(srv.http_url)
        while time.monotonic() < deadline and not all(
            before.get(("meshql_worker_up", w.uri)) == 1 for w in (w0, w1)
        ):
            time.sleep(0.5)
            before = scrape(srv.http_url)
        for w in (w0, w1):
            assert before.get(("meshql_worker_up", w.uri)) == 1, before

        assert short(conn, "metrics")
        assert sorted(workers_of(mesh, "metrics")[-1]) == sorted([w0.uri, w1.uri])
        after = scrape(srv.http_url)
        for w in (w0, w1):
            for name in ("meshql_worker_fragments_total", "meshql_worker_rows_total", "meshql_worker_bytes_total"):
                assert after.get((name, w.uri), 0) > before.get((name, w.uri), 0), (name, w.uri, before, after)
            assert after.get(("meshql_worker_errors_total", w.uri), 0) == 0, after

        # A worker that goes away is reported down by the next health check.
        w1.killed_on_purpose = True
        w1.process.send_signal(signal.SIGKILL)
        w1.process.wait(timeout=10)
        deadline = time.monotonic() + 20
        now = scrape(srv.http_url)
        while time.monotonic() < deadline and now.get(("meshql_worker_up", w1.uri)) != 0:
            time.sleep(0.5)
            now = scrape(srv.http_url)
        assert now.get(("meshql_worker_up", w1.uri)) == 0, now
        assert now.get(("meshql_worker_up", w0.uri)) == 1, now
