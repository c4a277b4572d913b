//! Engine integration tests over a freshly generated demo mesh.

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use futures::TryStreamExt;
use meshql_catalog::{Mesh, Principal};
use meshql_engine::demo::{write_demo, DemoOptions};
use meshql_engine::{EngineError, MeshEngine};

// Quality rules, product status, freshness SLAs and lineage.
#[path = "engine/quality.rs"]
mod quality;

// Plain Delta versions read as their Parquet files; the others by deltalake (issue 13).
#[path = "engine/delta_files.rs"]
mod delta_files;

// Hot reload of the catalog.
#[path = "engine/reload.rs"]
mod reload;

// The result cache and Parquet row filters (issue 13).
#[path = "engine/result_cache.rs"]
mod result_cache;

// Repeated aggregations computed once per query (issue 13).
#[path = "engine/shared_subplan.rs"]
mod shared_subplan;

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

/// The demo principal `user`, as configured.
fn principal(engine: &MeshEngine, user: &str) -> Principal {
    Principal::from_user(engine.mesh().config.user(user).expect("demo user"))
}

async fn query(engine: &MeshEngine, sql: &str) -> Result<Vec<RecordBatch>, EngineError> {
    query_as(engine, "admin", sql).await
}

async fn query_as(
    engine: &MeshEngine,
    user: &str,
    sql: &str,
) -> Result<Vec<RecordBatch>, EngineError> {
    let session = engine.session(principal(engine, user))?;
    let (_, stream) = session.sql(sql).await?;
    stream.try_collect().await
}

/// Appends the rows `sql` returns (as admin, orders' columns) to sales.orders as a new Delta
/// commit.
async fn append_to_orders(engine: &MeshEngine, dir: &Path, sql: &str) {
    let batches = query(engine, sql).await.unwrap();
    let url = url::Url::from_directory_path(dir.join("buckets/sales/orders")).unwrap();
    deltalake::DeltaTable::try_from_url(url)
        .await
        .unwrap()
        .write(batches)
        .with_save_mode(deltalake::protocol::SaveMode::Append)
        .await
        .unwrap();
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
            matches!(err, EngineError::ReadOnly(_) | EngineError::Plan { .. }),
            "{sql}: {err:?}"
        );
    }
    assert!(!Path::new("/tmp/meshql-copy-test.csv").exists());
    let err = query(&engine, "SELECT * FROM '/etc/passwd'")
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Plan { .. }), "{err:?}");
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
    assert_eq!(n, 7);
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
    assert!(batches.iter().map(|b| b.num_rows()).sum::<usize>() >= 7);
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
    assert_eq!(report.existing_data.len(), 7);
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
    let session = engine.session(principal(&engine, "admin")).unwrap();
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

/// A metric of `line` as EXPLAIN ANALYZE prints it ("12", "12.48 K", "6.00 M"), as a number.
pub(crate) fn metric(line: &str, name: &str) -> Option<f64> {
    let at = [' ', '[']
        .iter()
        .find_map(|c| line.find(&format!("{c}{name}=")))?
        + name.len()
        + 2;
    let text: String = line[at..]
        .chars()
        .take_while(|c| *c != ',' && *c != ']')
        .collect();
    let (number, unit) = text.split_once(' ').unwrap_or((&text, ""));
    let scale = match unit {
        "" => 1.0,
        "K" => 1e3,
        "M" => 1e6,
        other => panic!("unit {other} in {line}"),
    };
    Some(number.parse::<f64>().ok()? * scale)
}

// ---------------------------------------------------------------------------------------------
// Access control (SPEC §6, §7)

fn strings(batches: &[RecordBatch], col: usize) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let c = arrow::compute::cast(b.column(col), &DataType::Utf8).unwrap();
        out.extend(
            c.as_string::<i32>()
                .iter()
                .map(|v| v.unwrap_or("NULL").to_string()),
        );
    }
    out
}

async fn visible_products(engine: &MeshEngine, user: &str) -> Vec<String> {
    let session = engine.session(principal(engine, user)).unwrap();
    let mut names: Vec<String> = session
        .tables()
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.table_type == "TABLE")
        .map(|t| format!("{}.{}", t.schema, t.name))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn each_demo_principal_sees_exactly_its_products() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let all = [
        "customers.customers",
        "inventory.stock",
        "marketing.leads",
        "sales.order_items",
        "sales.orders",
        "shipping.delivery_performance",
        "shipping.shipments",
    ];
    let expected: &[(&str, &[&str])] = &[
        ("admin", &all),
        (
            "sales_analyst",
            &[
                "customers.customers",
                "sales.order_items",
                "sales.orders",
                "shipping.shipments",
            ],
        ),
        ("eu_analyst", &["customers.customers", "sales.orders"]),
        (
            "shipping_ds",
            &[
                "sales.order_items",
                "sales.orders",
                "shipping.delivery_performance",
                "shipping.shipments",
            ],
        ),
        ("guest", &[]),
    ];
    for (user, products) in expected {
        assert_eq!(
            visible_products(&engine, user).await,
            products.to_vec(),
            "{user}"
        );
        // SQL agrees with metadata: every visible product can be queried, every other one is
        // "not found".
        for p in all {
            let r = query_as(&engine, user, &format!("SELECT * FROM {p} LIMIT 1")).await;
            assert_eq!(
                r.is_ok(),
                products.contains(&p),
                "{user} reading {p}: {r:?}"
            );
        }
        // meshql.products and information_schema list the same products.
        let b = query_as(
            &engine,
            user,
            "SELECT domain || '.' || name FROM meshql.products ORDER BY 1",
        )
        .await
        .unwrap();
        assert_eq!(strings(&b, 0), products.to_vec(), "{user} meshql.products");
        let b = query_as(
            &engine,
            user,
            "SELECT table_schema || '.' || table_name FROM information_schema.tables \
             WHERE table_schema NOT IN ('information_schema', 'meshql') ORDER BY 1",
        )
        .await
        .unwrap();
        assert_eq!(
            strings(&b, 0),
            products.to_vec(),
            "{user} information_schema"
        );
    }
}

#[tokio::test]
async fn a_hidden_product_looks_exactly_like_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let hidden = query_as(&engine, "guest", "SELECT * FROM sales.orders")
        .await
        .unwrap_err();
    let missing = query_as(&engine, "guest", "SELECT * FROM sales.no_such_thing")
        .await
        .unwrap_err();
    assert_eq!(
        hidden.to_string().replace("orders", "X"),
        missing.to_string().replace("no_such_thing", "X")
    );
    assert_eq!(
        std::mem::discriminant(&hidden),
        std::mem::discriminant(&missing)
    );
    // Same for a partially visible domain: shipping_ds sees sales but not customers.
    let hidden = query_as(&engine, "sales_analyst", "SELECT * FROM inventory.stock")
        .await
        .unwrap_err();
    let missing = query_as(&engine, "sales_analyst", "SELECT * FROM nowhere.stock")
        .await
        .unwrap_err();
    assert_eq!(
        hidden.to_string().replace("inventory", "X"),
        missing.to_string().replace("nowhere", "X")
    );
}

#[tokio::test]
async fn row_filters_hold_against_statistics_and_failing_predicates() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let eu = single_i64(
        &query(
            &engine,
            "SELECT count(*) FROM customers.customers WHERE region = 'EU'",
        )
        .await
        .unwrap(),
    );
    let total = single_i64(
        &query(&engine, "SELECT count(*) FROM customers.customers")
            .await
            .unwrap(),
    );
    assert!(eu > 0 && eu < total);
    // The Parquet footer says `total`: the answer must not come from it.
    let n = single_i64(
        &query_as(
            &engine,
            "eu_analyst",
            "SELECT count(*) FROM customers.customers",
        )
        .await
        .unwrap(),
    );
    assert_eq!(n, eu);
    // A predicate that fails on hidden rows never sees them.
    let b = query_as(
        &engine,
        "eu_analyst",
        "SELECT count(*) FROM customers.customers WHERE 1 / (CASE WHEN region = 'EU' THEN 1 ELSE 0 END) = 1",
    )
    .await
    .unwrap();
    assert_eq!(single_i64(&b), eu);
    let b = query_as(
        &engine,
        "eu_analyst",
        "SELECT DISTINCT region FROM sales.orders",
    )
    .await
    .unwrap();
    assert_eq!(strings(&b, 0), ["EU"]);
    // A join of two filtered products stays within the filters.
    let b = query_as(
        &engine,
        "eu_analyst",
        "SELECT count(*) FROM sales.orders o JOIN customers.customers c ON o.customer_id = c.customer_id WHERE c.region <> 'EU'",
    )
    .await
    .unwrap();
    assert_eq!(single_i64(&b), 0);
}

#[tokio::test]
async fn masks_apply_at_the_table_reference() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let real = strings(
        &query(
            &engine,
            "SELECT email FROM customers.customers ORDER BY customer_id LIMIT 1",
        )
        .await
        .unwrap(),
        0,
    );
    assert!(real[0].contains('@'));
    let b = query_as(
        &engine,
        "sales_analyst",
        "SELECT email FROM customers.customers LIMIT 5",
    )
    .await
    .unwrap();
    assert_eq!(b[0].schema().field(0).data_type(), &DataType::Utf8);
    assert!(strings(&b, 0).iter().all(|e| e == "***"));
    let b = query_as(
        &engine,
        "sales_analyst",
        &format!(
            "SELECT count(*) FROM customers.customers WHERE email = '{}'",
            real[0]
        ),
    )
    .await
    .unwrap();
    assert_eq!(single_i64(&b), 0);
    let b = query_as(
        &engine,
        "sales_analyst",
        "SELECT email, count(*) FROM customers.customers GROUP BY email",
    )
    .await
    .unwrap();
    assert_eq!(strings(&b, 0), ["***"]);
    // Joins see masked values too.
    let b = query_as(
        &engine,
        "sales_analyst",
        "SELECT count(*) FROM customers.customers a JOIN customers.customers b ON a.email = b.email",
    )
    .await
    .unwrap();
    assert_eq!(single_i64(&b), 1000 * 1000);
    // An ordered aggregate over a masked column after a join plans and runs (found by the
    // fuzzer: it failed with "SanityCheckPlan ... does not satisfy order requirements").
    for user in ["sales_analyst", "eu_analyst"] {
        let b = query_as(
            &engine,
            user,
            "SELECT count(*), string_agg(c.email, ',' ORDER BY c.email) LIKE '***,%' \
             FROM sales.orders o JOIN customers.customers c ON o.customer_id = c.customer_id \
             GROUP BY FALSE",
        )
        .await
        .unwrap_or_else(|e| panic!("{user}: {e}"));
        assert!(single_i64(&b) > 0, "{user}");
        assert!(b[0].column(1).as_boolean().value(0), "{user}");
    }
    // pii_reader sees the real value.
    let admin = strings(
        &query(
            &engine,
            "SELECT email FROM customers.customers ORDER BY customer_id LIMIT 1",
        )
        .await
        .unwrap(),
        0,
    );
    assert_eq!(admin, real);
}

#[tokio::test]
async fn limit_holds_when_no_column_is_read() {
    // Found by the fuzzer: a Delta product read without columns (deltalake's metadata-only
    // scan) returned every row despite LIMIT.
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    for (user, product) in [
        ("admin", "sales.orders"),
        ("admin", "shipping.shipments"),
        ("admin", "marketing.leads"),
        ("admin", "sales.order_items"),
        ("sales_analyst", "sales.orders"),
        ("eu_analyst", "sales.orders"),
    ] {
        let rows: usize = query_as(&engine, user, &format!("SELECT 1 FROM {product} LIMIT 3"))
            .await
            .unwrap()
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        assert_eq!(rows, 3, "{user}: {product}");
        let b = query_as(
            &engine,
            user,
            &format!("SELECT count(*) FROM (SELECT 1 FROM {product} LIMIT 3)"),
        )
        .await
        .unwrap();
        assert_eq!(single_i64(&b), 3, "{user}: {product}");
    }
    // Counting from metadata still answers.
    let b = query(&engine, "SELECT count(*) FROM sales.orders")
        .await
        .unwrap();
    assert_eq!(single_i64(&b), 5000);
}

#[tokio::test]
async fn explain_does_not_reveal_policies() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    for sql in [
        "EXPLAIN SELECT name, email FROM customers.customers WHERE tier = 'gold'",
        "EXPLAIN VERBOSE SELECT name, email FROM customers.customers WHERE tier = 'gold'",
        "EXPLAIN ANALYZE SELECT name, email FROM customers.customers WHERE tier = 'gold'",
    ] {
        let b = query_as(&engine, "eu_analyst", sql).await.unwrap();
        let text = strings(&b, 1).join("\n");
        assert!(text.contains("customers"), "{text}");
        for secret in ["EU", "***", "region ="] {
            assert!(!text.contains(secret), "{sql} reveals `{secret}`:\n{text}");
        }
    }
}

/// The number of rows of one Parquet file, from its footer.
fn parquet_rows(path: &Path) -> i64 {
    let reader =
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(path).unwrap())
            .unwrap();
    parquet::file::reader::FileReader::metadata(&reader)
        .file_metadata()
        .num_rows()
}

fn replace_in(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from} not in {}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

#[tokio::test]
async fn a_row_filter_may_use_a_column_the_principal_cannot_select() {
    let dir = tempfile::tempdir().unwrap();
    demo_mesh(dir.path()).await;
    // Regional analysts may read orders without the region column; the filter still uses it.
    replace_in(
        &dir.path().join("catalog/sales/policies.toml"),
        "to = [\"group:regional_analysts\"]\nproducts = [\"orders\"]",
        "to = [\"group:regional_analysts\"]\nproducts = [\"orders\"]\ncolumns = [\"order_id\", \"customer_id\", \"order_ts\", \"status\", \"total_amount\"]",
    );
    let engine = MeshEngine::try_new(Mesh::load(&dir.path().join("meshql.toml")).unwrap()).unwrap();
    let eu = single_i64(
        &query(
            &engine,
            "SELECT count(*) FROM sales.orders WHERE region = 'EU'",
        )
        .await
        .unwrap(),
    );
    let n = single_i64(
        &query_as(&engine, "eu_analyst", "SELECT count(*) FROM sales.orders")
            .await
            .unwrap(),
    );
    assert_eq!(n, eu);
    let b = query_as(&engine, "eu_analyst", "SELECT * FROM sales.orders LIMIT 1")
        .await
        .unwrap();
    let names: Vec<_> = b[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "order_id",
            "customer_id",
            "order_ts",
            "status",
            "total_amount"
        ]
    );
    let err = query_as(&engine, "eu_analyst", "SELECT region FROM sales.orders")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("region"), "{err}");
    let session = engine.session(principal(&engine, "eu_analyst")).unwrap();
    let orders = session
        .tables()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == "orders")
        .unwrap();
    assert!(orders.arrow_schema.field_with_name("region").is_err());
}

#[tokio::test]
async fn a_malformed_policy_fails_closed_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    demo_mesh(dir.path()).await;
    replace_in(
        &dir.path().join("catalog/customers/policies.toml"),
        "predicate = \"region = ${principal.region}\"",
        "predicate = \"region = ${principal.region} OR secret_backdoor_column > 1\"",
    );
    let engine = MeshEngine::try_new(Mesh::load(&dir.path().join("meshql.toml")).unwrap()).unwrap();
    let err = query_as(
        &engine,
        "eu_analyst",
        "SELECT count(*) FROM customers.customers",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, EngineError::AccessDenied { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("customers.customers")
            && !msg.contains("secret_backdoor_column")
            && !msg.contains("region ="),
        "{msg}"
    );
    // Principals the broken filter does not apply to are unaffected.
    query_as(
        &engine,
        "sales_analyst",
        "SELECT count(*) FROM customers.customers",
    )
    .await
    .unwrap();
    // Unsafe policies are rejected too: a subquery reading another product.
    replace_in(
        &dir.path().join("catalog/customers/policies.toml"),
        "region = ${principal.region} OR secret_backdoor_column > 1",
        "customer_id IN (SELECT customer_id FROM sales.orders)",
    );
    let engine = MeshEngine::try_new(Mesh::load(&dir.path().join("meshql.toml")).unwrap()).unwrap();
    let err = query_as(
        &engine,
        "eu_analyst",
        "SELECT count(*) FROM customers.customers",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, EngineError::AccessDenied { .. }), "{err:?}");
}

#[tokio::test]
async fn read_only_for_every_principal() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    for user in ["admin", "sales_analyst", "guest"] {
        for sql in [
            "CREATE TABLE t AS SELECT 1",
            "SET datafusion.execution.batch_size = 1",
            "COPY (SELECT 1) TO '/tmp/x.csv'",
        ] {
            let err = query_as(&engine, user, sql).await.unwrap_err();
            assert!(
                matches!(err, EngineError::ReadOnly(_)),
                "{user}: {sql}: {err:?}"
            );
        }
    }
}

#[tokio::test]
async fn reads_record_products_versions_columns_and_policies() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let session = engine.session(principal(&engine, "eu_analyst")).unwrap();
    let (_, stream) = session.sql("SELECT o.order_id, c.email FROM sales.orders o JOIN customers.customers c USING (customer_id)").await.unwrap();
    let _: Vec<RecordBatch> = stream.try_collect().await.unwrap();
    let mut reads = session.reads();
    reads.sort_by(|a, b| a.product.cmp(&b.product));
    assert_eq!(reads[0].product, "customers.customers");
    assert_eq!(reads[0].policies, ["customers_own_region", "mask_pii"]);
    assert!(reads[0].columns.contains(&"email".to_string()));
    assert_eq!(reads[1].product, "sales.orders");
    assert_eq!(reads[1].delta_version, Some(1));
    assert_eq!(reads[1].policies, ["orders_own_region"]);
}

#[tokio::test]
async fn lint_type_checks_policies() {
    let dir = tempfile::tempdir().unwrap();
    demo_mesh(dir.path()).await;
    let load =
        || MeshEngine::try_new(Mesh::load(&dir.path().join("meshql.toml")).unwrap()).unwrap();
    assert_eq!(
        load().check_policies(),
        vec![],
        "the demo policies are valid"
    );
    let policies = dir.path().join("catalog/customers/policies.toml");
    let text = std::fs::read_to_string(&policies).unwrap();
    std::fs::write(
        &policies,
        format!(
            "{text}\n[[row_filters]]\nname = \"agg\"\nproduct = \"customers\"\npredicate = \"count(*) > 1\"\n\
             \n[[row_filters]]\nname = \"not_bool\"\nproduct = \"customers\"\npredicate = \"customer_id + 1\"\n\
             \n[[row_filters]]\nname = \"other_product\"\nproduct = \"customers\"\npredicate = \"order_id > 1\"\n\
             \n[[masks]]\nname = \"bad_type\"\nproduct = \"customers\"\ncolumn = \"signup_date\"\nexpression = \"make_array(1, 2)\"\n"
        ),
    )
    .unwrap();
    let problems = load().check_policies();
    let fields: Vec<&str> = problems.iter().map(|(_, f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "row_filters[1].predicate",
            "row_filters[2].predicate",
            "row_filters[3].predicate",
            "masks[0].expression"
        ],
        "{problems:#?}"
    );
    assert!(problems[0].2.contains("aggregate"), "{problems:#?}");
    assert!(problems[1].2.contains("not boolean"), "{problems:#?}");
    assert!(problems.iter().all(|(f, _, _)| f == &policies));
}

#[tokio::test]
async fn every_query_leaves_an_audit_record() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let audit_file = dir.path().join("audit/audit.jsonl");
    // Success, a refused statement, a hidden product, and a query dropped after one batch.
    query_as(
        &engine,
        "eu_analyst",
        "SELECT name FROM customers.customers",
    )
    .await
    .unwrap();
    query_as(&engine, "eu_analyst", "DROP TABLE sales.orders")
        .await
        .unwrap_err();
    query_as(&engine, "eu_analyst", "SELECT * FROM inventory.stock")
        .await
        .unwrap_err();
    {
        let session = engine.session(principal(&engine, "eu_analyst")).unwrap();
        let (_, mut stream) = session
            .sql("SELECT * FROM generate_series(1, 100000000)")
            .await
            .unwrap();
        use futures::StreamExt;
        stream.next().await.unwrap().unwrap();
    }
    engine.flush_audit();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&audit_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(lines.iter().all(|l| l["user"] == "eu_analyst"));
    assert_eq!(lines[0]["outcome"], "ok");
    let eu = single_i64(
        &query(
            &engine,
            "SELECT count(*) FROM customers.customers WHERE region = 'EU'",
        )
        .await
        .unwrap(),
    );
    assert_eq!(lines[0]["rows"], eu);
    assert_eq!(lines[0]["products"][0]["product"], "customers.customers");
    assert_eq!(
        lines[0]["products"][0]["columns"],
        serde_json::json!(["name"])
    );
    assert_eq!(
        lines[0]["products"][0]["policies"],
        serde_json::json!(["customers_own_region", "mask_pii"])
    );
    assert_eq!(lines[1]["outcome"], "error");
    assert!(lines[1]["error"].as_str().unwrap().contains("read-only"));
    assert_eq!(lines[2]["outcome"], "error");
    assert_eq!(lines[3]["outcome"], "cancelled");
    assert_eq!(lines[0]["sql"], "SELECT name FROM customers.customers");
    assert_eq!(lines[0]["sql_sha256"].as_str().unwrap().len(), 64);
    // meshql.audit: a principal sees its own records; admin sees everyone's.
    let own = single_i64(
        &query_as(
            &engine,
            "sales_analyst",
            "SELECT count(*) FROM meshql.audit",
        )
        .await
        .unwrap(),
    );
    assert_eq!(own, 0);
    let all = single_i64(
        &query(
            &engine,
            "SELECT count(*) FROM meshql.audit WHERE user = 'eu_analyst'",
        )
        .await
        .unwrap(),
    );
    assert_eq!(all, 4);
    let mine = single_i64(
        &query_as(&engine, "eu_analyst", "SELECT count(*) FROM meshql.audit")
            .await
            .unwrap(),
    );
    assert!(mine >= 4);
}

#[tokio::test]
async fn delta_time_travel_with_the_same_policies() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let now = single_i64(
        &query(&engine, "SELECT count(*) FROM sales.orders")
            .await
            .unwrap(),
    );
    let v0 = single_i64(
        &query(&engine, "SELECT count(*) FROM sales.orders VERSION AS OF 0")
            .await
            .unwrap(),
    );
    assert!(v0 < now, "{v0} < {now}");
    assert_eq!(v0, 4000);
    // Same policies on the past version: EU rows only, and not from statistics.
    let eu_v0 = single_i64(
        &query(
            &engine,
            "SELECT count(*) FROM sales.orders VERSION AS OF 0 WHERE region = 'EU'",
        )
        .await
        .unwrap(),
    );
    let b = query_as(
        &engine,
        "eu_analyst",
        "SELECT count(*) FROM sales.orders VERSION AS OF 0",
    )
    .await
    .unwrap();
    assert_eq!(single_i64(&b), eu_v0);
    let b = query_as(
        &engine,
        "eu_analyst",
        "SELECT DISTINCT region FROM sales.orders VERSION AS OF 0",
    )
    .await
    .unwrap();
    assert_eq!(strings(&b, 0), ["EU"]);
    // Invisible stays invisible, with the same message as a missing product.
    let hidden = query_as(
        &engine,
        "guest",
        "SELECT * FROM sales.orders VERSION AS OF 0",
    )
    .await
    .unwrap_err();
    let missing = query_as(
        &engine,
        "guest",
        "SELECT * FROM sales.nothing VERSION AS OF 0",
    )
    .await
    .unwrap_err();
    assert_eq!(
        hidden.to_string().replace("orders", "X"),
        missing.to_string().replace("nothing", "X")
    );
    // A timestamp far in the future reads the latest version; one before the table, an error.
    let latest = single_i64(
        &query(
            &engine,
            "SELECT count(*) FROM sales.orders TIMESTAMP AS OF '2100-01-01T00:00:00Z'",
        )
        .await
        .unwrap(),
    );
    assert_eq!(latest, now);
    // deltalake resolves a timestamp before the first commit to the first version.
    let first = single_i64(
        &query(
            &engine,
            "SELECT count(*) FROM sales.orders TIMESTAMP AS OF '2000-01-01T00:00:00Z'",
        )
        .await
        .unwrap(),
    );
    assert_eq!(first, v0);
    let err = query(
        &engine,
        "SELECT count(*) FROM sales.orders VERSION AS OF 99",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("version 99"), "{err}");
    // Parquet products have no history.
    let err = query(&engine, "SELECT * FROM inventory.stock VERSION AS OF 0")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("needs a Delta product")
            && err.to_string().contains("inventory.stock"),
        "{err}"
    );
    // The audit names the version read.
    let session = engine.session(principal(&engine, "admin")).unwrap();
    let (_, s) = session
        .sql("SELECT count(*) FROM sales.orders VERSION AS OF 0")
        .await
        .unwrap();
    let _: Vec<RecordBatch> = s.try_collect().await.unwrap();
    assert_eq!(session.reads()[0].delta_version, Some(0));
}

#[tokio::test]
async fn products_show_freshness_and_sla() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    // Age inventory.stock's files by ten days: its SLA is one hour.
    let ten_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(10 * 86_400);
    for entry in std::fs::read_dir(dir.path().join("buckets/inventory/stock")).unwrap() {
        let f = std::fs::File::options()
            .write(true)
            .open(entry.unwrap().path())
            .unwrap();
        f.set_modified(ten_days_ago).unwrap();
    }
    let b = query(
        &engine,
        "SELECT domain || '.' || name, data_version, files, freshness_sla, sla_met, status, \
         last_modified IS NOT NULL, at_risk_upstream FROM meshql.products ORDER BY 1",
    )
    .await
    .unwrap();
    let rows: Vec<String> = (0..b[0].num_rows())
        .map(|i| {
            (0..b[0].num_columns())
                .map(|c| arrow::util::display::array_value_to_string(b[0].column(c), i).unwrap())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    assert_eq!(
        rows,
        [
            "customers.customers||1|7d|true|healthy|true|",
            "inventory.stock||1|1h|false|stale|true|",
            "marketing.leads|0|1|24h|true|healthy|true|",
            "sales.order_items||3|24h|true|healthy|true|",
            "sales.orders|1|2|24h|true|healthy|true|",
            "shipping.delivery_performance||1|24h|true|healthy|true|",
            // The demo's honest disagreement: a warning rule fails (see docs/demo.md).
            "shipping.shipments|0|1|6h|true|warning|true|",
        ]
    );
    // A product whose data is gone says so, and the table still answers.
    std::fs::remove_dir_all(dir.path().join("buckets/marketing/leads")).unwrap();
    let b = query(
        &engine,
        "SELECT status, status_detail FROM meshql.products WHERE name = 'leads'",
    )
    .await
    .unwrap();
    assert_eq!(strings(&b, 0), ["unavailable"]);
    assert!(
        strings(&b, 1)[0].starts_with("data unavailable: "),
        "{:?}",
        strings(&b, 1)
    );
}

#[tokio::test]
async fn new_data_becomes_visible_within_the_refresh_interval() {
    let dir = tempfile::tempdir().unwrap();
    demo_mesh(dir.path()).await;
    let config = dir.path().join("meshql.toml");
    let with_interval = |interval: &str| {
        let text = std::fs::read_to_string(&config).unwrap();
        let text = set_refresh_interval(&text, interval);
        std::fs::write(&config, text).unwrap();
        MeshEngine::try_new(Mesh::load(&config).unwrap()).unwrap()
    };
    let cached = with_interval("1h");
    let live = with_interval("0");
    let count = |e: MeshEngine| async move {
        single_i64(
            &query(&e, "SELECT count(*) FROM sales.orders")
                .await
                .unwrap(),
        )
    };
    assert_eq!(count(cached.clone()).await, 5000);
    assert_eq!(count(live.clone()).await, 5000);
    // A new commit of 10 orders.
    append_to_orders(&cached, dir.path(), "SELECT order_id + 100000 AS order_id, customer_id, order_ts, status, total_amount, region FROM sales.orders LIMIT 10").await;
    assert_eq!(
        count(cached.clone()).await,
        5000,
        "within the interval the cached snapshot is used"
    );
    assert_eq!(
        count(live.clone()).await,
        5010,
        "interval 0 checks the log on every query"
    );
    assert_eq!(
        single_i64(
            &query(&live, "SELECT count(*) FROM sales.orders VERSION AS OF 1")
                .await
                .unwrap()
        ),
        5000
    );
    // New Parquet files are seen by the next query, also after the product was listed once.
    let before = single_i64(
        &query(
            &cached,
            "SELECT count(*) FROM sales.order_items WHERE order_id = 1",
        )
        .await
        .unwrap(),
    );
    let items = dir.path().join("buckets/sales/order_items");
    std::fs::copy(
        items.join("order_items-000.parquet"),
        items.join("order_items-003.parquet"),
    )
    .unwrap();
    let n = single_i64(
        &query(
            &cached,
            "SELECT count(*) FROM sales.order_items WHERE order_id = 1",
        )
        .await
        .unwrap(),
    );
    assert_eq!(n, 2 * before, "the copied file's rows are visible");
}

fn set_refresh_interval(config: &str, interval: &str) -> String {
    let without: String = config
        .lines()
        .filter(|l| !l.starts_with("refresh_interval"))
        .map(|l| format!("{l}\n"))
        .collect();
    without.replace(
        "dir = \"catalog\"\n",
        &format!("dir = \"catalog\"\nrefresh_interval = \"{interval}\"\n"),
    )
}

// ---------------------------------------------------------------------------------------------
// Hardening (issue 9): read-only by construction, limits, memory, audit, leaks, error causes.

const PRINCIPALS: [&str; 5] = [
    "admin",
    "sales_analyst",
    "eu_analyst",
    "shipping_ds",
    "guest",
];

/// Every file under `root` with its size (the audit file's size excluded: refused attempts are
/// audited, which is the one write that must happen).
fn listing(root: &Path) -> std::collections::BTreeMap<PathBuf, Option<u64>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                out.insert(path.clone(), None);
                stack.push(path);
            } else {
                let size = (path.file_name() != Some("audit.jsonl".as_ref())).then_some(meta.len());
                out.insert(path, size);
            }
        }
    }
    out
}

/// Statements of every kind DataFusion parses that are not queries; `{dir}` is a writable
/// directory inside the mesh, `{tmp}` one outside it.
fn writing_statements(mesh: &Path, tmp: &Path) -> Vec<String> {
    let bucket = mesh.join("buckets/sales/orders");
    let audit = mesh.join("audit/audit.jsonl");
    let b = bucket.display();
    let t = tmp.display();
    let a = audit.display();
    vec![
        format!("COPY (SELECT 'x' AS a) TO '{t}/x.csv'"),
        format!("COPY (SELECT 'x' AS a) TO '{t}/x.json' STORED AS JSON"),
        format!("COPY (SELECT 1 AS order_id) TO '{b}/forged.parquet' STORED AS PARQUET"),
        format!("COPY (SELECT 'x' AS a) TO '{a}' STORED AS CSV"),
        format!("COPY (SELECT 1 AS a) TO '{t}/part' STORED AS PARQUET PARTITIONED BY (a)"),
        format!("COPY sales.orders TO '{t}/orders.parquet'"),
        format!("CREATE EXTERNAL TABLE ext STORED AS CSV LOCATION '{t}/ext.csv'"),
        format!("CREATE EXTERNAL TABLE ext (a INT) STORED AS PARQUET LOCATION '{b}/'"),
        "CREATE TABLE t (a INT)".into(),
        "CREATE TABLE t AS SELECT 1 AS a".into(),
        "CREATE OR REPLACE TABLE t AS SELECT 1 AS a".into(),
        "CREATE VIEW v AS SELECT 1 AS a".into(),
        "CREATE SCHEMA s".into(),
        "CREATE DATABASE d".into(),
        "CREATE FUNCTION f(a INT) RETURNS INT RETURN a + 1".into(),
        "CREATE INDEX i ON sales.orders (order_id)".into(),
        "DROP TABLE sales.orders".into(),
        "DROP VIEW v".into(),
        "DROP SCHEMA sales".into(),
        "DROP FUNCTION f".into(),
        "INSERT INTO sales.orders SELECT * FROM sales.orders".into(),
        "INSERT INTO sales.orders VALUES (1, 1, now(), 'x', 1.0, 'EU')".into(),
        "INSERT OVERWRITE sales.orders SELECT * FROM sales.orders".into(),
        "UPDATE sales.orders SET status = 'x'".into(),
        "DELETE FROM sales.orders".into(),
        "TRUNCATE TABLE sales.orders".into(),
        "MERGE INTO sales.orders t USING sales.orders s ON t.order_id = s.order_id WHEN MATCHED THEN DELETE".into(),
        "ALTER TABLE sales.orders ADD COLUMN x INT".into(),
        "SET datafusion.execution.batch_size = 1".into(),
        "SET TIME ZONE 'UTC'".into(),
        "RESET datafusion.execution.batch_size".into(),
        "PREPARE p AS SELECT 1".into(),
        "EXECUTE p".into(),
        "DEALLOCATE p".into(),
        "BEGIN".into(),
        "START TRANSACTION".into(),
        "COMMIT".into(),
        "ROLLBACK".into(),
        "SAVEPOINT s".into(),
        "GRANT SELECT ON sales.orders TO guest".into(),
        "ANALYZE TABLE sales.orders COMPUTE STATISTICS".into(),
        "VACUUM sales.orders".into(),
        format!("LOAD DATA INPATH '{t}/x' INTO TABLE t"),
        "CALL f()".into(),
        "SELECT 1 AS a INTO newtable".into(),
        "WITH w AS (INSERT INTO sales.orders SELECT * FROM sales.orders) SELECT 1".into(),
        format!("SELECT * FROM '{b}/'"),
        format!("SELECT * FROM 'file://{b}/'"),
        "SELECT * FROM '/etc/passwd'".into(),
        format!("SELECT * FROM read_parquet('{b}/')"),
        format!("SELECT * FROM parquet_scan('{b}/')"),
    ]
}

/// The EXPLAIN forms DataFusion accepts.
const EXPLAIN_FORMS: [&str; 11] = [
    "",
    "EXPLAIN ",
    "EXPLAIN ANALYZE ",
    "EXPLAIN VERBOSE ",
    "EXPLAIN ANALYZE VERBOSE ",
    "EXPLAIN (ANALYZE) ",
    "EXPLAIN (ANALYZE, VERBOSE) ",
    "EXPLAIN FORMAT TREE ",
    "EXPLAIN FORMAT INDENT ",
    "EXPLAIN (FORMAT PGJSON) ",
    "EXPLAIN FORMAT GRAPHVIZ ",
];

#[tokio::test]
async fn nothing_is_written_by_any_statement_under_any_explain_as_any_principal() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let tmp = tempfile::tempdir().unwrap();
    let mesh_before = listing(dir.path());
    let tmp_before = listing(tmp.path());
    let sys_tmp_before = listing(&std::env::temp_dir());
    let mut refused = 0;
    for stmt in writing_statements(dir.path(), tmp.path()) {
        for form in EXPLAIN_FORMS {
            let sql = format!("{form}{stmt}");
            for user in PRINCIPALS {
                let err = match query_as(&engine, user, &sql).await {
                    Ok(_) => panic!("{user}: `{sql}` was accepted"),
                    Err(e) => e,
                };
                // Refused as not read-only, or (raw paths, unknown functions, forms the parser
                // does not take) as a plan error; never anything that ran.
                assert!(
                    matches!(err, EngineError::ReadOnly(_) | EngineError::Plan { .. }),
                    "{user}: `{sql}`: {err:?}"
                );
                if matches!(err, EngineError::ReadOnly(_)) {
                    refused += 1;
                }
            }
        }
    }
    // Every statement kind is refused by the allow-list itself, bare and under EXPLAIN.
    for stmt in [
        "COPY (SELECT 1) TO '/tmp/x.csv'",
        "CREATE TABLE t (a INT)",
        "SET x = 1",
    ] {
        for form in ["", "EXPLAIN ", "EXPLAIN ANALYZE ", "EXPLAIN (ANALYZE) "] {
            let err = query_as(&engine, "guest", &format!("{form}{stmt}"))
                .await
                .unwrap_err();
            assert!(
                matches!(err, EngineError::ReadOnly(_)),
                "{form}{stmt}: {err:?}"
            );
            assert!(err.to_string().contains("read-only"), "{err}");
        }
    }
    assert!(refused > 1000, "{refused} refusals");
    assert_eq!(listing(dir.path()), mesh_before, "the mesh changed");
    assert_eq!(listing(tmp.path()), tmp_before, "the temp dir changed");
    let sys_tmp_after = listing(&std::env::temp_dir());
    let new: Vec<_> = sys_tmp_after
        .keys()
        .filter(|k| !sys_tmp_before.contains_key(*k))
        .filter(|k| k.to_string_lossy().contains("x.csv") || k.to_string_lossy().contains("x.json"))
        .collect();
    assert!(new.is_empty(), "{new:?}");
    // Read-only statements still work under every EXPLAIN form.
    for form in EXPLAIN_FORMS {
        query_as(
            &engine,
            "sales_analyst",
            &format!("{form}SELECT count(*) FROM sales.orders"),
        )
        .await
        .unwrap_or_else(|e| panic!("{form}: {e}"));
    }
    for sql in [
        "SHOW TABLES",
        "SHOW COLUMNS FROM sales.orders",
        "DESCRIBE sales.orders",
        "WITH x AS (SELECT 1 AS a) SELECT * FROM x",
        "VALUES (1), (2)",
        "SELECT * FROM range(3)",
        "SELECT * FROM sales.orders WHERE order_id IN (SELECT order_id FROM sales.order_items)",
    ] {
        query_as(&engine, "sales_analyst", sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // Engine settings (they include local paths) are for admins only.
    let err = query_as(&engine, "sales_analyst", "SHOW ALL")
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::AccessDenied { .. }), "{err:?}");
    query_as(&engine, "admin", "SHOW ALL").await.unwrap();
}

/// Limits with small values so that tests hit them quickly.
fn small_limits() -> meshql_engine::Limits {
    meshql_engine::Limits {
        max_expr_depth: 200,
        max_sql_bytes: 64 * 1024,
        ..Default::default()
    }
}

async fn engine_with(dir: &Path, limits: meshql_engine::Limits) -> MeshEngine {
    let config = demo_mesh(dir).await;
    MeshEngine::try_new_with_limits(Mesh::load(&config).unwrap(), limits).unwrap()
}

fn chain(n: usize, term: &str, op: &str) -> String {
    vec![term; n].join(op)
}

/// Nesting of every kind, `n` levels deep.
fn deep_statements(n: usize) -> Vec<(&'static str, String)> {
    vec![
        ("+", format!("SELECT {}", chain(n, "1", "+"))),
        ("AND", format!("SELECT {}", chain(n, "true", " AND "))),
        ("OR", format!("SELECT {}", chain(n, "false", " OR "))),
        ("||", format!("SELECT {}", chain(n, "'a'", " || "))),
        (
            "CASE",
            format!(
                "SELECT {} 1 {}",
                "CASE WHEN true THEN ".repeat(n),
                " END".repeat(n)
            ),
        ),
        (
            "subquery",
            format!("SELECT {} 1 {}", "(SELECT ".repeat(n), ")".repeat(n)),
        ),
        (
            "function",
            format!("SELECT {}1{}", "abs(".repeat(n), ")".repeat(n)),
        ),
        (
            "parentheses",
            format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n)),
        ),
        ("UNION ALL", chain(n, "SELECT 1", " UNION ALL ")),
        (
            "IS NULL",
            format!("SELECT 1{}", " IS NOT NULL = true".repeat(n)),
        ),
        ("cast", format!("SELECT 1{}", "::bigint".repeat(n))),
    ]
}

#[tokio::test]
async fn no_input_stops_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), small_limits()).await;
    // Far over the limits: refused with a clear error naming the limit.
    for (kind, sql) in deep_statements(3000) {
        let err = query_as(&engine, "guest", &sql).await.unwrap_err();
        assert!(
            matches!(
                &err,
                EngineError::LimitExceeded {
                    limit: "max_expr_depth" | "sql_parser.recursion_limit" | "max_sql_bytes",
                    ..
                }
            ),
            "{kind}: {err:?}"
        );
    }
    // Just under the limit (and the parser's own nesting limit), each kind runs.
    for (kind, sql) in deep_statements(15) {
        let b = query_as(&engine, "guest", &sql)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(!b.is_empty(), "{kind}");
    }
    let sql = format!("SELECT {}", chain(150, "1", "+"));
    assert_eq!(
        single_i64(&query_as(&engine, "guest", &sql).await.unwrap()),
        150
    );
    // Over max_sql_bytes: refused before parsing, and audited without the whole text.
    let big = format!("SELECT '{}'", "x".repeat(100 * 1024));
    let err = query_as(&engine, "guest", &big).await.unwrap_err();
    assert!(
        matches!(
            &err,
            EngineError::LimitExceeded {
                limit: "max_sql_bytes",
                ..
            }
        ) && err.to_string().contains("max_sql_bytes"),
        "{err:?}"
    );
    // A million-level chain (far deeper than any stack) is refused without overflowing.
    let mut limits = small_limits();
    limits.max_sql_bytes = 4 * 1024 * 1024;
    let dir2 = tempfile::tempdir().unwrap();
    let engine2 = engine_with(dir2.path(), limits).await;
    let huge = format!("SELECT 1{}", "+1".repeat(1_000_000));
    let err = query_as(&engine2, "guest", &huge).await.unwrap_err();
    assert!(matches!(err, EngineError::LimitExceeded { .. }), "{err:?}");
    // The engine still answers.
    assert_eq!(
        single_i64(
            &query_as(&engine, "admin", "SELECT count(*) FROM sales.orders")
                .await
                .unwrap()
        ),
        5000
    );
}

#[tokio::test]
async fn at_the_default_depth_limit_every_kind_plans_and_runs() {
    // The default limit is what the query threads' stacks are sized for: each kind of nesting at
    // the limit runs (in the debug build tests use), on a product under policies too.
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let depth = engine.limits().max_expr_depth;
    let n = depth - 10;
    let chains = [
        format!(
            "SELECT count(*) FROM customers.customers WHERE ({}) IS NOT NULL",
            chain(n, "customer_id", "+")
        ),
        format!(
            "SELECT count(*) FROM customers.customers WHERE {}",
            chain(n / 2, "customer_id > 0", " AND ")
        ),
        format!(
            "SELECT count(*) FROM customers.customers WHERE {}",
            chain(n / 2, "customer_id < 0", " OR ")
        ),
        format!(
            "SELECT count(*) FROM customers.customers WHERE ({}) IS NOT NULL",
            chain(n, "email", " || ")
        ),
    ];
    for sql in chains {
        query_as(&engine, "eu_analyst", &sql)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", &sql[..80]));
    }
    let union = chain(n / 4, "SELECT 1 AS a", " UNION ALL ");
    let b = query_as(&engine, "guest", &union).await.unwrap();
    assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), n / 4);
}

#[tokio::test]
async fn admission_queues_then_refuses_naming_the_limit_and_frees_slots_with_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let limits = meshql_engine::Limits {
        max_concurrent_queries: 2,
        max_queries_per_user: 1,
        queue_timeout: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    let engine = engine_with(dir.path(), limits).await;
    let long = "SELECT * FROM generate_series(1, 100000000)";
    let ann = engine.session(principal(&engine, "sales_analyst")).unwrap();
    // Streams hold their slot until they end or are dropped.
    let (_, first) = ann.sql(long).await.unwrap();
    let Err(err) = ann.sql(long).await else {
        panic!("admitted")
    };
    assert!(
        matches!(err, EngineError::ResourcesExhausted { .. })
            && err.to_string().contains("max_queries_per_user")
            && err.to_string().contains("queue_timeout"),
        "{err}"
    );
    let bob = engine.session(principal(&engine, "eu_analyst")).unwrap();
    let (_, second) = bob.sql(long).await.unwrap();
    let cid = engine.session(principal(&engine, "guest")).unwrap();
    let Err(err) = cid.sql("SELECT 1").await else {
        panic!("admitted")
    };
    assert!(err.to_string().contains("max_concurrent_queries"), "{err}");
    assert_eq!(engine.admission_stats().running, 2);
    drop(first);
    // A query that ends releases its slot without being dropped.
    let (_, s) = ann.sql("SELECT 1").await.unwrap();
    let _: Vec<RecordBatch> = s.try_collect().await.unwrap();
    drop(second);
    let (_, s) = cid.sql("SELECT 1").await.unwrap();
    let _: Vec<RecordBatch> = s.try_collect().await.unwrap();
    assert_eq!(engine.admission_stats().running, 0);
}

#[tokio::test]
async fn a_statement_past_its_timeout_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let limits = meshql_engine::Limits {
        statement_timeout: std::time::Duration::from_millis(500),
        ..Default::default()
    };
    let engine = engine_with(dir.path(), limits).await;
    let err = query_as(
        &engine,
        "guest",
        "SELECT count(*) FROM generate_series(1, 100000000000)",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, EngineError::ResourcesExhausted { .. })
            && err.to_string().contains("statement_timeout"),
        "{err:?}"
    );
    assert_eq!(engine.admission_stats().running, 0);
    query_as(&engine, "guest", "SELECT 1").await.unwrap();
}

#[tokio::test]
async fn a_query_past_its_memory_share_spills_or_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let spill = tempfile::tempdir().unwrap();
    let limits = meshql_engine::Limits {
        memory_limit: 128 * 1024 * 1024,
        query_memory_limit: 32 * 1024 * 1024,
        target_partitions: 2,
        spill_dir: Some(spill.path().to_path_buf()),
        ..Default::default()
    };
    let engine = engine_with(dir.path(), limits).await;
    // A sort whose working set is many times the share completes by spilling.
    // (~120 MB of rows to sort with 32 MiB.)
    let sort = "SELECT v, repeat('x', 100) AS pad FROM (SELECT value AS v FROM range(1000000)) \
                ORDER BY (v * 7919) % 1000003";
    let sorted = query_as(&engine, "guest", sort).await.unwrap();
    assert_eq!(
        sorted.iter().map(|b| b.num_rows()).sum::<usize>(),
        1_000_000
    );
    drop(sorted);
    let analyzed = query_as(&engine, "guest", &format!("EXPLAIN ANALYZE {sort}"))
        .await
        .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&analyzed)
        .unwrap()
        .to_string();
    assert!(
        text.contains("spill_count") && !text.contains("spill_count=0,"),
        "{text}"
    );
    // An operator that cannot spill fails with RESOURCE_EXHAUSTED naming the limit.
    let err = query_as(
        &engine,
        "guest",
        "SELECT count(*) FROM range(3000000) a JOIN range(3000000) b ON a.value = b.value",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, EngineError::ResourcesExhausted { .. })
            && err.to_string().contains("query_memory_limit"),
        "{err:?}"
    );
    // Nothing stays reserved once the failed query's tasks have wound down, and the engine
    // answers.
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        engine.queries_wound_down(),
    )
    .await
    .expect("the failed query's tasks did not wind down within 10 s");
    assert_eq!(engine.memory_reserved().0, 0);
    query_as(&engine, "guest", "SELECT 1").await.unwrap();
}

#[tokio::test]
async fn system_tables_count_and_number_only_visible_columns_and_hide_buckets() {
    let dir = tempfile::tempdir().unwrap();
    demo_mesh(dir.path()).await;
    // Regional analysts may not see customer_id (ordinal 2) nor region (6) of orders.
    replace_in(
        &dir.path().join("catalog/sales/policies.toml"),
        "to = [\"group:regional_analysts\"]\nproducts = [\"orders\"]",
        "to = [\"group:regional_analysts\"]\nproducts = [\"orders\"]\ncolumns = [\"order_id\", \"order_ts\", \"status\", \"total_amount\"]",
    );
    let engine = MeshEngine::try_new(Mesh::load(&dir.path().join("meshql.toml")).unwrap()).unwrap();
    let ordinals = query_as(
        &engine,
        "eu_analyst",
        "SELECT name, ordinal FROM meshql.columns WHERE product = 'orders' ORDER BY ordinal",
    )
    .await
    .unwrap();
    assert_eq!(
        strings(&ordinals, 0),
        ["order_id", "order_ts", "status", "total_amount"]
    );
    let ords: Vec<i32> = ordinals
        .iter()
        .flat_map(|b| {
            b.column(1)
                .as_primitive::<arrow::datatypes::Int32Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(ords, [1, 2, 3, 4]);
    let count = query_as(
        &engine,
        "eu_analyst",
        "SELECT columns FROM meshql.products WHERE name = 'orders'",
    )
    .await
    .unwrap();
    assert_eq!(
        count[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Int32Type>()
            .value(0),
        4
    );
    // Buckets: admins only.
    for user in PRINCIPALS {
        let b = query_as(&engine, user, "SELECT bucket FROM meshql.domains")
            .await
            .unwrap();
        let non_null: usize = b
            .iter()
            .map(|b| b.num_rows() - b.column(0).null_count())
            .sum();
        let rows: usize = b.iter().map(|b| b.num_rows()).sum();
        if user == "admin" {
            assert!(rows > 0 && non_null == rows, "{user}");
        } else {
            assert_eq!(non_null, 0, "{user} sees a bucket");
        }
    }
}

#[tokio::test]
async fn errors_name_only_visible_products_and_no_paths() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let root = dir.path().display().to_string();
    let root_rel = root.trim_start_matches('/').to_string();
    let leads = dir.path().join("buckets/marketing/leads/");
    // The old existence oracle: a user-supplied string that contains a hidden product's path
    // was reported as "product `marketing.leads` is unavailable" (UNAVAILABLE), a made-up path
    // as a cast error. Both are now the same kind of error with the same text.
    let cast = |p: &Path| format!("SELECT CAST('{}' AS INT)", p.display());
    let hidden = query_as(&engine, "guest", &cast(&leads)).await.unwrap_err();
    let missing_path = dir.path().join("buckets/marketing/nothing/");
    let missing = query_as(&engine, "guest", &cast(&missing_path))
        .await
        .unwrap_err();
    assert!(
        matches!(hidden, EngineError::Execution { .. }),
        "{hidden:?}"
    );
    assert!(
        matches!(missing, EngineError::Execution { .. }),
        "{missing:?}"
    );
    assert_eq!(
        hidden
            .to_string()
            .replace(&leads.display().to_string(), "P"),
        missing
            .to_string()
            .replace(&missing_path.display().to_string(), "P")
    );
    // Storage errors of a visible product name it, with paths relative to its location.
    let orders = dir.path().join("buckets/sales/orders");
    let data_file = std::fs::read_dir(&orders)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .unwrap();
    std::fs::remove_file(&data_file).unwrap();
    for user in ["sales_analyst", "shipping_ds", "eu_analyst"] {
        let err = query_as(&engine, user, "SELECT * FROM sales.orders")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, EngineError::ProductUnavailable { product, .. } if product == "sales.orders"),
            "{user}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            !text.contains(&root) && !text.contains(&root_rel) && !text.contains("file://"),
            "{user}: {text}"
        );
        // The cause is kept for the logs.
        assert!(std::error::Error::source(&err).is_some());
    }
    // Time-travel errors carry no path either.
    let err = query_as(
        &engine,
        "sales_analyst",
        "SELECT * FROM sales.orders VERSION AS OF 999",
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(!text.contains(&root) && !text.contains(&root_rel), "{text}");
    // Nor does EXPLAIN, for anyone but admins.
    for user in ["sales_analyst", "shipping_ds", "eu_analyst"] {
        for sql in [
            "EXPLAIN VERBOSE SELECT * FROM sales.order_items",
            "EXPLAIN SELECT * FROM customers.customers",
            "EXPLAIN ANALYZE SELECT * FROM sales.order_items",
        ] {
            let Ok(b) = query_as(&engine, user, sql).await else {
                continue;
            };
            let text = arrow::util::pretty::pretty_format_batches(&b)
                .unwrap()
                .to_string();
            assert!(
                !text.contains(&root) && !text.contains(&root_rel),
                "{user}: {sql}: {text}"
            );
        }
    }
    // Shortening paths in EXPLAIN is not an oracle either: a typed path is shortened the same
    // whether or not it is a hidden product's location.
    let explain = |p: &Path| format!("EXPLAIN SELECT '{}' AS p", p.display());
    let a = query_as(&engine, "guest", &explain(&leads)).await.unwrap();
    let b = query_as(&engine, "guest", &explain(&missing_path))
        .await
        .unwrap();
    let plans = |b: &[RecordBatch], name: &str| -> Vec<String> {
        strings(b, 1)
            .into_iter()
            .map(|p| p.replace(name, "X"))
            .collect()
    };
    assert_eq!(plans(&a, "leads"), plans(&b, "nothing"));
    // A status with a path in it (a broken product's freshness) neither.
    let b = query_as(
        &engine,
        "sales_analyst",
        "SELECT status FROM meshql.products",
    )
    .await
    .unwrap();
    for s in strings(&b, 0) {
        assert!(!s.contains(&root) && !s.contains(&root_rel), "{s}");
    }
}

#[tokio::test]
async fn audit_records_are_written_off_the_hot_path_and_meshql_audit_is_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    // 1 MiB statements, refused and accepted: the audit table stays usable and cheap.
    let big_ok = format!("SELECT length('{}') AS n", "x".repeat(1024 * 1024 - 64));
    for _ in 0..20 {
        query_as(&engine, "guest", &big_ok).await.unwrap();
    }
    let big_refused = format!("SELECT '{}'", "x".repeat(2 * 1024 * 1024));
    for _ in 0..5 {
        query_as(&engine, "guest", &big_refused).await.unwrap_err();
    }
    engine.flush_audit();
    let stats = engine.audit_stats();
    assert_eq!(stats.written, 25, "{stats:?}");
    assert_eq!((stats.write_errors, stats.dropped), (0, 0));
    let b = query_as(
        &engine,
        "guest",
        "SELECT max(length(sql)), count(*) FROM meshql.audit",
    )
    .await
    .unwrap();
    // In memory the SQL is cut; the file has every accepted statement in full.
    let longest = b[0]
        .column(0)
        .as_primitive::<arrow::datatypes::Int32Type>()
        .value(0);
    assert!(longest < 5000, "{longest}");
    let file = std::fs::read_to_string(dir.path().join("audit/audit.jsonl")).unwrap();
    assert!(file.len() > 20 * 1024 * 1024, "{}", file.len());
    // A refused oversized statement is recorded with its hash and a cut text.
    assert!(file
        .lines()
        .filter(|l| l.contains("max_sql_bytes"))
        .all(|l| l.len() < 10_000));
}

#[tokio::test]
async fn sql_for_log_respects_the_audit_setting() {
    let dir = tempfile::tempdir().unwrap();
    demo_mesh(dir.path()).await;
    replace_in(
        &dir.path().join("meshql.toml"),
        "sql = \"text\"",
        "sql = \"hash\"",
    );
    let engine = MeshEngine::try_new(Mesh::load(&dir.path().join("meshql.toml")).unwrap()).unwrap();
    let logged = engine.sql_for_log("SELECT 'secret'");
    assert!(
        logged.starts_with("sha256:") && !logged.contains("secret"),
        "{logged}"
    );
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), meshql_engine::Limits::default()).await;
    assert_eq!(engine.sql_for_log("SELECT 1"), "SELECT 1");
    assert!(engine.sql_for_log(&"x".repeat(5000)).len() < 1200);
}

#[tokio::test]
async fn every_allowed_datafusion_key_exists_and_bad_values_name_their_field() {
    let dir = tempfile::tempdir().unwrap();
    demo_mesh(dir.path()).await;
    let config = dir.path().join("meshql.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    // Each allowed key set to its current (default) value is accepted by DataFusion.
    let defaults = datafusion::prelude::SessionConfig::new();
    let entries = defaults.options().entries();
    let mut section = String::from("\n[engine.datafusion]\n");
    for key in meshql_catalog::DATAFUSION_KEYS {
        let entry = entries
            .iter()
            .find(|e| e.key == format!("datafusion.{key}"))
            .unwrap_or_else(|| panic!("{key} is not a DataFusion setting"));
        if let Some(v) = &entry.value {
            section.push_str(&format!("\"{key}\" = \"{v}\"\n"));
        }
    }
    std::fs::write(&config, format!("{text}{section}")).unwrap();
    MeshEngine::try_new(Mesh::load(&config).unwrap()).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[engine.datafusion]\n\"optimizer.max_passes\" = \"many\"\n"),
    )
    .unwrap();
    let err = MeshEngine::try_new(Mesh::load(&config).unwrap()).unwrap_err();
    let problem = &err_problems(&err)[0];
    assert_eq!(problem.field, "engine.datafusion.\"optimizer.max_passes\"");
}

fn err_problems(e: &EngineError) -> Vec<meshql_catalog::Problem> {
    match e {
        EngineError::Catalog(c) => c.problems().to_vec(),
        other => panic!("{other:?}"),
    }
}

/// Found by the SQL fuzzer: a filter over two columns of the same name (`t1.name`, `t3.name`)
/// above a self-join was pushed into one side as `ends_with(name, name)` by DataFusion's
/// name-based physical filter pushdown, and a right join returned 2,005 rows where 2,000 were
/// right. With the filter barrier, the query equals the same join written without the
/// duplicate names, for the admin (no policies) and for eu_analyst (row filters, masks).
#[tokio::test]
async fn filters_over_duplicate_column_names_stay_where_they_belong() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let tricky = "SELECT count(*) FROM (SELECT t3.customer_id FROM customers.customers t1 \
                  JOIN sales.orders t2 ON t1.customer_id = t2.customer_id \
                  RIGHT JOIN customers.customers t3 ON t2.customer_id = t3.customer_id \
                  WHERE ends_with(t1.name, t3.name))";
    // The same rows, with distinct column names everywhere.
    let plain = "SELECT count(*) FROM (SELECT c3.customer_id FROM \
                 (SELECT customer_id AS id1, name AS n1 FROM customers.customers) c1 \
                 JOIN (SELECT customer_id AS id2 FROM sales.orders) o ON c1.id1 = o.id2 \
                 RIGHT JOIN (SELECT customer_id, name AS n3 FROM customers.customers) c3 \
                 ON o.id2 = c3.customer_id WHERE ends_with(c1.n1, c3.n3))";
    for user in ["admin", "eu_analyst"] {
        let want = single_i64(&query_as(&engine, user, plain).await.unwrap());
        let got = single_i64(&query_as(&engine, user, tricky).await.unwrap());
        assert!(want > 0, "{user}");
        assert_eq!(got, want, "{user}");
    }
    // Admin's rewrite of eu_analyst's query (the fuzzer's check) agrees with eu_analyst.
    let rewrite = "SELECT count(*) FROM (SELECT t3.customer_id FROM \
                   (SELECT customer_id, name, region FROM customers.customers WHERE region = 'EU') t1 \
                   JOIN (SELECT customer_id FROM sales.orders WHERE region = 'EU') t2 \
                   ON t1.customer_id = t2.customer_id RIGHT JOIN \
                   (SELECT customer_id, name, region FROM customers.customers WHERE region = 'EU') t3 \
                   ON t2.customer_id = t3.customer_id WHERE ends_with(t1.name, t3.name))";
    let eu = single_i64(&query_as(&engine, "eu_analyst", tricky).await.unwrap());
    let admin = single_i64(&query_as(&engine, "admin", rewrite).await.unwrap());
    assert_eq!(admin, eu);
}
