"""Domain buckets on a real S3-compatible server (moto, in this process, on 127.0.0.1 with a free
port): one bucket per domain, the demo mesh uploaded, queried through Flight SQL with ADBC.

Also: one domain's storage being down does not stop the rest of the mesh, and the planted
secret access key appears in no RPC answer, error, log line, system table or audit record.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict

import boto3
import pytest
from moto.server import ThreadedMotoServer

from conftest import connect, running_server

KEY_VAR = "MESHQL_TEST_S3_ACCESS_KEY_ID"
SECRET_VAR = "MESHQL_TEST_S3_SECRET_ACCESS_KEY"
PLANTED_SECRET = "PLANTED-SECRET-7d1f0c9e2b"
DOMAINS = ["sales", "customers", "shipping", "inventory", "marketing"]

JOIN = """
    SELECT c.region, s.carrier, count(*) AS n, sum(o.total_amount) AS revenue
    FROM sales.orders o
    JOIN customers.customers c ON o.customer_id = c.customer_id
    JOIN shipping.shipments s ON s.order_id = o.order_id
    GROUP BY c.region, s.carrier ORDER BY c.region, s.carrier
"""


@pytest.fixture(scope="module")
def moto_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._server.server_port}"
    finally:
        # Stopped also when tests fail.
        server.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s3_config(demo_dir: Path, target: Path, endpoints: Dict[str, str]) -> Path:
    """A copy of the demo mesh's catalog whose domains live in S3 buckets `meshql-<domain>`."""
    shutil.copytree(demo_dir / "catalog", target / "catalog")
    text = (demo_dir / "meshql.toml").read_text()
    for domain in DOMAINS:
        storage = (
            f'storage = {{ endpoint = "{endpoints[domain]}", region = "us-east-1", allow_http = "true", '
            'virtual_hosted_style_request = "false", timeout = "5s", connect_timeout = "2s", '
            'max_retries = "1", retry_timeout = "5s" }\n'
            f'credentials_env = {{ access_key_id = "{KEY_VAR}", secret_access_key = "{SECRET_VAR}" }}'
        )
        text = text.replace(f'bucket = "buckets/{domain}"', f'bucket = "s3://meshql-{domain}/"\n{storage}')
    text = text.replace('file = "audit/audit.jsonl"', f'file = "{target / "audit.jsonl"}"')
    config = target / "meshql.toml"
    config.write_text(text)
    return config


@pytest.fixture(scope="module")
def uploaded(moto_endpoint: str, demo_dir: Path) -> str:
    os.environ[KEY_VAR] = "testing"
    os.environ[SECRET_VAR] = PLANTED_SECRET
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key=PLANTED_SECRET,
        region_name="us-east-1",
    )
    for domain in DOMAINS:
        bucket = f"meshql-{domain}"
        s3.create_bucket(Bucket=bucket)
        root = demo_dir / "buckets" / domain
        for path in root.rglob("*"):
            if path.is_file():
                s3.upload_file(str(path), bucket, path.relative_to(root).as_posix())
    return moto_endpoint


@pytest.fixture(scope="module")
def s3_server(meshql_bin: Path, demo_dir: Path, uploaded: str, tmp_path_factory: pytest.TempPathFactory):
    target = tmp_path_factory.mktemp("s3mesh")
    config = s3_config(demo_dir, target, {d: uploaded for d in DOMAINS})
    args = ["serve", "--config", str(config), "--bind", "127.0.0.1:0"]
    with running_server(meshql_bin, args, config, target) as srv:
        yield srv, target


def rows(conn, sql: str):
    cur = conn.cursor()
    try:
        cur.execute(sql)
        return cur.fetch_arrow_table().to_pylist()
    finally:
        cur.close()


def test_cross_domain_join_on_s3_equals_local(s3_server, server) -> None:
    srv, _ = s3_server
    with connect(srv, "admin") as remote, connect(server, "admin") as local:
        got = rows(remote, JOIN)
        want = rows(local, JOIN)
        assert got and got == want
        # Parquet products (several files) and row-level policies behave the same on S3.
        assert rows(remote, "SELECT count(*) AS n, sum(quantity) AS q FROM sales.order_items") == rows(
            local, "SELECT count(*) AS n, sum(quantity) AS q FROM sales.order_items"
        )
    with connect(srv, "eu_analyst") as eu:
        assert {r["region"] for r in rows(eu, "SELECT DISTINCT region FROM customers.customers")} == {"EU"}


def test_time_travel_on_s3(s3_server) -> None:
    srv, _ = s3_server
    with connect(srv, "admin") as conn:
        v0 = rows(conn, "SELECT count(*) AS n FROM sales.orders VERSION AS OF 0")[0]["n"]
        now = rows(conn, "SELECT count(*) AS n FROM sales.orders")[0]["n"]
    assert v0 < now
    with connect(srv, "eu_analyst") as eu:
        assert {r["region"] for r in rows(eu, "SELECT DISTINCT region FROM sales.orders VERSION AS OF 0")} == {"EU"}


@pytest.fixture(scope="module")
def degraded_server(meshql_bin: Path, demo_dir: Path, uploaded: str, tmp_path_factory: pytest.TempPathFactory):
    """Every domain on moto except inventory, whose endpoint is a closed port."""
    target = tmp_path_factory.mktemp("degraded")
    endpoints = {d: uploaded for d in DOMAINS}
    endpoints["inventory"] = f"http://127.0.0.1:{closed_port()}"
    config = s3_config(demo_dir, target, endpoints)
    args = ["serve", "--config", str(config), "--bind", "127.0.0.1:0"]
    with running_server(meshql_bin, args, config, target) as srv:
        yield srv


class FailingS3(BaseHTTPRequestHandler):
    """An S3 endpoint that answers every request with one error status."""

    status = 500
    body = b"<Error><Code>InternalError</Code><Message>boom</Message></Error>"

    def _fail(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(self.body)

    do_GET = do_HEAD = do_PUT = do_POST = _fail

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


def failing_endpoint(status: int, code: str):
    handler = type(f"Failing{status}", (FailingS3,), {"status": status, "body": f"<Error><Code>{code}</Code><Message>refused</Message></Error>".encode()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


@pytest.mark.parametrize("status,code", [(403, "InvalidAccessKeyId"), (503, "SlowDown"), (500, "InternalError")])
def test_bad_credentials_and_5xx_fail_only_their_domain(
    meshql_bin: Path, demo_dir: Path, uploaded: str, tmp_path: Path, status: int, code: str
) -> None:
    stub = failing_endpoint(status, code)
    try:
        endpoints = {d: uploaded for d in DOMAINS}
        endpoints["inventory"] = f"http://127.0.0.1:{stub.server_address[1]}"
        config = s3_config(demo_dir, tmp_path, endpoints)
        args = ["serve", "--config", str(config), "--bind", "127.0.0.1:0"]
        with running_server(meshql_bin, args, config, tmp_path) as srv:
            with connect(srv, "admin") as conn:
                with pytest.raises(Exception) as info:
                    rows(conn, "SELECT count(*) FROM inventory.stock")
                assert "inventory.stock" in str(info.value), info.value
                assert rows(conn, "SELECT count(*) AS n FROM sales.order_items")[0]["n"] > 0
            assert PLANTED_SECRET not in srv.stderr()
    finally:
        stub.shutdown()


def test_one_domain_down_does_not_stop_the_mesh(degraded_server) -> None:
    srv = degraded_server
    with connect(srv, "admin") as conn:
        # The client's RPC timeout (conftest) bounds the wait; the server must answer first,
        # with an error that names the product.
        with pytest.raises(Exception) as info:
            rows(conn, "SELECT * FROM inventory.stock")
        assert "inventory.stock" in str(info.value), info.value
        # Other domains answer meanwhile.
        assert rows(conn, "SELECT count(*) AS n FROM customers.customers")[0]["n"] == 1000
        # Metadata comes from the catalog, not from storage.
        objects = conn.adbc_get_objects(depth="tables", db_schema_filter="inventory").read_all().to_pylist()
        tables = [t["table_name"] for c in objects for s in c["catalog_db_schemas"] or [] for t in s["db_schema_tables"] or []]
        assert tables == ["stock"]


def test_credentials_never_leak(s3_server, degraded_server) -> None:
    srv, target = s3_server
    seen = []
    with connect(srv, "admin") as conn:
        seen.append(json.dumps(rows(conn, "SELECT * FROM meshql.domains"), default=str))
        seen.append(json.dumps(rows(conn, "SELECT * FROM meshql.products"), default=str))
        seen.append(json.dumps(rows(conn, "SELECT * FROM meshql.audit"), default=str))
        for bad in ["SELECT * FROM sales.orders VERSION AS OF 999", "SELECT nope FROM sales.orders"]:
            with pytest.raises(Exception) as info:
                rows(conn, bad)
            seen.append(str(info.value))
    with connect(degraded_server, "admin") as conn:
        with pytest.raises(Exception) as info:
            rows(conn, "SELECT * FROM inventory.stock")
        seen.append(str(info.value))
    seen.append(srv.stderr())
    seen.append(degraded_server.stderr())
    seen.append((target / "audit.jsonl").read_text())
    for text in seen:
        assert PLANTED_SECRET not in text
    assert any("meshql-sales" in t for t in seen), "the system table lists the buckets"
