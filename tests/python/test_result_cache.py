"""The result cache through real clients (docs/limits.md#result-cache): a repeated dashboard
query over ADBC is answered from memory, every demo principal still gets exactly its own rows
(or its own refusal) whatever another principal cached, new data is seen at once, and the cache
shows in /metrics and meshql.audit."""

from __future__ import annotations

import re
import shutil
import urllib.request
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from conftest import Server, connect, running_server

PRINCIPALS = ["admin", "sales_analyst", "eu_analyst", "shipping_ds", "guest"]
DASHBOARD = (
    "SELECT region, count(*) AS orders, sum(total_amount) AS revenue "
    "FROM sales.orders GROUP BY region ORDER BY region"
)


@pytest.fixture(scope="module")
def cached(meshql_bin: Path, demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    mesh = tmp_path_factory.mktemp("result-cache") / "mesh"
    shutil.copytree(demo_dir, mesh, ignore=shutil.ignore_patterns("audit"))
    config = mesh / "meshql.toml"
    args = ["serve", "--config", str(config), "--bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"]
    with running_server(meshql_bin, args, config, mesh.parent, http=True) as srv:
        yield srv


def rows(server: Server, user: str, sql: str) -> List[Tuple]:
    with connect(server, user) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def metric(server: Server, name: str) -> float:
    text = urllib.request.urlopen(f"{server.http_url}/metrics", timeout=30).read().decode()
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def cache_column(server: Server, user: str, sql: str) -> List[str]:
    """The `cache` column of `user`'s audit records of `sql`, oldest first."""
    escaped = sql.replace("'", "''")
    return [
        r[0] or "-"
        for r in rows(
            server,
            "admin",
            # The audit ring is in arrival order.
            f"SELECT cache FROM meshql.audit WHERE user = '{user}' AND sql = '{escaped}'",
        )
    ]


def test_a_repeated_dashboard_query_is_served_from_memory(cached: Server) -> None:
    hits = metric(cached, "meshql_result_cache_hits_total")
    first = rows(cached, "sales_analyst", DASHBOARD)
    for _ in range(3):
        assert rows(cached, "sales_analyst", DASHBOARD) == first
    assert metric(cached, "meshql_result_cache_hits_total") == hits + 3
    assert metric(cached, "meshql_result_cache_bytes") > 0
    assert cache_column(cached, "sales_analyst", DASHBOARD) == ["miss", "hit", "hit", "hit"]


def test_every_principal_gets_its_own_rows_whatever_others_cached(cached: Server) -> None:
    sql = "SELECT region, count(*) FROM customers.customers GROUP BY region ORDER BY region"
    masked = "SELECT email FROM customers.customers ORDER BY customer_id LIMIT 5"
    expected = {}
    for user in PRINCIPALS:
        try:
            expected[user] = (rows(cached, user, sql), rows(cached, user, masked))
        except Exception as e:  # noqa: BLE001 (the refusal is what is compared)
            expected[user] = type(e).__name__
    # The guest sees no customers; eu_analyst only its region; masks differ by principal.
    assert isinstance(expected["guest"], str)
    assert [r[0] for r in expected["eu_analyst"][0]] == ["EU"]
    assert all("@" in r[0] for r in expected["admin"][1])
    assert all(r[0] == "***" for r in expected["sales_analyst"][1])
    # Second round, in reverse order: every answer (and every refusal) is the same.
    for user in reversed(PRINCIPALS):
        try:
            got = (rows(cached, user, sql), rows(cached, user, masked))
        except Exception as e:  # noqa: BLE001
            got = type(e).__name__
        assert got == expected[user], user
    assert cache_column(cached, "eu_analyst", sql) == ["miss", "hit"]
    assert cache_column(cached, "guest", sql) == ["-", "-"], "a refusal is never cached"


def test_new_parquet_data_is_seen_by_the_next_query(cached: Server) -> None:
    sql = "SELECT count(*) FROM sales.order_items"
    (before,) = rows(cached, "admin", sql)[0]
    assert rows(cached, "admin", sql)[0][0] == before
    items = cached.config.parent / "buckets" / "sales" / "order_items"
    first = sorted(items.glob("*.parquet"))[0]
    shutil.copy(first, items / "zz-new.parquet")
    try:
        (after,) = rows(cached, "admin", sql)[0]
        assert after > before
        assert cache_column(cached, "admin", sql) == ["miss", "hit", "miss"]
    finally:
        (items / "zz-new.parquet").unlink()
    assert rows(cached, "admin", sql)[0][0] == before
