"""The SQL fuzzer (tests/python/fuzz) in the test command: a bounded, seeded run as every demo
principal against its own server, plus the checks that keep the fuzzer itself honest.

Environment:
  MESHQL_FUZZ_SEED     seed (default 20261123); printed with every violation
  MESHQL_FUZZ_COUNT    statements per run (default 500)
  MESHQL_FUZZ_SECONDS  time bound of the run (default 150)
  MESHQL_FUZZ_PENDING  comma-separated inputs/checks that fail today on bugs being fixed
                       elsewhere: deep, slow, paths (see fuzz/runner.py)
Long runs: `python -m fuzz --minutes 60` from tests/python (docs/testing.md).
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from conftest import Server, connect, running_server
from fuzz import mesh
from fuzz.grammar import Generator
from fuzz.runner import Fuzzer

SEED = os.environ.get("MESHQL_FUZZ_SEED", "20261123")
COUNT = int(os.environ.get("MESHQL_FUZZ_COUNT", "500"))
SECONDS = float(os.environ.get("MESHQL_FUZZ_SECONDS", "150"))
PENDING = [p for p in os.environ.get("MESHQL_FUZZ_PENDING", "").split(",") if p]


@pytest.fixture(scope="module")
def fuzz_server(meshql_bin: Path, demo_dir: Path, tmp_path_factory) -> Server:
    """A server of its own (on a copy of the demo mesh), so that an input that brings it down
    fails this test alone."""
    work = tmp_path_factory.mktemp("fuzz")
    mesh_dir = work / "mesh"
    shutil.copytree(demo_dir, mesh_dir, ignore=shutil.ignore_patterns("audit"))
    config = mesh_dir / "meshql.toml"
    args = ["serve", "--config", str(config), "--bind", "127.0.0.1:0"]
    with running_server(meshql_bin, args, config, work) as srv:
        yield srv


@pytest.fixture(scope="module")
def fuzzer(fuzz_server: Server):
    f = Fuzzer(
        fuzz_server.uri,
        SEED,
        is_alive=lambda: fuzz_server.process.poll() is None,
        pending=PENDING,
    )
    yield f
    f.close()


def test_demo_policies_are_the_ones_the_fuzzer_writes_out(demo_dir: Path):
    assert mesh.check_demo_policies(demo_dir) == []


def query(server: Server, user: str, sql: str):
    conn = connect(server, user)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("principal", mesh.PRINCIPALS)
def test_each_principal_sees_exactly_its_products(fuzz_server: Server, principal: str):
    expected = mesh.VISIBLE[principal]
    products = {f"{d}.{n}" for d, n in query(fuzz_server, principal, "SELECT domain, name FROM meshql.products")}
    assert products == expected
    tables = {
        f"{s}.{t}"
        for s, t in query(fuzz_server, principal, "SELECT table_schema, table_name FROM information_schema.tables")
        if s not in ("meshql", "information_schema")
    }
    assert tables == expected
    columns = {
        f"{d}.{p}"
        for d, p in query(fuzz_server, principal, "SELECT DISTINCT domain, product FROM meshql.columns")
    }
    assert columns == expected


def test_the_comparison_catches_a_policy_that_is_not_applied(fuzzer: Fuzzer, monkeypatch):
    """If the server ignored eu_analyst's row filter on customers, the fuzzer must notice: the
    same comparison against a rewrite without that filter must report differences."""
    monkeypatch.delitem(mesh.ROW_FILTERS, ("eu_analyst", "customers.customers"))
    customers = [fuzzer.by_name["customers.customers"]]
    before = len(fuzzer.report.violations)
    for i in range(12):
        stmt = Generator(random.Random(f"self-test:{i}"), customers).statement()
        fuzzer.same_answer(-1 - i, "eu_analyst", stmt)
    found = fuzzer.report.violations[before:]
    del fuzzer.report.violations[before:]
    assert any(v.problem == "answer differs from admin's rewrite" for v in found), found


def test_the_hidden_check_catches_a_product_that_answers(fuzzer: Fuzzer, monkeypatch):
    """If a product the principal may not see answered, the fuzzer must notice: pretend that
    eu_analyst may not see sales.orders (it may) and check that the hidden check complains."""
    monkeypatch.setitem(mesh.VISIBLE, "eu_analyst", {"customers.customers"})
    orders = fuzzer.by_name["sales.orders"]
    before = len(fuzzer.report.violations)
    for i in range(6):
        fuzzer.hidden_like_missing(-1 - i, "eu_analyst", random.Random(f"self-test:{i}"), [], [orders])
    found = fuzzer.report.violations[before:]
    del fuzzer.report.violations[before:]
    assert any(v.problem == "a hidden product answered" for v in found), found


def test_fuzz_statements_as_every_principal(fuzzer: Fuzzer):
    report = fuzzer.run(COUNT, SECONDS)
    print(report.summary())
    assert report.statements > 0
    if report.violations:
        shown = "\n\n".join(v.describe(SEED) for v in report.violations[:20])
        pytest.fail(
            f"{len(report.violations)} fuzz violation(s); reproduce one with\n"
            f"  cd tests/python && python -m fuzz --seed {SEED} --start INDEX --count 1\n"
            f"{report.summary()}\n\n{shown}",
            pytrace=False,
        )
