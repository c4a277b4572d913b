//! The result cache (who shares an entry, what invalidates one, what is never cached), the
//! per-scan choice of Parquet row filters, runtime filters under policies, and the statistics
//! a Delta scan gives the planner.

use std::path::Path;

use arrow::array::RecordBatch;
use meshql_catalog::Mesh;
use meshql_engine::MeshEngine;

use super::{demo_mesh, metric, query, query_as, set_refresh_interval, single_i64, strings};

/// The `cache` field of every audit record so far, in order ("-" when absent).
fn cache_fields(engine: &MeshEngine, dir: &Path) -> Vec<String> {
    engine.flush_audit();
    std::fs::read_to_string(dir.join("audit/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|r| r["cache"].as_str().unwrap_or("-").to_string())
        .collect()
}

fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let formatted = arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string();
    formatted.lines().map(str::to_string).collect()
}

const BY_REGION: &str =
    "SELECT region, count(*) AS n, sum(total_amount) AS total FROM sales.orders GROUP BY region ORDER BY region";

#[tokio::test]
async fn a_repeated_query_is_answered_from_the_cache_and_shared_only_by_equal_rules() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_mesh(dir.path()).await;
    let engine = MeshEngine::try_new(Mesh::load(&config).unwrap()).unwrap();

    let first = query_as(&engine, "sales_analyst", BY_REGION).await.unwrap();
    let again = query_as(&engine, "sales_analyst", BY_REGION).await.unwrap();
    assert_eq!(rows(&first), rows(&again));
    assert_eq!(cache_fields(&engine, dir.path()), ["miss", "hit"]);

    // shipping_ds reads sales.orders without a policy too: same rules, same entry.
    let shipping = query_as(&engine, "shipping_ds", BY_REGION).await.unwrap();
    assert_eq!(rows(&shipping), rows(&first));
    // eu_analyst's row filter makes it another plan: its own rows, never the shared ones.
    let eu = query_as(&engine, "eu_analyst", BY_REGION).await.unwrap();
    assert_eq!(rows(&eu).len(), 5, "one region: {:?}", rows(&eu));
    assert!(
        rows(&eu).iter().any(|l| l.contains("| EU ")),
        "{:?}",
        rows(&eu)
    );
    assert_ne!(rows(&eu), rows(&first));
    let eu_again = query_as(&engine, "eu_analyst", BY_REGION).await.unwrap();
    assert_eq!(rows(&eu_again), rows(&eu));
    assert_eq!(
        cache_fields(&engine, dir.path()),
        ["miss", "hit", "hit", "miss", "hit"]
    );

    // Masks are part of the entry: admin (clear e-mails) and sales_analyst (masked) differ.
    let emails = "SELECT email FROM customers.customers ORDER BY customer_id LIMIT 3";
    let clear = strings(&query(&engine, emails).await.unwrap(), 0);
    let masked = strings(
        &query_as(&engine, "sales_analyst", emails).await.unwrap(),
        0,
    );
    assert!(clear.iter().all(|e| e.contains('@')), "{clear:?}");
    assert_eq!(masked, ["***", "***", "***"]);
    let clear_again = strings(&query(&engine, emails).await.unwrap(), 0);
    assert_eq!(clear_again, clear);
    assert_eq!(
        cache_fields(&engine, dir.path())[5..],
        ["miss", "miss", "hit"]
    );

    // A hidden product is refused whether or not someone else's answer is cached.
    query_as(&engine, "guest", BY_REGION).await.unwrap_err();

    // Bound parameters are part of the plan: other values, other entries.
    let count_status = |status: &'static str| {
        let engine = engine.clone();
        async move {
            let session = engine
                .session(super::principal(&engine, "sales_analyst"))
                .unwrap();
            let planned = session
                .plan_sql("SELECT count(*) FROM sales.orders WHERE status = $1")
                .await
                .unwrap();
            let bound = planned
                .bind(vec![datafusion::scalar::ScalarValue::from(status)])
                .unwrap();
            let batches: Vec<RecordBatch> =
                futures::TryStreamExt::try_collect(session.execute(bound).await.unwrap())
                    .await
                    .unwrap();
            single_i64(&batches)
        }
    };
    let shipped = count_status("shipped").await;
    let cancelled = count_status("cancelled").await;
    assert_ne!(shipped, cancelled);
    assert_eq!(count_status("shipped").await, shipped);
    assert_eq!(
        cache_fields(&engine, dir.path())[8..],
        ["-", "miss", "miss", "hit"],
        "the guest's refusal is audited without a cache field"
    );
}

#[tokio::test]
async fn changed_data_is_never_served_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_mesh(dir.path()).await;
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, set_refresh_interval(&text, "0")).unwrap();
    let engine = MeshEngine::try_new(Mesh::load(&config).unwrap()).unwrap();

    // Parquet: a new file in the product's location.
    let items = "SELECT count(*) FROM sales.order_items";
    let before = single_i64(&query(&engine, items).await.unwrap());
    assert_eq!(single_i64(&query(&engine, items).await.unwrap()), before);
    let dir_items = dir.path().join("buckets/sales/order_items");
    let first_file = std::fs::read_dir(&dir_items)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .min()
        .unwrap();
    let copied_rows = super::parquet_rows(&first_file);
    std::fs::copy(&first_file, dir_items.join("zz-copy.parquet")).unwrap();
    assert_eq!(
        single_i64(&query(&engine, items).await.unwrap()),
        before + copied_rows
    );
    // A file replaced in place (same name, other content) is seen too.
    std::fs::copy(dir_items.join("zz-copy.parquet"), &first_file).unwrap();
    std::fs::remove_file(dir_items.join("zz-copy.parquet")).unwrap();
    assert_eq!(single_i64(&query(&engine, items).await.unwrap()), before);

    // Delta: a new commit (refresh_interval 0 reads the log on every query).
    let orders = "SELECT count(*) FROM sales.orders";
    assert_eq!(single_i64(&query(&engine, orders).await.unwrap()), 5000);
    assert_eq!(single_i64(&query(&engine, orders).await.unwrap()), 5000);
    super::append_to_orders(
        &engine,
        dir.path(),
        "SELECT order_id + 100000 AS order_id, customer_id, order_ts, status, total_amount, region FROM sales.orders LIMIT 10",
    )
    .await;
    assert_eq!(single_i64(&query(&engine, orders).await.unwrap()), 5010);
    assert_eq!(
        cache_fields(&engine, dir.path()),
        ["miss", "hit", "miss", "miss", "miss", "hit", "miss", "miss"]
    );
}

#[tokio::test]
async fn volatile_system_and_opted_out_reads_are_never_cached() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_mesh(dir.path()).await;
    // The owner of sales.order_items opts it out.
    let manifest = dir.path().join("catalog/sales/products/order_items.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("result_cache = false\n{text}")).unwrap();
    let engine = MeshEngine::try_new(Mesh::load(&config).unwrap()).unwrap();
    for sql in [
        "SELECT count(*), now() FROM sales.orders",
        "SELECT count(*) FROM sales.orders WHERE random() < 2",
        "SELECT count(*) FROM meshql.products",
        "SELECT count(*) FROM sales.order_items",
        "SELECT count(*) FROM sales.orders o JOIN sales.order_items i ON o.order_id = i.order_id",
        "EXPLAIN SELECT count(*) FROM sales.orders",
        "SELECT 1",
    ] {
        for _ in 0..2 {
            query(&engine, sql).await.unwrap();
        }
    }
    assert!(
        cache_fields(&engine, dir.path()).iter().all(|c| c == "-"),
        "{:?}",
        cache_fields(&engine, dir.path())
    );

    // result_cache_size = 0 turns the cache off.
    let dir = tempfile::tempdir().unwrap();
    let config = demo_mesh(dir.path()).await;
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[engine]\nresult_cache_size = 0\n"),
    )
    .unwrap();
    let engine = MeshEngine::try_new(Mesh::load(&config).unwrap()).unwrap();
    for _ in 0..2 {
        query(&engine, BY_REGION).await.unwrap();
    }
    assert_eq!(cache_fields(&engine, dir.path()), ["-", "-"]);
}

/// The value of metric `name` on the first line of `explain` that mentions `needle` and
/// `DataSourceExec`.
fn scan_metric(explain: &str, needle: &str, name: &str) -> Option<u64> {
    let line = explain
        .lines()
        .find(|l| l.contains("DataSourceExec") && l.contains(needle))?;
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .ok()
}

#[tokio::test]
async fn only_scans_with_a_runtime_filter_filter_rows_while_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_mesh(dir.path()).await;
    let engine = MeshEngine::try_new(Mesh::load(&config).unwrap()).unwrap();
    let explain = |sql: String| {
        let engine = engine.clone();
        async move { strings(&query(&engine, &sql).await.unwrap(), 1).join("\n") }
    };
    // The join's build side (a few orders) sends a runtime filter into the order_items scan,
    // which drops the other lines while decoding.
    let join = "SELECT count(*) FROM sales.order_items i JOIN sales.orders o \
                ON i.order_id = o.order_id WHERE o.customer_id = 7";
    let analyzed = explain(format!("EXPLAIN ANALYZE {join}")).await;
    let line = analyzed
        .lines()
        .find(|l| l.contains("DataSourceExec") && l.contains("order_items"))
        .unwrap_or_else(|| panic!("{analyzed}"));
    assert!(line.contains("DynamicFilter"), "{line}");
    let pruned = scan_metric(&analyzed, "order_items", "pushdown_rows_pruned");
    assert!(pruned.is_some_and(|n| n > 0), "{line}");
    // The same answer as a plain semi-join.
    let semi = "SELECT count(*) FROM sales.order_items WHERE order_id IN \
                (SELECT order_id FROM sales.orders WHERE customer_id = 7)";
    let n = single_i64(&query(&engine, join).await.unwrap());
    assert!(n > 0);
    assert_eq!(n, single_i64(&query(&engine, semi).await.unwrap()));
    // A static predicate prunes from statistics and runs above the scan, not while decoding.
    let by_hand = "SELECT count(*) FROM sales.order_items WHERE order_id <= 20";
    let analyzed = explain(format!("EXPLAIN ANALYZE {by_hand}")).await;
    assert!(analyzed.contains("FilterExec"), "{analyzed}");
    let pruned = scan_metric(&analyzed, "order_items", "pushdown_rows_pruned");
    assert!(pruned.unwrap_or(0) == 0, "{analyzed}");
    // The same for a Delta product (sales.orders, a plain version read as its Parquet files):
    // deltalake's own default would filter while decoding; meshql's scan follows the engine's
    // setting.
    let on_delta = "SELECT count(*) FROM sales.orders WHERE order_id <= 20";
    assert_eq!(single_i64(&query(&engine, on_delta).await.unwrap()), 20);
    let analyzed = explain(format!("EXPLAIN ANALYZE {on_delta}")).await;
    assert!(!analyzed.contains("DeltaScanExec"), "{analyzed}");
    assert!(analyzed.contains("FilterExec"), "{analyzed}");
    let pruned = scan_metric(&analyzed, "orders", "pushdown_rows_pruned");
    assert!(pruned.unwrap_or(0) == 0, "{analyzed}");
}

#[tokio::test]
async fn a_runtime_filter_from_a_join_further_up_runs_after_the_static_filter_of_its_scan() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_mesh(dir.path()).await;
    let engine = MeshEngine::try_new(Mesh::load(&config).unwrap()).unwrap();
    // The order_items scan has a static predicate (quantity > 1) and, through the aggregation,
    // the runtime filter of the join with customer 7's orders.
    let join = "SELECT o.order_id, t.q FROM sales.orders o JOIN (SELECT order_id, \
                sum(quantity) AS q FROM sales.order_items WHERE quantity > 1 GROUP BY order_id) t \
                ON o.order_id = t.order_id WHERE o.customer_id = 7 ORDER BY o.order_id";
    let by_hand = "SELECT order_id, sum(quantity) AS q FROM sales.order_items WHERE quantity > 1 \
                   AND order_id IN (SELECT order_id FROM sales.orders WHERE customer_id = 7) \
                   GROUP BY order_id ORDER BY order_id";
    let answer = query(&engine, join).await.unwrap();
    assert_eq!(
        arrow::util::pretty::pretty_format_batches(&answer)
            .unwrap()
            .to_string(),
        arrow::util::pretty::pretty_format_batches(&query(&engine, by_hand).await.unwrap())
            .unwrap()
            .to_string()
    );
    let lines: usize = answer.iter().map(|b| b.num_rows()).sum();
    assert!(lines > 0);
    let static_rows = single_i64(
        &query(
            &engine,
            "SELECT count(*) FROM sales.order_items WHERE quantity > 1",
        )
        .await
        .unwrap(),
    ) as f64;
    let analyzed = strings(
        &query(&engine, &format!("EXPLAIN ANALYZE {join}"))
            .await
            .unwrap(),
        1,
    )
    .join("\n");
    let all: Vec<&str> = analyzed.lines().collect();
    let scan = all
        .iter()
        .position(|l| l.contains("DataSourceExec") && l.contains("order_items"))
        .unwrap_or_else(|| panic!("{analyzed}"));
    // The filter right above the scan evaluates the runtime filter after `quantity > 1`: it
    // keeps customer 7's lines, not every line with more than one item.
    let filter = all[scan - 1];
    assert!(filter.contains("FilterExec"), "{analyzed}");
    assert!(filter.contains("DynamicFilter"), "{filter}");
    let kept = metric(filter, "output_rows").unwrap();
    assert!(
        kept < 0.05 * static_rows,
        "{kept} of {static_rows}: {filter}"
    );
}

#[tokio::test]
async fn a_lookup_from_the_join_above_is_evaluated_while_decoding_only_while_it_drops_nearly_every_row(
) {
    // Eight times the demo mesh: 40 K orders, ~100 K order lines in three files.
    let dir = tempfile::tempdir().unwrap();
    let opts = meshql_engine::demo::DemoOptions {
        dir: dir.path().to_path_buf(),
        scale: 8,
        force: false,
    };
    let report = meshql_engine::demo::write_demo(&opts, &mut |_: &str| {})
        .await
        .unwrap();
    let engine = MeshEngine::try_new(Mesh::load(&report.config).unwrap()).unwrap();
    let lines = single_i64(
        &query(&engine, "SELECT count(*) FROM sales.order_items")
            .await
            .unwrap(),
    ) as f64;
    assert!(lines > 2.0 * meshql_engine::SAMPLE_ROWS as f64, "{lines}");
    // The order_items scan's row-filter counters for a join with the orders `filter` selects.
    let scan = |filter: &'static str| {
        let engine = engine.clone();
        async move {
            let join = format!(
                "SELECT count(*) FROM sales.order_items i JOIN sales.orders o \
                 ON i.order_id = o.order_id WHERE {filter}"
            );
            let semi = format!(
                "SELECT count(*) FROM sales.order_items WHERE order_id IN \
                 (SELECT order_id FROM sales.orders o WHERE {filter})"
            );
            let n = single_i64(&query(&engine, &join).await.unwrap());
            assert_eq!(n, single_i64(&query(&engine, &semi).await.unwrap()));
            let analyzed = strings(
                &query(&engine, &format!("EXPLAIN ANALYZE {join}"))
                    .await
                    .unwrap(),
                1,
            )
            .join("\n");
            let line = analyzed
                .lines()
                .find(|l| l.contains("DataSourceExec") && l.contains("order_items"))
                .unwrap_or_else(|| panic!("{analyzed}"))
                .to_string();
            assert!(line.contains("hash_lookup"), "{line}");
            let pruned = metric(&line, "pushdown_rows_pruned").unwrap();
            let matched = metric(&line, "pushdown_rows_matched").unwrap();
            (n as f64, pruned, matched, line)
        }
    };
    // A fifth of the orders, from the join right above: after the sample, the reader stops
    // evaluating the lookup and passes every line; the join drops the rest. (From a join further
    // up, a lookup keeping a fifth would be kept.)
    let (n, pruned, matched, line) = scan("o.customer_id % 5 = 0").await;
    assert!(n > 0.1 * lines && n < 0.3 * lines, "{n} of {lines}");
    assert!((pruned + matched - lines).abs() <= 0.01 * lines, "{line}");
    // Evaluated: the sample, plus at most the batch each of the scan's partitions had started
    // when the decision was made (8,192 rows, the default batch size); kept, it would drop
    // about four fifths.
    let partitions: usize = line
        .split("file_groups={")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    let evaluated_at_most = (meshql_engine::SAMPLE_ROWS + partitions * 8_192) as f64;
    assert!(pruned <= evaluated_at_most, "{line}");
    assert!(pruned < 0.6 * lines, "{line}");
    // The orders of one customer in 150 (over 150 orders, so still a lookup): the lookup keeps
    // dropping lines while decoding to the end.
    let (n, pruned, _, line) = scan("o.customer_id % 150 = 7").await;
    assert!(n > 0.0 && n < 0.01 * lines, "{n} of {lines}");
    assert!(pruned >= 0.98 * lines, "{line}");
}

/// The inner (secured) plan of the policy barrier for `product` in `plan`, as text.
fn policed_inner(
    plan: &std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    product: &str,
) -> Option<String> {
    if let Some(p) =
        (plan.as_ref() as &dyn std::any::Any).downcast_ref::<meshql_engine::PolicyExec>()
    {
        if p.product() == product {
            return Some(
                datafusion::physical_plan::displayable(p.inner().as_ref())
                    .indent(true)
                    .to_string(),
            );
        }
    }
    plan.children()
        .into_iter()
        .find_map(|c| policed_inner(c, product))
}

#[tokio::test]
async fn runtime_filters_enter_a_policed_scan_only_on_unmasked_columns() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_mesh(dir.path()).await;
    let engine = MeshEngine::try_new(Mesh::load(&config).unwrap()).unwrap();
    // sales_analyst reads customers.customers with e-mails masked (a policed read).
    let session = engine
        .session(super::principal(&engine, "sales_analyst"))
        .unwrap();
    let plan_of = |sql: &'static str| {
        let session = &session;
        async move {
            let planned = session.plan_sql(sql).await.unwrap();
            session.physical_plan(&planned).await.unwrap()
        }
    };
    // The orders side is 20 rows by its statistics (a LIMIT), so the join builds from it and
    // probes the policed customers scan: that scan is the one that may get a runtime filter.
    let on_key = "SELECT count(*) FROM (SELECT customer_id FROM sales.orders \
                  ORDER BY order_id LIMIT 20) o JOIN customers.customers c \
                  ON o.customer_id = c.customer_id";
    let plan = plan_of(on_key).await;
    let inner = policed_inner(&plan, "customers.customers").expect("a policed customers scan");
    assert!(inner.contains("DynamicFilter"), "{inner}");
    // Run, the join fills the filter: it does so only when it finds the filter's consumer on
    // its probe side, so the barrier must show it that one expression (and nothing else).
    let ctx = std::sync::Arc::new(datafusion::execution::TaskContext::default());
    let batches = datafusion::physical_plan::collect(std::sync::Arc::clone(&plan), ctx)
        .await
        .unwrap();
    assert!(single_i64(&batches) > 0);
    let inner = policed_inner(&plan, "customers.customers").expect("a policed customers scan");
    assert!(inner.contains("DynamicFilter [ customer_id"), "{inner}");
    // The answer is the unrestricted one (only e-mails are masked for sales_analyst).
    let n = single_i64(&query_as(&engine, "sales_analyst", on_key).await.unwrap());
    assert_eq!(n, single_i64(&query(&engine, on_key).await.unwrap()));
    assert!(n > 0);
    // A masked join key gets no runtime filter: it would compare real e-mails.
    let on_masked = "SELECT count(*) FROM (SELECT status FROM sales.orders \
                     ORDER BY order_id LIMIT 20) o JOIN customers.customers c \
                     ON c.email = o.status";
    let inner = policed_inner(&plan_of(on_masked).await, "customers.customers")
        .expect("a policed customers scan");
    assert!(!inner.contains("DynamicFilter"), "{inner}");
    // eu_analyst: both sides policed by row filters; the runtime filter still answers exactly
    // the rows of its region.
    let eu = "SELECT count(*) FROM sales.orders o JOIN customers.customers c \
              ON o.customer_id = c.customer_id WHERE o.order_id <= 200";
    let by_admin = "SELECT count(*) FROM sales.orders o JOIN customers.customers c \
                    ON o.customer_id = c.customer_id WHERE o.order_id <= 200 \
                    AND o.region = 'EU' AND c.region = 'EU'";
    assert_eq!(
        single_i64(&query_as(&engine, "eu_analyst", eu).await.unwrap()),
        single_i64(&query(&engine, by_admin).await.unwrap())
    );
}
