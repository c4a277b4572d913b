"""Traces (docs/http.md#traces): with `[telemetry] otlp_endpoint` set, every query exports a
`meshql.query` span with `authenticate`, `plan`, `execute` and `stream` children over OTLP/HTTP.
The receiver is a local http.server on 127.0.0.1 port 0 that decodes the protobuf requests with
opentelemetry-proto."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from conftest import connect, running_server

SPAN_WAIT_S = 60


class Receiver:
    """Collects the spans of every OTLP/HTTP export request."""

    def __init__(self) -> None:
        self.spans: List[dict] = []
        self.paths: List[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with receiver.lock:
                    receiver.paths.append(self.path)
                    for rs in request.resource_spans:
                        service = {a.key: a.value.string_value for a in rs.resource.attributes}.get("service.name")
                        for ss in rs.scope_spans:
                            for s in ss.spans:
                                receiver.spans.append(
                                    {
                                        "name": s.name,
                                        "trace_id": s.trace_id.hex(),
                                        "span_id": s.span_id.hex(),
                                        "parent": s.parent_span_id.hex(),
                                        "service": service,
                                        "attributes": {a.key: _value(a.value) for a in s.attributes},
                                    }
                                )
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, predicate, what: str) -> List[dict]:
        deadline = time.monotonic() + SPAN_WAIT_S
        while time.monotonic() < deadline:
            with self.lock:
                found = [s for s in self.spans if predicate(s)]
            if found:
                return found
            time.sleep(0.2)
        with self.lock:
            names = sorted({s["name"] for s in self.spans})
        pytest.fail(f"no {what} span received within {SPAN_WAIT_S}s (got: {names})")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@pytest.fixture(scope="module")
def traced(meshql_bin: Path, demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    receiver = Receiver()
    mesh = tmp_path_factory.mktemp("telemetry") / "mesh"
    shutil.copytree(demo_dir, mesh, ignore=shutil.ignore_patterns("audit"))
    config = mesh / "meshql.toml"
    config.write_text(config.read_text() + f'\n[telemetry]\notlp_endpoint = "{receiver.url}"\nservice_name = "meshql-test"\n')
    args = ["serve", "--config", str(config), "--bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"]
    try:
        with running_server(meshql_bin, args, config, mesh.parent, http=True) as srv:
            yield srv, receiver
    finally:
        receiver.close()


def _children(receiver: Receiver, root: dict) -> Dict[str, dict]:
    def ready(s: dict) -> bool:
        return s["trace_id"] == root["trace_id"] and s["parent"] == root["span_id"]

    receiver.wait_for(ready, "child")
    deadline = time.monotonic() + SPAN_WAIT_S
    while time.monotonic() < deadline:
        with receiver.lock:
            kids = {s["name"]: s for s in receiver.spans if ready(s)}
        if {"authenticate", "plan", "execute", "stream"} <= set(kids):
            return kids
        time.sleep(0.2)
    return kids


def test_flight_query_spans(traced) -> None:
    srv, receiver = traced
    with connect(srv, "eu_analyst") as conn:
        cur = conn.cursor()
        cur.execute(
            "SELECT c.region, count(*) AS n FROM sales.orders o "
            "JOIN customers.customers c ON o.customer_id = c.customer_id GROUP BY c.region"
        )
        rows = cur.fetch_arrow_table().num_rows
        cur.close()
    roots = receiver.wait_for(
        lambda s: s["name"] == "meshql.query"
        and s["attributes"].get("meshql.transport") == "flight"
        and "sales.orders" in str(s["attributes"].get("meshql.products")),
        "Flight meshql.query",
    )
    root = roots[0]
    attrs = root["attributes"]
    assert set(attrs["meshql.products"].split(",")) == {"sales.orders", "customers.customers"}
    assert attrs["enduser.id"] == "eu_analyst"
    assert attrs["meshql.outcome"] == "ok" and attrs["rpc.grpc.status_code"] == "OK"
    assert attrs["meshql.rows"] == rows
    assert root["service"] == "meshql-test"
    assert root["parent"] == "", "the query span is a root span"
    assert {"authenticate", "plan", "execute", "stream"} <= set(_children(receiver, root))
    assert all(p == "/v1/traces" for p in receiver.paths)


def test_http_query_spans_and_failures(traced) -> None:
    srv, receiver = traced
    login = urllib.request.Request(
        srv.http_url + "/api/v1/login",
        data=json.dumps({"user": "admin", "password": "admin"}).encode(),
        headers={"content-type": "application/json"},
    )
    token = json.load(urllib.request.urlopen(login, timeout=60))["token"]

    def query(sql: str) -> None:
        req = urllib.request.Request(
            srv.http_url + "/api/v1/query",
            data=json.dumps({"sql": sql}).encode(),
            headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
        )
        try:
            urllib.request.urlopen(req, timeout=60).read()
        except urllib.error.HTTPError as e:
            e.read()

    query("SELECT count(*) FROM inventory.stock")
    query("SELECT no_such_column FROM shipping.shipments")
    ok = receiver.wait_for(
        lambda s: s["name"] == "meshql.query"
        and s["attributes"].get("meshql.transport") == "http"
        and s["attributes"].get("meshql.products") == "inventory.stock",
        "HTTP meshql.query",
    )[0]
    assert ok["attributes"]["meshql.outcome"] == "ok"
    assert {"authenticate", "plan", "execute", "stream"} <= set(_children(receiver, ok))
    failed = receiver.wait_for(
        lambda s: s["name"] == "meshql.query"
        and s["attributes"].get("meshql.transport") == "http"
        and s["attributes"].get("meshql.outcome") == "error",
        "failed HTTP meshql.query",
    )[0]
    assert failed["attributes"]["rpc.grpc.status_code"] == "INVALID_ARGUMENT"
    for s in receiver.spans:
        assert "no_such_column" not in json.dumps(s["attributes"]), "SQL text is not a span attribute"


def test_rust_log_chooses_what_is_logged(meshql_bin: Path, demo_dir: Path, tmp_path: Path) -> None:
    """docs/http.md#logs: `RUST_LOG` filters the logs; a value that is not a filter is reported
    at start, the default is used, and the server serves."""
    mesh = tmp_path / "mesh"
    shutil.copytree(demo_dir, mesh, ignore=shutil.ignore_patterns("audit"))
    config = mesh / "meshql.toml"
    args = ["serve", "--config", str(config), "--bind", "127.0.0.1:0"]

    def run(rust_log: str) -> str:
        log_name = f"stderr-{len(rust_log)}.log"
        with running_server(
            meshql_bin, args, config, tmp_path, env={"RUST_LOG": rust_log}, log_name=log_name
        ) as srv:
            with connect(srv, "admin") as conn:
                cur = conn.cursor()
                cur.execute("SELECT count(*) AS n FROM customers.customers")
                assert cur.fetch_arrow_table().column("n").to_pylist()[0] > 0
                cur.close()
            return srv.stderr()

    bad = run("meshql_engine=loud")
    assert 'warning: RUST_LOG="meshql_engine=loud" is not a log filter' in bad, bad
    # The default filter: meshql's own info lines.
    assert "serving the mesh" in bad, bad

    quiet = run("warn")
    assert "not a log filter" not in quiet, quiet
    assert "serving the mesh" not in quiet, quiet
