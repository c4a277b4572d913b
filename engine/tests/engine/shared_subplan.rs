//! An aggregation a query uses twice (a CTE read twice, TPC-H Q15's shape) is computed once:
//! the same answers, one execution of the input, the same policies for every principal, and
//! every use running its own copy when the result does not fit the query's memory.

use meshql_engine::MeshEngine;

use super::{engine, engine_with, metric, query, query_as, single_i64, strings};

/// Rows as text, in order.
fn rows(batches: &[arrow::array::RecordBatch]) -> Vec<String> {
    arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The EXPLAIN ANALYZE text of `sql` as `user`.
async fn analyzed(engine: &MeshEngine, user: &str, sql: &str) -> String {
    strings(
        &query_as(engine, user, &format!("EXPLAIN ANALYZE {sql}"))
            .await
            .unwrap(),
        1,
    )
    .join("\n")
}

/// The orders with the largest total quantity, through a CTE read twice (Q15's shape).
const TOP_ORDERS: &str = "WITH per_order AS (SELECT order_id, sum(quantity) AS q \
     FROM sales.order_items GROUP BY order_id) \
     SELECT order_id, q FROM per_order WHERE q = (SELECT max(q) FROM per_order) ORDER BY order_id";

/// The same answer with the aggregation written once.
const TOP_ORDERS_ONCE: &str = "SELECT order_id, q FROM (SELECT order_id, q, \
     max(q) OVER () AS top FROM (SELECT order_id, sum(quantity) AS q FROM sales.order_items \
     GROUP BY order_id)) WHERE q = top ORDER BY order_id";

#[tokio::test]
async fn a_cte_read_twice_is_aggregated_once_with_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let shared = query(&engine, TOP_ORDERS).await.unwrap();
    assert_eq!(
        rows(&shared),
        rows(&query(&engine, TOP_ORDERS_ONCE).await.unwrap())
    );
    assert!(rows(&shared).len() > 4, "{:?}", rows(&shared));

    let lines = single_i64(
        &query(&engine, "SELECT count(*) FROM sales.order_items")
            .await
            .unwrap(),
    ) as f64;
    let text = analyzed(&engine, "admin", TOP_ORDERS).await;
    let uses: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("SharedSubplanExec"))
        .collect();
    assert_eq!(uses.len(), 2, "{text}");
    assert!(uses.iter().all(|l| l.contains("consumers=2")), "{text}");
    // Both uses show the one input: its scan read every line once, not twice.
    let scans: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("DataSourceExec") && l.contains("order_items"))
        .collect();
    assert_eq!(scans.len(), 2, "{text}");
    for scan in scans {
        // (EXPLAIN rounds to four digits: "12.48 K".)
        let read = metric(scan, "output_rows").unwrap();
        assert!((read - lines).abs() < 0.01 * lines, "{lines} lines: {scan}");
    }
    let kept: f64 = uses
        .iter()
        .filter_map(|l| metric(l, "materialized_rows"))
        .sum();
    assert!(kept > 0.0, "{text}");
    assert!(!text.contains("reran_input=1"), "{text}");
    // The kept result goes with the query: released when its stream is.
    drop(shared);
    assert_eq!(engine.memory_reserved().0, 0);
}

#[tokio::test]
async fn only_repeated_deterministic_aggregations_are_shared() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let explain = |sql: &'static str| {
        let engine = engine.clone();
        async move { strings(&query(&engine, &format!("EXPLAIN {sql}")).await.unwrap(), 1).join("\n") }
    };
    // Used once: nothing to share.
    assert!(!explain(TOP_ORDERS_ONCE).await.contains("SharedSubplan"));
    // random() inside the aggregation: each use draws its own values.
    let volatile = explain(
        "WITH t AS (SELECT order_id, sum(quantity * random()) AS q FROM sales.order_items \
         GROUP BY order_id) SELECT (SELECT max(q) FROM t) AS hi, (SELECT min(q) FROM t) AS lo",
    )
    .await;
    assert!(!volatile.contains("SharedSubplan"), "{volatile}");
    // random() above the aggregation: the aggregation is shared, each use draws its own.
    let above = explain(
        "WITH t AS (SELECT order_id, sum(quantity) AS q FROM sales.order_items \
         GROUP BY order_id) SELECT (SELECT max(q + random()) FROM t) AS hi, (SELECT min(q) FROM t) AS lo",
    )
    .await;
    assert!(above.contains("SharedSubplanExec"), "{above}");
    // Two different filters make two different aggregations.
    let different = explain(
        "SELECT (SELECT count(*) FROM (SELECT order_id FROM sales.order_items WHERE quantity > 1 \
         GROUP BY order_id)) AS one, (SELECT count(*) FROM (SELECT order_id FROM \
         sales.order_items WHERE quantity > 2 GROUP BY order_id)) AS two",
    )
    .await;
    assert!(!different.contains("SharedSubplan"), "{different}");
}

/// A CTE over sales.orders read twice, and the same answer with the aggregation written once.
const PER_REGION: &str =
    "WITH r AS (SELECT region, count(*) AS n FROM sales.orders GROUP BY region) \
     SELECT region, n, (SELECT sum(n) FROM r) AS total FROM r ORDER BY region";
const PER_REGION_ONCE: &str = "SELECT region, n, sum(n) OVER () AS total FROM (SELECT region, \
     count(*) AS n FROM sales.orders GROUP BY region) ORDER BY region";

#[tokio::test]
async fn a_shared_aggregation_keeps_every_principals_policies() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let mut seen = Vec::new();
    for user in [
        "admin",
        "sales_analyst",
        "eu_analyst",
        "shipping_ds",
        "guest",
    ] {
        let shared = query_as(&engine, user, PER_REGION).await;
        let once = query_as(&engine, user, PER_REGION_ONCE).await;
        match (shared, once) {
            (Ok(shared), Ok(once)) => {
                assert_eq!(rows(&shared), rows(&once), "{user}");
                let text = analyzed(&engine, user, PER_REGION).await;
                assert!(text.contains("consumers=2"), "{user}: {text}");
                // EXPLAIN shows no policy, shared or not.
                for secret in ["'EU'", "region ="] {
                    assert!(!text.contains(secret), "{user} sees `{secret}`:\n{text}");
                }
                seen.push((user, rows(&shared)));
            }
            // guest may not read sales.orders: the same error either way, naming no more.
            (Err(shared), Err(once)) => {
                assert_eq!(user, "guest");
                assert_eq!(shared.to_string(), once.to_string());
            }
            (shared, once) => panic!("{user}: {shared:?} against {once:?}"),
        }
    }
    // eu_analyst's row filter holds in the shared result: one region, not everyone's.
    let eu = &seen.iter().find(|(u, _)| *u == "eu_analyst").unwrap().1;
    let all = &seen.iter().find(|(u, _)| *u == "admin").unwrap().1;
    assert!(eu.len() < all.len(), "{eu:?} against {all:?}");
    assert!(eu.iter().any(|l| l.contains("| EU ")), "{eu:?}");
}

#[tokio::test]
async fn a_shared_result_too_big_for_the_query_memory_runs_once_per_use() {
    let dir = tempfile::tempdir().unwrap();
    let spill = tempfile::tempdir().unwrap();
    let limits = meshql_engine::Limits {
        memory_limit: 256 * 1024 * 1024,
        query_memory_limit: 64 * 1024 * 1024,
        target_partitions: 2,
        spill_dir: Some(spill.path().to_path_buf()),
        ..Default::default()
    };
    let engine = engine_with(dir.path(), limits).await;
    // 200 K groups of ~110 bytes: more than the quarter of its 64 MiB share a shared result
    // may hold.
    let sql = "WITH t AS (SELECT v, max(repeat('x', 100) || CAST(v AS VARCHAR)) AS pad \
               FROM (SELECT value AS v FROM range(200000)) GROUP BY v) \
               SELECT (SELECT count(pad) FROM t) AS n, (SELECT max(pad) FROM t) AS top";
    let answer = rows(&query_as(&engine, "guest", sql).await.unwrap());
    assert!(
        answer
            .iter()
            .any(|l| l.contains("| 200000 ") && l.contains("x99999 ")),
        "{answer:?}"
    );
    let text = analyzed(&engine, "guest", sql).await;
    let uses: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("SharedSubplanExec"))
        .collect();
    assert_eq!(uses.len(), 2, "{text}");
    // Nothing kept; each use ran its own copy of the aggregation.
    for l in &uses {
        assert_eq!(metric(l, "materialized_rows").unwrap_or(0.0), 0.0, "{text}");
        assert_eq!(metric(l, "reran_input"), Some(1.0), "{text}");
    }
    // Nothing stays reserved once the answer is in (the given-up run was awaited), and the
    // engine answers.
    assert_eq!(engine.memory_reserved().0, 0);
    query_as(&engine, "guest", "SELECT 1").await.unwrap();
}
