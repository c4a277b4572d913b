//! A plain Delta version is read as a Parquet scan of exactly the files its log names
//! (`delta_files`); a version that needs deltalake's per-file work (here: partition columns)
//! is read by deltalake, with the same answers.

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
    let scan = plan
        .lines()
        .find(|l| l.contains("DataSourceExec") && l.contains("sales/orders"))
        .unwrap_or_else(|| panic!("{plan}"));
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

#[tokio::test]
async fn a_partitioned_delta_table_is_read_by_deltalake_with_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_mesh(dir.path()).await;
    let engine = fresh_engine(&config);
    // sales.orders_by_region: the orders again, partitioned by region.
    let rows = query(&engine, "SELECT * FROM sales.orders").await.unwrap();
    let location = dir.path().join("buckets/sales/orders_by_region");
    std::fs::create_dir_all(&location).unwrap();
    deltalake::DeltaTable::try_from_url(url::Url::from_directory_path(&location).unwrap())
        .await
        .unwrap()
        .write(rows)
        .with_partition_columns(["region"])
        .with_save_mode(deltalake::protocol::SaveMode::Append)
        .await
        .unwrap();
    let products = dir.path().join("catalog/sales/products");
    let manifest = std::fs::read_to_string(products.join("orders.toml")).unwrap();
    let contract = manifest[..manifest.find("[[inputs]]").unwrap()]
        .replace("name = \"orders\"", "name = \"orders_by_region\"")
        .replace("location = \"orders\"", "location = \"orders_by_region\"");
    std::fs::write(products.join("orders_by_region.toml"), contract).unwrap();

    let engine = fresh_engine(&config);
    let by_region = |table: &str| {
        format!(
            "SELECT region, count(*) AS n, sum(total_amount) AS total, min(order_ts) AS first \
             FROM sales.{table} WHERE status <> 'cancelled' GROUP BY region ORDER BY region"
        )
    };
    let plain = pretty(&query(&engine, &by_region("orders")).await.unwrap());
    let partitioned = pretty(
        &query(&engine, &by_region("orders_by_region"))
            .await
            .unwrap(),
    );
    assert_eq!(plain, partitioned);
    assert!(plain.contains("APAC"), "{plain}");
    let plan = explain(
        &engine,
        &format!("EXPLAIN {}", by_region("orders_by_region")),
    )
    .await;
    assert!(plan.contains("DeltaScan"), "{plan}");
}
