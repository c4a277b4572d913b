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
    let batches = query(&cached, "SELECT order_id + 100000 AS order_id, customer_id, order_ts, status, total_amount, region FROM sales.orders LIMIT 10")
        .await
        .unwrap();
    let url = url::Url::from_directory_path(dir.path().join("buckets/sales/orders")).unwrap();
    deltalake::DeltaTable::try_from_url(url)
        .await
        .unwrap()
        .write(batches)
        .with_save_mode(deltalake::protocol::SaveMode::Append)
        .await
        .unwrap();
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
