//! A plain Delta version is read as a Parquet scan of exactly the files its log names
//! (`delta_files`), partition columns included; a version that is not plain (here: one with a
//! nested column) is read by deltalake, with the same answers.

use std::path::Path;

use arrow::array::RecordBatch;
use meshql_catalog::Mesh;
use meshql_engine::MeshEngine;

use super::{demo_mesh, query, single_i64, strings};

fn pretty(batches: &[RecordBatch]) -> String {
    arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string()
}

fn fresh_engine(config: &Path) -> MeshEngine {
    MeshEngine::try_new(Mesh::load(config).unwrap()).unwrap()
}

/// The `DataSourceExec` line of `plan` that mentions `table`.
fn scan_line<'a>(plan: &'a str, table: &str) -> &'a str {
    plan.lines()
        .find(|l| l.contains("DataSourceExec") && l.contains(table))
        .unwrap_or_else(|| panic!("no scan of {table} in {plan}"))
}

async fn explain(engine: &MeshEngine, sql: &str) -> String {
    strings(&query(engine, sql).await.unwrap(), 1).join("\n")
}

/// The Parquet files in the directory of `sales.orders`.
fn order_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("buckets/sales/orders"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    files
}

const TOTALS: &str = "SELECT sum(total_amount) AS total, count(order_id) AS n FROM sales.orders";

#[tokio::test]
async fn a_plain_delta_version_is_read_as_exactly_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_mesh(dir.path()).await;
    let engine = fresh_engine(&config);
    let before = pretty(&query(&engine, TOTALS).await.unwrap());

    // Two commits, two files, one Parquet scan of both; no deltalake scan.
    let files = order_files(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    let plan = explain(&engine, &format!("EXPLAIN {TOTALS}")).await;
    assert!(!plan.contains("DeltaScan"), "{plan}");
    let scan = scan_line(&plan, "sales/orders");
    assert!(scan.contains("file_type=parquet"), "{scan}");
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(scan.contains(name), "{name} not in {scan}");
    }

    // A file in the table's directory that no commit added (a failed writer's leftover) is not
    // part of the version: it is not read.
    std::fs::copy(&files[0], files[0].with_file_name("part-leftover.parquet")).unwrap();
    let engine = fresh_engine(&config);
    assert_eq!(pretty(&query(&engine, TOTALS).await.unwrap()), before);

    // The log's bounds skip a file before its footer is read: order ids above 4990 are all in
    // the second commit.
    let recent = "SELECT count(*) FROM sales.orders WHERE order_id > 4990";
    assert_eq!(single_i64(&query(&engine, recent).await.unwrap()), 10);
    let analyzed = explain(&engine, &format!("EXPLAIN ANALYZE {recent}")).await;
    assert!(
        analyzed.contains("files_ranges_pruned_statistics=2 total → 1 matched"),
        "{analyzed}"
    );
}

#[tokio::test]
async fn a_file_gone_from_a_plain_version_fails_the_query_instead_of_dropping_rows() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_mesh(dir.path()).await;
    let files = order_files(dir.path());
    std::fs::remove_file(&files[0]).unwrap();
    let engine = fresh_engine(&config);
    let err = query(&engine, TOTALS).await.unwrap_err().to_string();
    let name = files[0].file_name().unwrap().to_str().unwrap();
    assert!(err.contains(name), "{err}");
    assert!(err.to_lowercase().contains("not found"), "{err}");
    // The engine goes on serving.
    let n = single_i64(
        &query(&engine, "SELECT count(*) FROM sales.order_items")
            .await
            .unwrap(),
    );
    assert!(n > 0);
}

/// Adds `sales.<name>`, the rows of `select` (the orders' columns, maybe more) as a Delta
/// table, under the contract of `sales.orders`.
async fn add_orders_copy(
    engine: &MeshEngine,
    dir: &Path,
    name: &str,
    select: &str,
    partition_by: Option<&str>,
) {
    let rows = query(engine, select).await.unwrap();
    let location = dir.join("buckets/sales").join(name);
    std::fs::create_dir_all(&location).unwrap();
    let mut write =
        deltalake::DeltaTable::try_from_url(url::Url::from_directory_path(&location).unwrap())
            .await
            .unwrap()
            .write(rows)
            .with_save_mode(deltalake::protocol::SaveMode::Append);
    if let Some(column) = partition_by {
        write = write.with_partition_columns([column]);
    }
    write.await.unwrap();
    let products = dir.join("catalog/sales/products");
    let manifest = std::fs::read_to_string(products.join("orders.toml")).unwrap();
    let contract = manifest[..manifest.find("[[inputs]]").unwrap()]
        .replace("name = \"orders\"", &format!("name = \"{name}\""))
        .replace("location = \"orders\"", &format!("location = \"{name}\""));
    std::fs::write(products.join(format!("{name}.toml")), contract).unwrap();
}

/// `sales.orders_by_status`: the orders partitioned by `status` (a column in the middle of the
/// contract), read as Parquet with the partition values from the log.
async fn add_partitioned_orders(engine: &MeshEngine, dir: &Path) {
    let all = "SELECT * FROM sales.orders";
    add_orders_copy(engine, dir, "orders_by_status", all, Some("status")).await;
}

/// `sales.orders_nested`: the orders with one more, nested, column the contract does not
/// expose; a version with a nested column is read by deltalake.
async fn add_nested_orders(engine: &MeshEngine, dir: &Path) {
    let nested = "SELECT *, named_struct('note', status) AS extra FROM sales.orders";
    add_orders_copy(engine, dir, "orders_nested", nested, None).await;
}

const BY_REGION: &str = "SELECT region, count(*) AS n, sum(total_amount) AS total, \
     min(order_ts) AS first FROM sales.{table} WHERE status <> 'cancelled' \
     GROUP BY region ORDER BY region";

#[tokio::test]
async fn a_partitioned_delta_table_is_read_as_parquet_with_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_mesh(dir.path()).await;
    add_partitioned_orders(&fresh_engine(&config), dir.path()).await;
    let engine = fresh_engine(&config);
    let by_region = |table: &str| BY_REGION.replace("{table}", table);
    let plain = pretty(&query(&engine, &by_region("orders")).await.unwrap());
    let partitioned = pretty(
        &query(&engine, &by_region("orders_by_status"))
            .await
            .unwrap(),
    );
    assert_eq!(plain, partitioned);
    assert!(plain.contains("APAC"), "{plain}");
    // Every column in contract order, the partition column's values included.
    let all = |table: &str| format!("SELECT * FROM sales.{table} ORDER BY order_id");
    assert_eq!(
        pretty(&query(&engine, &all("orders")).await.unwrap()),
        pretty(&query(&engine, &all("orders_by_status")).await.unwrap())
    );
    // One file per status; a filter on the partition column reads only its file (the others
    // are left out while planning, by the partition values in the log).
    let returned = "SELECT count(*) FROM sales.orders_by_status WHERE status = 'returned'";
    let n = single_i64(&query(&engine, returned).await.unwrap());
    let expected = "SELECT count(*) FROM sales.orders WHERE status = 'returned'";
    assert_eq!(n, single_i64(&query(&engine, expected).await.unwrap()));
    assert!(n > 0);
    let plan = explain(&engine, &format!("EXPLAIN {returned}")).await;
    assert!(!plan.contains("DeltaScan"), "{plan}");
    let scan = scan_line(&plan, "orders_by_status");
    assert_eq!(scan.matches(".parquet").count(), 1, "{scan}");
    assert!(scan.contains("status=returned/"), "{scan}");
    // A condition on the partition column that is not a plain comparison prunes the same way.
    let some =
        "SELECT count(*) FROM sales.orders_by_status WHERE upper(status) IN ('PLACED', 'SHIPPED')";
    let by_hand = "SELECT count(*) FROM sales.orders WHERE status IN ('placed', 'shipped')";
    assert_eq!(
        single_i64(&query(&engine, some).await.unwrap()),
        single_i64(&query(&engine, by_hand).await.unwrap())
    );
    let plan = explain(&engine, &format!("EXPLAIN {some}")).await;
    let scan = scan_line(&plan, "orders_by_status");
    assert_eq!(scan.matches(".parquet").count(), 2, "{scan}");
    // No file passes: no rows, no scan of anything.
    let none = "SELECT order_id, status FROM sales.orders_by_status WHERE status = 'lost'";
    assert!(query(&engine, none)
        .await
        .unwrap()
        .iter()
        .all(|b| b.num_rows() == 0));
    let plan = explain(&engine, &format!("EXPLAIN {none}")).await;
    assert!(!plan.contains("orders_by_status/status="), "{plan}");
    // The planner sizes the scan by the files read: the row count of `returned`'s one file.
    let session = engine.session(super::principal(&engine, "admin")).unwrap();
    let planned = session
        .plan_sql("SELECT order_id FROM sales.orders_by_status WHERE status = 'returned'")
        .await
        .unwrap();
    let plan = session.physical_plan(&planned).await.unwrap();
    let mut scan = plan;
    while !scan.children().is_empty() && scan.name() != "DataSourceExec" {
        scan = std::sync::Arc::clone(scan.children()[0]);
    }
    assert_eq!(
        scan.name(),
        "DataSourceExec",
        "{}",
        datafusion::physical_plan::displayable(scan.as_ref()).indent(true)
    );
    let rows = datafusion::physical_plan::statistics::StatisticsContext::new()
        .compute(
            scan.as_ref(),
            &datafusion::physical_plan::statistics::StatisticsArgs::new(),
        )
        .unwrap()
        .num_rows;
    assert_eq!(
        rows.get_value(),
        Some(&usize::try_from(n).unwrap()),
        "{rows:?}"
    );
}

#[tokio::test]
async fn partition_values_with_path_characters_are_read_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_mesh(dir.path()).await;
    // Status values with a space, a slash, a colon, a percent sign and an equals sign: the log
    // records the percent-encoded directory of each.
    let odd = "SELECT order_id, customer_id, order_ts, status || ' / a:b%c=d' AS status, \
               total_amount, region FROM sales.orders";
    add_orders_copy(
        &fresh_engine(&config),
        dir.path(),
        "orders_odd",
        odd,
        Some("status"),
    )
    .await;
    let engine = fresh_engine(&config);
    let by_status = "SELECT status, count(*) AS n, sum(total_amount) AS total FROM sales.TABLE \
                     GROUP BY status ORDER BY status";
    let written = pretty(
        &query(
            &engine,
            &format!(
                "SELECT status, count(*) AS n, sum(total_amount) AS total FROM ({odd}) t \
                      GROUP BY status ORDER BY status"
            ),
        )
        .await
        .unwrap(),
    );
    let read = pretty(
        &query(&engine, &by_status.replace("TABLE", "orders_odd"))
            .await
            .unwrap(),
    );
    assert_eq!(written, read);
    assert!(read.contains("returned / a:b%c=d"), "{read}");
    let one = "SELECT count(*) FROM sales.orders_odd WHERE status = 'placed / a:b%c=d'";
    let by_hand = "SELECT count(*) FROM sales.orders WHERE status = 'placed'";
    assert_eq!(
        single_i64(&query(&engine, one).await.unwrap()),
        single_i64(&query(&engine, by_hand).await.unwrap())
    );
    let plan = explain(&engine, &format!("EXPLAIN {one}")).await;
    assert!(!plan.contains("DeltaScan"), "{plan}");
    let scan = scan_line(&plan, "orders_odd");
    assert_eq!(scan.matches(".parquet").count(), 1, "{scan}");
    // The directory as written: Hive-escaped characters, not cut at the slash.
    assert!(!scan.contains("status=placed /"), "{scan}");
}

/// A row filter on a partition column (which may leave files out while planning, behind the
/// policy barrier): the principal sees exactly its rows, its own filters cannot widen them,
/// `EXPLAIN` shows none of the secured scan's files, and guest sees no product at all.
#[tokio::test]
async fn a_row_filter_on_a_partition_column_holds_and_its_files_stay_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_mesh(dir.path()).await;
    let all = "SELECT * FROM sales.orders";
    add_orders_copy(
        &fresh_engine(&config),
        dir.path(),
        "orders_by_region",
        all,
        Some("region"),
    )
    .await;
    let policies = dir.path().join("catalog/sales/policies.toml");
    let text = std::fs::read_to_string(&policies).unwrap();
    let text = text.replace(
        "to = [\"group:regional_analysts\"]\nproducts = [\"orders\"]",
        "to = [\"group:regional_analysts\"]\nproducts = [\"orders\", \"orders_by_region\"]",
    );
    std::fs::write(
        &policies,
        format!(
            "{text}\n[[row_filters]]\nname = \"by_region_own_region\"\nproduct = \
             \"orders_by_region\"\napplies_to = [\"group:regional_analysts\"]\npredicate = \
             \"region = ${{principal.region}}\"\n"
        ),
    )
    .unwrap();
    let engine = fresh_engine(&config);
    let by_region = "SELECT region, count(*) AS n FROM sales.orders_by_region \
                     GROUP BY region ORDER BY region";
    let eu = pretty(
        &super::query_as(&engine, "eu_analyst", by_region)
            .await
            .unwrap(),
    );
    let by_admin = pretty(
        &query(
            &engine,
            "SELECT region, count(*) AS n FROM sales.orders WHERE region = 'EU' GROUP BY region",
        )
        .await
        .unwrap(),
    );
    assert_eq!(eu, by_admin);
    for widen in [
        "SELECT count(*) FROM sales.orders_by_region WHERE region = 'NA'",
        "SELECT count(*) FROM sales.orders_by_region WHERE region <> 'EU' OR true",
    ] {
        let n = single_i64(&super::query_as(&engine, "eu_analyst", widen).await.unwrap());
        let eu_only = if widen.contains("OR true") {
            single_i64(
                &query(
                    &engine,
                    "SELECT count(*) FROM sales.orders WHERE region = 'EU'",
                )
                .await
                .unwrap(),
            )
        } else {
            0
        };
        assert_eq!(n, eu_only, "{widen}");
    }
    // The secured scan, and so its files, stay behind the policy barrier in EXPLAIN.
    let plan = strings(
        &super::query_as(&engine, "eu_analyst", &format!("EXPLAIN {by_region}"))
            .await
            .unwrap(),
        1,
    )
    .join("\n");
    assert!(!plan.contains("region="), "{plan}");
    // guest is not granted the product: it looks missing, as any hidden product.
    let err = super::query_as(&engine, "guest", by_region)
        .await
        .unwrap_err()
        .to_string();
    let missing = super::query_as(&engine, "guest", "SELECT * FROM sales.no_such_thing")
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err.replace("orders_by_region", "X"),
        missing.replace("no_such_thing", "X")
    );
}

#[tokio::test]
async fn a_version_with_a_nested_column_is_read_by_deltalake_with_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_mesh(dir.path()).await;
    add_nested_orders(&fresh_engine(&config), dir.path()).await;
    let engine = fresh_engine(&config);
    let by_region = |table: &str| BY_REGION.replace("{table}", table);
    let plain = pretty(&query(&engine, &by_region("orders")).await.unwrap());
    let nested = pretty(&query(&engine, &by_region("orders_nested")).await.unwrap());
    assert_eq!(plain, nested);
    let plan = explain(&engine, &format!("EXPLAIN {}", by_region("orders_nested"))).await;
    assert!(plan.contains("DeltaScan"), "{plan}");
    // The contract's columns only: the nested one stays invisible.
    let err = query(&engine, "SELECT extra FROM sales.orders_nested")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("extra"), "{err}");
}

/// What a Delta product's scan tells the planner, so that joins are sized: a plain version the
/// statistics of its footers, as a Parquet product (bounds, and the size of the columns read);
/// a version deltalake reads, the bounds from its log (deltalake's scan gives none without a
/// predicate) and no byte size (deltalake's is the whole files'). Under a policy no bounds
/// cross the barrier.
#[tokio::test]
async fn a_delta_scan_reports_bounds_and_sizes_for_join_planning() {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    use datafusion::common::stats::Precision;
    use datafusion::common::Statistics;
    use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
    use datafusion::scalar::ScalarValue;

    let dir = tempfile::tempdir().unwrap();
    let config = demo_mesh(dir.path()).await;
    add_nested_orders(&fresh_engine(&config), dir.path()).await;
    let engine = fresh_engine(&config);
    let real = query(
        &engine,
        "SELECT min(order_id), max(order_id) FROM sales.orders",
    )
    .await
    .unwrap();
    let bound = |i: usize| real[0].column(i).as_primitive::<Int64Type>().value(0);
    let (lo, hi) = (bound(0), bound(1));
    assert!(lo < hi);
    let stats_as = |user: &'static str, table: &'static str| {
        let engine = &engine;
        async move {
            let session = engine.session(super::principal(engine, user)).unwrap();
            let planned = session
                .plan_sql(&format!("SELECT order_id FROM sales.{table}"))
                .await
                .unwrap();
            let plan = session.physical_plan(&planned).await.unwrap();
            StatisticsContext::new()
                .compute(plan.as_ref(), &StatisticsArgs::new())
                .unwrap()
        }
    };
    let value = |p: &Precision<ScalarValue>| p.get_value().cloned();
    let bounds = |s: &Statistics| {
        (
            value(&s.column_statistics[0].min_value),
            value(&s.column_statistics[0].max_value),
        )
    };
    let known = (
        Some(ScalarValue::Int64(Some(lo))),
        Some(ScalarValue::Int64(Some(hi))),
    );

    // The plain version: the footers' figures, as for the same data in Parquet.
    let plain = stats_as("admin", "orders").await;
    assert_eq!(bounds(&plain), known);
    assert_eq!(plain.column_statistics[0].null_count.get_value(), Some(&0));
    assert!(plain.num_rows.get_value().is_some_and(|n| *n == 5000));
    let size = *plain.total_byte_size.get_value().expect("a byte size");
    assert!(size > 0);
    // The size is that of the one column read, not of the whole files.
    let files: u64 = order_files(dir.path())
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!((size as u64) < files, "{size} of {files}");

    // Read by deltalake: bounds from the log, as estimates; no byte size.
    let by_deltalake = stats_as("admin", "orders_nested").await;
    assert_eq!(
        by_deltalake.column_statistics[0].min_value,
        Precision::Inexact(ScalarValue::Int64(Some(lo)))
    );
    assert_eq!(
        by_deltalake.column_statistics[0].max_value,
        Precision::Inexact(ScalarValue::Int64(Some(hi)))
    );
    assert_eq!(
        by_deltalake.column_statistics[0].null_count,
        Precision::Inexact(0)
    );
    assert!(by_deltalake.num_rows.get_value().is_some_and(|n| *n > 0));
    assert_eq!(by_deltalake.total_byte_size, Precision::Absent);

    // eu_analyst reads sales.orders through a row filter: no bounds cross the barrier.
    let policed = stats_as("eu_analyst", "orders").await;
    assert_eq!(bounds(&policed), (None, None));
    assert!(policed.num_rows.get_value().is_some());
}
