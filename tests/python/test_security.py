"""The security suite (SPEC §6/§7) through a real client: ADBC Flight SQL.

One server with its own copy of the demo mesh and a JWT configuration; every statement the
suite sends goes through `run`, which remembers it, and the last test checks that the audit
file recorded each of them.

The suite runs twice: against a single node, and against a cluster (a coordinator and two
workers, SPEC §12) where the same rules must hold while plans run on the workers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pytest

from conftest import RPC_TIMEOUT_S, Server, connect, running_cluster, running_server

JWT_SECRET = "security-suite-hs256-secret-0123456789abcdef"
JWT_ENV = "MESHQL_SECURITY_SUITE_JWT_SECRET"

ALL = [
    "customers.customers",
    "inventory.stock",
    "marketing.leads",
    "sales.order_items",
    "sales.orders",
    "shipping.delivery_performance",
    "shipping.shipments",
]
VISIBLE: Dict[str, List[str]] = {
    "admin": ALL,
    "sales_analyst": ["customers.customers", "sales.order_items", "sales.orders", "shipping.shipments"],
    "eu_analyst": ["customers.customers", "sales.orders"],
    "shipping_ds": ["sales.order_items", "sales.orders", "shipping.delivery_performance", "shipping.shipments"],
    "guest": [],
}

SENT: List[str] = []


@pytest.fixture(scope="module", params=["single", "cluster"])
def secure_server(
    request, meshql_bin: Path, demo_dir: Path, tmp_path_factory: pytest.TempPathFactory
):
    SENT.clear()
    mesh = tmp_path_factory.mktemp(f"security-{request.param}") / "mesh"
    shutil.copytree(demo_dir, mesh, ignore=shutil.ignore_patterns("audit"))
    config = mesh / "meshql.toml"
    config.write_text(
        config.read_text()
        + f'\n[auth.jwt]\nhs256_secret_env = "{JWT_ENV}"\naudiences = ["meshql"]\n'
        + 'issuers = ["https://idp.test"]\nattribute_claims = { region = "region" }\n'
    )
    os.environ[JWT_ENV] = JWT_SECRET
    if request.param == "cluster":
        with running_cluster(meshql_bin, config, mesh.parent) as srv:
            yield srv, mesh / "audit" / "audit.jsonl"
    else:
        args = ["serve", "--config", str(config), "--bind", "127.0.0.1:0"]
        with running_server(meshql_bin, args, config, mesh.parent) as srv:
            yield srv, mesh / "audit" / "audit.jsonl"


def run(conn: flight_sql.Connection, sql: str, params: Optional[list] = None) -> pa.Table:
    SENT.append(sql)
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        return cur.fetch_arrow_table()
    finally:
        cur.close()


def error_of(conn: flight_sql.Connection, sql: str) -> str:
    with pytest.raises(Exception) as info:
        run(conn, sql)
    return str(info.value)


def objects(conn: flight_sql.Connection) -> List[str]:
    data = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    out = []
    for catalog in data:
        for schema in catalog["catalog_db_schemas"] or []:
            if schema["db_schema_name"] in ("meshql", "information_schema"):
                continue
            for table in schema["db_schema_tables"] or []:
                out.append(f'{schema["db_schema_name"]}.{table["table_name"]}')
    return sorted(out)


@pytest.mark.parametrize("user", sorted(VISIBLE))
def test_each_principal_sees_exactly_its_products(secure_server, user: str) -> None:
    srv, _ = secure_server
    with connect(srv, user) as conn:
        assert objects(conn) == VISIBLE[user]
        listed = run(conn, "SELECT domain || '.' || name AS p FROM meshql.products ORDER BY p").column("p").to_pylist()
        assert listed == VISIBLE[user]
        info = run(
            conn,
            "SELECT table_schema || '.' || table_name AS p FROM information_schema.tables "
            "WHERE table_schema NOT IN ('information_schema', 'meshql') ORDER BY p",
        ).column("p").to_pylist()
        assert info == VISIBLE[user]


def test_hidden_and_missing_products_are_indistinguishable(secure_server) -> None:
    srv, _ = secure_server
    with connect(srv, "guest") as conn:
        hidden = error_of(conn, "SELECT * FROM sales.orders")
        missing = error_of(conn, "SELECT * FROM sales.no_such_thing")
    assert hidden.replace("orders", "X") == missing.replace("no_such_thing", "X")


def test_row_filter_is_not_answered_from_file_statistics(secure_server) -> None:
    srv, _ = secure_server
    with connect(srv, "admin") as admin, connect(srv, "eu_analyst") as eu:
        expected = run(admin, "SELECT count(*) AS n FROM customers.customers WHERE region = 'EU'").column("n")[0].as_py()
        total = run(admin, "SELECT count(*) AS n FROM customers.customers").column("n")[0].as_py()
        got = run(eu, "SELECT count(*) AS n FROM customers.customers").column("n")[0].as_py()
    assert 0 < expected < total
    assert got == expected


def test_policy_filter_runs_before_user_predicates(secure_server) -> None:
    srv, _ = secure_server
    with connect(srv, "eu_analyst") as eu:
        t = run(
            eu,
            "SELECT region FROM customers.customers "
            "WHERE 1 / (CASE WHEN region = 'EU' THEN 1 ELSE 0 END) = 1",
        )
    assert t.num_rows > 0 and set(t.column("region").to_pylist()) == {"EU"}


def test_masks_are_applied_at_the_table_reference(secure_server) -> None:
    srv, _ = secure_server
    with connect(srv, "admin") as admin, connect(srv, "sales_analyst") as sales:
        real = run(admin, "SELECT email FROM customers.customers ORDER BY customer_id LIMIT 1").column("email")[0].as_py()
        assert "@" in real
        masked = run(sales, "SELECT email FROM customers.customers LIMIT 10")
        assert masked.schema.field("email").type == pa.string()
        assert set(masked.column("email").to_pylist()) == {"***"}
        assert run(sales, f"SELECT count(*) AS n FROM customers.customers WHERE email = '{real}'").column("n")[0].as_py() == 0
        # The same through a bound parameter.
        assert run(sales, "SELECT count(*) AS n FROM customers.customers WHERE email = ?", [real]).column("n")[0].as_py() == 0
        groups = run(sales, "SELECT email, count(*) AS n FROM customers.customers GROUP BY email")
        assert groups.column("email").to_pylist() == ["***"]


def test_metadata_schemas_hide_denied_columns_and_keep_masked_types(secure_server) -> None:
    srv, _ = secure_server
    with connect(srv, "sales_analyst") as sales:
        schema = sales.adbc_get_table_schema("customers", db_schema_filter="customers")
    assert schema.field("email").type == pa.string()
    with connect(srv, "guest") as guest:
        with pytest.raises(Exception):
            guest.adbc_get_table_schema("customers", db_schema_filter="customers")


@pytest.mark.parametrize("statement", ["EXPLAIN", "EXPLAIN ANALYZE", "EXPLAIN VERBOSE"])
def test_explain_hides_policies(secure_server, statement: str) -> None:
    srv, _ = secure_server
    with connect(srv, "eu_analyst") as eu:
        t = run(eu, f"{statement} SELECT name, email FROM customers.customers WHERE tier = 'gold'")
    text = "\n".join(str(v) for col in t.columns for v in col.to_pylist())
    assert "customers" in text
    for secret in ("'EU'", '"EU"', "EU)", "***", "region ="):
        assert secret not in text, f"{statement} reveals {secret}:\n{text}"


@pytest.mark.parametrize("user", ["admin", "sales_analyst", "guest"])
@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE t (a INT)",
        "INSERT INTO sales.orders SELECT * FROM sales.orders",
        "COPY (SELECT 1) TO '/tmp/meshql-security-copy.csv'",
        "SET datafusion.execution.batch_size = 1",
        "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc'",
        "SELECT * FROM '/etc/passwd'",
    ],
)
def test_read_only_for_everyone(secure_server, user: str, sql: str) -> None:
    srv, _ = secure_server
    with connect(srv, user) as conn:
        message = error_of(conn, sql)
    assert "read-only" in message or "not found" in message, message
    assert not Path("/tmp/meshql-security-copy.csv").exists()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: dict, secret: str = JWT_SECRET) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def connect_with_token(srv: Server, token: str) -> flight_sql.Connection:
    return flight_sql.connect(
        srv.uri,
        db_kwargs={
            adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}",
            adbc_driver_flightsql.DatabaseOptions.TIMEOUT_QUERY.value: RPC_TIMEOUT_S,
        },
        autocommit=True,
    )


def claims(**overrides) -> dict:
    base = {
        "sub": "jwt_analyst",
        "groups": ["regional_analysts"],
        "region": "EU",
        "aud": "meshql",
        "iss": "https://idp.test",
        "exp": int(time.time()) + 600,
    }
    base.update(overrides)
    return base


def test_jwt_principal_gets_its_policies(secure_server) -> None:
    srv, _ = secure_server
    with connect_with_token(srv, make_jwt(claims())) as conn:
        regions = run(conn, "SELECT DISTINCT region FROM customers.customers").column("region").to_pylist()
        assert regions == ["EU"]
        assert objects(conn) == ["customers.customers", "sales.orders"]


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(make_jwt(claims(exp=int(time.time()) - 3600)), id="expired"),
        pytest.param(make_jwt(claims(), secret="a-different-secret-of-sufficient-length"), id="wrong-key"),
        pytest.param(make_jwt(claims(aud="another-service")), id="wrong-audience"),
        pytest.param(make_jwt(claims(nbf=int(time.time()) + 3600)), id="not-yet-valid"),
        pytest.param("not-a-token", id="garbage"),
    ],
)
def test_bad_tokens_are_unauthenticated(secure_server, token: str) -> None:
    srv, _ = secure_server
    with pytest.raises(Exception) as info:
        with connect_with_token(srv, token) as conn:
            run(conn, "SELECT 1")
    assert "unauthenticated" in str(info.value).lower(), info.value


def test_jwt_not_yet_valid_says_so(secure_server) -> None:
    srv, _ = secure_server
    with pytest.raises(Exception) as info:
        with connect_with_token(srv, make_jwt(claims(nbf=int(time.time()) + 3600))) as conn:
            run(conn, "SELECT 1")
    assert "not yet valid" in str(info.value), info.value


@pytest.mark.parametrize("user", sorted(VISIBLE))
def test_jwt_subject_naming_a_local_user_is_another_principal(secure_server, user: str) -> None:
    """A token with `sub = <local user>` is `jwt:<user>`: none of the user's access, none of
    its audit records (docs/access.md, "JWT principals")."""
    srv, _ = secure_server
    marker = f"SELECT 'audit marker of {user}' AS m"
    with connect(srv, user) as local:
        run(local, marker)
        own = run(local, 'SELECT "user", sql FROM meshql.audit').to_pylist()
        assert {"user": user, "sql": marker} in own
    token = make_jwt(claims(sub=user, groups=[], region=None))
    with connect_with_token(srv, token) as conn:
        assert objects(conn) == []
        run(conn, "SELECT 1 AS one")
        seen = run(conn, 'SELECT "user", sql FROM meshql.audit').to_pylist()
    assert seen, "its own records are visible"
    assert {r["user"] for r in seen} == {f"jwt:{user}"}, seen
    assert marker not in {r["sql"] for r in seen}


def test_zz_audit_file_recorded_every_query_of_the_suite(secure_server) -> None:
    srv, audit_file = secure_server
    records = [json.loads(line) for line in audit_file.read_text().splitlines()]
    recorded = {r.get("sql") for r in records}

    def numbered(sql: str) -> str:
        # The server numbers `?` placeholders ($1, $2, ...) before planning; that is what it audits.
        parts = sql.split("?")
        return "".join(p + (f"${i + 1}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))

    missing = [sql for sql in SENT if sql not in recorded and numbered(sql) not in recorded and sql != "SELECT 1"]
    assert not missing, f"not in the audit file: {missing}"
    users = {r["user"] for r in records}
    # JWT principals are namespaced: `jwt:<sub>`.
    assert {"admin", "eu_analyst", "sales_analyst", "guest", "jwt:jwt_analyst"} <= users
    denied = [r for r in records if r["user"] == "guest" and r["outcome"] == "error"]
    assert denied, "refused attempts are audited"
    eu = [r for r in records if r["user"] == "eu_analyst" and r["outcome"] == "ok" and r["products"]]
    assert any("customers_own_region" in p["policies"] for r in eu for p in r["products"])
    # In cluster mode, reads under policies really ran on the workers (and say which).
    ran_on = {w for r in records for w in r.get("workers", [])}
    if srv.workers:
        assert ran_on and ran_on <= set(srv.workers), ran_on
        assert any(
            r.get("workers") and any(p["policies"] for p in r["products"]) for r in records
        ), "no policy-restricted query was distributed"
    else:
        assert not ran_on


def _rs256_token(private_key, claims: dict, kid: Optional[str] = None) -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    header = {"alg": "RS256", "typ": "JWT"}
    if kid:
        header["kid"] = kid
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


def test_rs256_public_key_and_jwks(meshql_bin: Path, demo_dir: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    mesh = tmp_path / "mesh"
    shutil.copytree(demo_dir, mesh, ignore=shutil.ignore_patterns("audit"))
    (mesh / "idp.pem").write_bytes(
        pem_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    numbers = jwks_key.public_key().public_numbers()

    def b64int(n: int) -> str:
        return _b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))

    (mesh / "jwks.json").write_text(
        json.dumps({"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig", "n": b64int(numbers.n), "e": b64int(numbers.e)}]})
    )
    config = mesh / "meshql.toml"
    config.write_text(
        config.read_text()
        + '\n[auth.jwt]\nrs256_public_keys = ["idp.pem"]\njwks_file = "jwks.json"\naudiences = ["meshql"]\n'
        + 'groups_claim = "roles"\n'
    )
    args = ["serve", "--config", str(config), "--bind", "127.0.0.1:0"]
    with running_server(meshql_bin, args, config, tmp_path) as srv:
        good = {"sub": "rsa_user", "roles": "sales", "aud": "meshql", "exp": int(time.time()) + 600}
        for token in (_rs256_token(pem_key, good), _rs256_token(jwks_key, good, kid="k1")):
            with connect_with_token(srv, token) as conn:
                assert "sales.orders" in objects(conn)
                assert "inventory.stock" not in objects(conn)
        for token in (
            _rs256_token(stranger, good),
            _rs256_token(jwks_key, {**good, "aud": "other"}, kid="k1"),
            _rs256_token(pem_key, {**good, "exp": int(time.time()) - 3600}),
        ):
            with pytest.raises(Exception) as info:
                with connect_with_token(srv, token) as conn:
                    run(conn, "SELECT 1")
            assert "unauthenticated" in str(info.value).lower(), info.value
