"""TLS from ADBC: the server reads its certificate and key from `[server.tls]`, and with
`client_ca` requires client certificates (mutual TLS). Certificates are generated here, for
this test run only; no key file is ever committed."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Tuple

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import running_server

OPTS = adbc_driver_flightsql.DatabaseOptions


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert(subject: str, key, issuer_name, issuer_key, *, ca: bool, server: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path) -> Tuple[bytes, Path]:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meshql test CA")])
    ca = _cert("meshql test CA", ca_key, ca_name, ca_key, ca=True, server=False)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert("127.0.0.1", server_key, ca_name, ca_key, ca=False, server=True)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("admin", client_key, ca_name, ca_key, ca=False, server=False)
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    files = {
        "test-ca.pem": ca_pem,
        "test-server.pem": server.public_bytes(serialization.Encoding.PEM),
        "test-server.key": _key_pem(server_key),
        "test-client.pem": client.public_bytes(serialization.Encoding.PEM),
        "test-client.key": _key_pem(client_key),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return ca_pem, directory


def tls_config(demo_dir: Path, name: str, mutual: bool) -> Path:
    """A copy of the demo config (next to it, so relative bucket paths still resolve) with
    `[server.tls]` pointing at the generated files."""
    config = demo_dir / name
    text = (demo_dir / "meshql.toml").read_text()
    text += '\n[server.tls]\ncert = "tls-test/test-server.pem"\nkey = "tls-test/test-server.key"\n'
    if mutual:
        text += 'client_ca = "tls-test/test-ca.pem"\n'
    config.write_text(text)
    return config


@pytest.fixture(scope="module")
def pki(demo_dir: Path) -> bytes:
    directory = demo_dir / "tls-test"
    directory.mkdir(exist_ok=True)
    ca_pem, _ = make_pki(directory)
    return ca_pem


def connect_tls(uri: str, ca_pem: bytes, client_cert: Path = None) -> flight_sql.Connection:
    kwargs = {
        "username": "admin",
        "password": "admin",
        OPTS.TLS_ROOT_CERTS.value: ca_pem.decode(),
    }
    if client_cert is not None:
        kwargs[OPTS.MTLS_CERT_CHAIN.value] = (client_cert / "test-client.pem").read_text()
        kwargs[OPTS.MTLS_PRIVATE_KEY.value] = (client_cert / "test-client.key").read_text()
    return flight_sql.connect(uri, db_kwargs=kwargs, autocommit=True)


def test_tls_connection_from_adbc(meshql_bin, demo_dir, pki, tmp_path):
    config = tls_config(demo_dir, "meshql-tls.toml", mutual=False)
    args = ["serve", "--config", str(config), "--bind", "127.0.0.1:0"]
    with running_server(meshql_bin, args, config, tmp_path) as srv:
        uri = srv.uri
        assert uri.startswith("grpc+tls://"), uri
        with connect_tls(uri, pki) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM sales.orders")
                assert cur.fetchone()[0] > 0
        # Plaintext against a TLS server fails cleanly.
        with pytest.raises(adbc_driver_manager.Error):
            with flight_sql.connect(srv.uri, db_kwargs={"username": "admin", "password": "admin"}) as conn:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")


def test_mutual_tls(meshql_bin, demo_dir, pki, tmp_path):
    config = tls_config(demo_dir, "meshql-mtls.toml", mutual=True)
    args = ["serve", "--config", str(config), "--bind", "127.0.0.1:0"]
    with running_server(meshql_bin, args, config, tmp_path) as srv:
        uri = srv.uri
        assert uri.startswith("grpc+tls://"), uri
        with connect_tls(uri, pki, client_cert=demo_dir / "tls-test") as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                assert cur.fetchone()[0] == 1
        # Without a client certificate the handshake is refused.
        with pytest.raises(adbc_driver_manager.Error):
            with connect_tls(uri, pki) as conn:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
