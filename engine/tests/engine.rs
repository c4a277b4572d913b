//! Engine integration tests over a freshly generated demo mesh.

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use futures::TryStreamExt;
use meshql_catalog::{Mesh, Principal};
use meshql_engine::demo::{write_demo, DemoOptions};
use meshql_engine::{EngineError, MeshEngine};

async fn demo_mesh(dir: &Path) -> PathBuf {
    let opts = DemoOptions {
        dir: dir.to_path_buf(),
        scale: 1,
        force: false,
    };
    let mut progress = |_: &str| {};
    let report = write_demo(&opts, &mut progress).await.expect("demo mesh");
    report.config
}

async fn engine(dir: &Path) -> MeshEngine {
    let config = demo_mesh(dir).await;
    MeshEngine::try_new(Mesh::load(&config).expect("load mesh")).expect("engine")
}

async fn query(engine: &MeshEngine, sql: &str) -> Result<Vec<RecordBatch>, EngineError> {
    let session = engine.session(Principal::new("admin"))?;
    let (_, stream) = session.sql(sql).await?;
    stream.try_collect().await
}

fn single_i64(batches: &[RecordBatch]) -> i64 {
    let b = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    b.column(0).as_primitive::<Int64Type>().value(0)
}

#[tokio::test]
async fn cross_domain_join_over_parquet_and_delta() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let batches = query(
        &engine,
        "SELECT o.order_id, c.name, s.carrier, o.total_amount
         FROM sales.orders o
         JOIN customers.customers c ON o.customer_id = c.customer_id
         JOIN shipping.shipments s ON s.order_id = o.order_id
         ORDER BY o.order_id LIMIT 20",
    )
    .await
    .unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 20);
    let schema = batches[0].schema();
    // Client-facing types: no views, decimals as Decimal128.
    assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
    assert_eq!(schema.field(3).data_type(), &DataType::Decimal128(12, 2));
}

#[tokio::test]
async fn orders_have_two_delta_commits_and_items_several_files() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let log = dir.path().join("buckets/sales/orders/_delta_log");
    assert!(
        log.join("00000000000000000001.json").exists(),
        "second commit of sales.orders"
    );
    let files = std::fs::read_dir(dir.path().join("buckets/sales/order_items"))
        .unwrap()
        .count();
    assert!(files >= 3, "{files} files");
    let n = single_i64(
        &query(&engine, "SELECT count(*) FROM sales.orders")
            .await
            .unwrap(),
    );
    assert_eq!(n, 5000);
}

#[tokio::test]
async fn shipments_have_nulls_where_not_yet_shipped_and_reshipments() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let unshipped = single_i64(&query(&engine, "SELECT count(*) FROM shipping.shipments WHERE shipped_at IS NULL AND carrier_shipped_on IS NULL").await.unwrap());
    assert!(unshipped > 0);
    let reshipped = single_i64(
        &query(&engine, "SELECT count(*) FROM (SELECT order_id FROM shipping.shipments GROUP BY order_id HAVING count(*) > 1)").await.unwrap(),
    );
    assert!(reshipped > 0);
    let late = single_i64(
        &query(
            &engine,
            "SELECT count(*) FROM shipping.shipments WHERE delivered_at > promised_at",
        )
        .await
        .unwrap(),
    );
    assert!(late > 0);
}

#[tokio::test]
async fn products_expose_exactly_their_contract_columns() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let batches = query(&engine, "SELECT * FROM customers.customers LIMIT 1")
        .await
        .unwrap();
    let names: Vec<_> = batches[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "customer_id",
            "name",
            "email",
            "country",
            "region",
            "tier",
            "signup_date"
        ]
    );
    // A column the data has but the contract lacks is not exposed: drop `tier` from the contract.
    let manifest = dir.path().join("catalog/customers/products/customers.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let start = text.find("[[schema]]\nname = \"tier\"").unwrap();
    let end = start + text[start..].find("\n\n").unwrap();
    std::fs::write(&manifest, format!("{}{}", &text[..start], &text[end + 2..])).unwrap();
    let engine = MeshEngine::try_new(Mesh::load(&dir.path().join("meshql.toml")).unwrap()).unwrap();
    let err = query(&engine, "SELECT tier FROM customers.customers")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("tier"), "{err}");
}

#[tokio::test]
async fn contract_mismatch_names_product_and_column() {
    let dir = tempfile::tempdir().unwrap();
    demo_mesh(dir.path()).await;
    let manifest = dir.path().join("catalog/inventory/products/stock.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace(
            "name = \"on_hand\"\ntype = \"int\"",
            "name = \"on_hand\"\ntype = \"string\"",
        ),
    )
    .unwrap();
    let engine = MeshEngine::try_new(Mesh::load(&dir.path().join("meshql.toml")).unwrap()).unwrap();
    let err = query(&engine, "SELECT * FROM inventory.stock")
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::ContractViolation { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("inventory.stock") && msg.contains("on_hand"),
        "{msg}"
    );
    let problems = engine.check_data().await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].0, "inventory.stock");
    // Other products are unaffected.
    query(&engine, "SELECT count(*) FROM sales.order_items")
        .await
        .unwrap();
}

#[tokio::test]
async fn deleted_files_give_an_error_naming_the_product() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    // Parquet: the whole product directory is gone.
    std::fs::remove_dir_all(dir.path().join("buckets/inventory/stock")).unwrap();
    let err = query(&engine, "SELECT * FROM inventory.stock")
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::ProductUnavailable { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("inventory.stock"), "{err}");
    // Delta: the log is intact but a data file was deleted.
    let orders = dir.path().join("buckets/sales/orders");
    let data_file = std::fs::read_dir(&orders)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .unwrap();
    std::fs::remove_file(data_file).unwrap();
    let err = query(&engine, "SELECT * FROM sales.orders")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sales.orders"), "{err}");
    // The rest of the mesh keeps working.
    let n = single_i64(
        &query(&engine, "SELECT count(*) FROM customers.customers")
            .await
            .unwrap(),
    );
    assert_eq!(n, 1000);
}

#[tokio::test]
async fn read_only_surface() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    for sql in [
        "CREATE TABLE t (a INT)",
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO sales.orders SELECT * FROM sales.orders",
        "COPY (SELECT 1) TO '/tmp/meshql-copy-test.csv'",
        "SET datafusion.execution.batch_size = 1",
        "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc'",
        "CREATE VIEW v AS SELECT 1",
        "DROP TABLE sales.orders",
    ] {
        let err = query(&engine, sql).await.unwrap_err();
        assert!(
            matches!(err, EngineError::ReadOnly(_) | EngineError::Plan(_)),
            "{sql}: {err:?}"
        );
    }
    assert!(!Path::new("/tmp/meshql-copy-test.csv").exists());
    let err = query(&engine, "SELECT * FROM '/etc/passwd'")
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Plan(_)), "{err:?}");
}

#[tokio::test]
async fn system_schema_and_information_schema_list_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let n = single_i64(
        &query(&engine, "SELECT count(*) FROM meshql.products")
            .await
            .unwrap(),
    );
    assert_eq!(n, 6);
    let n = single_i64(
        &query(
            &engine,
            "SELECT count(*) FROM meshql.columns WHERE classification = 'pii'",
        )
        .await
        .unwrap(),
    );
    assert_eq!(n, 1);
    let n = single_i64(
        &query(
            &engine,
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'sales'",
        )
        .await
        .unwrap(),
    );
    assert_eq!(n, 2);
    let batches = query(&engine, "SHOW TABLES").await.unwrap();
    assert!(batches.iter().map(|b| b.num_rows()).sum::<usize>() >= 6);
}

#[tokio::test]
async fn demo_is_idempotent_and_keeps_user_edits() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_mesh(dir.path()).await;
    let before = std::fs::read_to_string(&config).unwrap();
    let edited = before.replace("bind = \"127.0.0.1:50051\"", "bind = \"127.0.0.1:6000\"");
    std::fs::write(&config, &edited).unwrap();
    let opts = DemoOptions {
        dir: dir.path().to_path_buf(),
        scale: 1,
        force: false,
    };
    let mut progress = |_: &str| {};
    let report = write_demo(&opts, &mut progress).await.unwrap();
    assert_eq!(report.kept_edits, vec![config.clone()]);
    assert_eq!(report.existing_data.len(), 6);
    assert!(report.written.is_empty(), "{:?}", report.written);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);
}

#[tokio::test]
async fn null_counts_match_between_formats() {
    // The demo is deterministic: two generations give identical data.
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ea = engine(a.path()).await;
    let eb = engine(b.path()).await;
    let sql = "SELECT sum(total_amount), count(*) FROM sales.orders";
    let ra = query(&ea, sql).await.unwrap();
    let rb = query(&eb, sql).await.unwrap();
    assert_eq!(ra[0].column(0).to_data(), rb[0].column(0).to_data());
}

#[tokio::test]
async fn corrupt_files_give_an_error_naming_the_product() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    // Truncate one Parquet file of a Parquet product and one data file of a Delta product.
    let items = dir
        .path()
        .join("buckets/sales/order_items/order_items-001.parquet");
    let bytes = std::fs::read(&items).unwrap();
    std::fs::write(&items, &bytes[..bytes.len() / 2]).unwrap();
    let err = query(&engine, "SELECT sum(quantity) FROM sales.order_items")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sales.order_items"), "{err}");
    let leads = dir.path().join("buckets/marketing/leads");
    let data_file = std::fs::read_dir(&leads)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .unwrap();
    std::fs::write(&data_file, b"this is not parquet").unwrap();
    let err = query(&engine, "SELECT count(campaign) FROM marketing.leads")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("marketing.leads"), "{err}");
    // Nothing panicked and the engine keeps answering.
    let n = single_i64(
        &query(&engine, "SELECT count(*) FROM inventory.stock")
            .await
            .unwrap(),
    );
    assert_eq!(n, 800);
}

#[tokio::test]
async fn parameters_are_bound_as_values() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let session = engine.session(Principal::new("admin")).unwrap();
    let q = session
        .plan_sql("SELECT count(*) FROM customers.customers WHERE region = $1 AND customer_id > $2")
        .await
        .unwrap();
    let params = q.parameter_schema().unwrap();
    let names: Vec<_> = params.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["$1", "$2"]);
    assert_eq!(params.field(0).data_type(), &DataType::Utf8);
    assert_eq!(params.field(1).data_type(), &DataType::Int64);
    use datafusion::scalar::ScalarValue;
    // An injection attempt is just a string that matches nothing.
    let evil = q
        .bind(vec![
            ScalarValue::from("EU' OR '1'='1"),
            ScalarValue::Int64(Some(0)),
        ])
        .unwrap();
    let batches: Vec<RecordBatch> = session
        .execute(evil)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(single_i64(&batches), 0);
    // Int32 for an Int64 parameter is cast.
    let eu = q
        .bind(vec![ScalarValue::from("EU"), ScalarValue::Int32(Some(0))])
        .unwrap();
    let batches: Vec<RecordBatch> = session
        .execute(eu)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(single_i64(&batches) > 100);
    assert!(q.bind(vec![ScalarValue::from("EU")]).is_err());
}
