//! Quality rules, product status, freshness SLAs and lineage (issue 11), over the demo mesh and
//! a small hand-made product with known violations.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow::array::{
    ArrayRef, Date32Array, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use futures::TryStreamExt;
use meshql_catalog::{Mesh, Principal, Severity};
use meshql_engine::quality::{check_mesh_quality, lint_quality, CheckOptions, RuleStatus};
use meshql_engine::{EngineError, MeshEngine};

use super::{demo_mesh, engine, principal, query, query_as, replace_in, single_i64, strings};

const USERS: [&str; 5] = [
    "admin",
    "sales_analyst",
    "eu_analyst",
    "shipping_ds",
    "guest",
];

fn load(dir: &Path) -> Mesh {
    Mesh::load(&dir.join("meshql.toml")).expect("load mesh")
}

fn append(path: &Path, text: &str) {
    let mut s = std::fs::read_to_string(path).unwrap();
    s.push_str(text);
    std::fs::write(path, s).unwrap();
}

/// Sets the modification time of every file under `dir` to `age` ago.
fn age_files(dir: &Path, age: Duration) {
    let then = SystemTime::now() - age;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            age_files(&path, age);
        } else {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(then)
                .unwrap();
        }
    }
}

/// `product -> (status, status_detail, at_risk_upstream)` from `meshql.products` as `user`.
async fn statuses(engine: &MeshEngine, user: &str) -> BTreeMap<String, (String, String, String)> {
    let b = query_as(
        engine,
        user,
        "SELECT domain || '.' || name, status, status_detail, at_risk_upstream \
         FROM meshql.products ORDER BY 1",
    )
    .await
    .unwrap();
    let (p, s, d, r) = (
        strings(&b, 0),
        strings(&b, 1),
        strings(&b, 2),
        strings(&b, 3),
    );
    (0..p.len())
        .map(|i| (p[i].clone(), (s[i].clone(), d[i].clone(), r[i].clone())))
        .collect()
}

#[tokio::test]
async fn demo_rules_run_in_one_pass_and_only_the_shipping_warning_fails() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let mesh = load(dir.path());
    let checks = check_mesh_quality(&mesh, None, &CheckOptions::for_mesh(&mesh))
        .await
        .unwrap();
    assert_eq!(checks.len(), 7);
    let mut failing = Vec::new();
    for c in &checks {
        let product = mesh
            .products()
            .find(|p| p.qualified_name() == c.product)
            .unwrap();
        assert!(!c.rules.is_empty(), "every demo product has rules");
        assert_eq!(c.rules.len(), product.manifest.quality.len());
        let unique = product
            .manifest
            .quality
            .iter()
            .filter(|r| r.kind.rule() == "unique")
            .count();
        // One pass for every rule, plus one grouped pass per `unique` rule.
        assert_eq!(c.scans, 1 + unique, "{}", c.product);
        assert!(c.error.is_none(), "{c:?}");
        for r in &c.rules {
            assert_ne!(
                r.status,
                RuleStatus::Error,
                "{}.{}: {}",
                c.product,
                r.rule,
                r.observed
            );
            if r.status == RuleStatus::Fail {
                failing.push((c.product.clone(), r.clone()));
            }
        }
        assert!(c.passed(), "{}", c.product);
    }
    assert_eq!(failing.len(), 1, "{failing:?}");
    let (product, rule) = &failing[0];
    assert_eq!(product, "shipping.shipments");
    assert_eq!(rule.rule, "carrier_ship_day_not_after_delivery");
    assert_eq!(rule.severity, Severity::Warning);
    // The observed count agrees with the same question asked in SQL.
    let n = single_i64(
        &query(
            &engine,
            "SELECT count(*) FROM shipping.shipments \
             WHERE NOT (carrier_shipped_on <= CAST(delivered_at AS DATE))",
        )
        .await
        .unwrap(),
    );
    assert!(n > 0);
    assert_eq!(rule.observed, format!("{n} rows violate it"));
    // Rows counted by the check are the product's rows.
    let orders = checks.iter().find(|c| c.product == "sales.orders").unwrap();
    let n = single_i64(
        &query(&engine, "SELECT count(*) FROM sales.orders")
            .await
            .unwrap(),
    );
    assert_eq!(orders.rows, Some(n as u64));
    assert_eq!(orders.data_version, "delta:1");
}

/// A product with known violations of every rule kind.
async fn lab_mesh(dir: &Path, extra_rules: &str) -> Mesh {
    std::fs::write(
        dir.join("meshql.toml"),
        "[catalog]\ndir = \"catalog\"\n[[domains]]\nname = \"lab\"\nbucket = \"buckets/lab\"\n",
    )
    .unwrap();
    let products = dir.join("catalog/lab/products");
    std::fs::create_dir_all(&products).unwrap();
    std::fs::write(
        products.join("things.toml"),
        format!(
            r#"name = "things"
domain = "lab"
version = "1.0.0"
description = "Things with known problems."
owner = "lab@example.com"
format = "parquet"
location = "things"

[[schema]]
name = "id"
type = "bigint"
[[schema]]
name = "code"
type = "string"
[[schema]]
name = "amount"
type = "decimal(10,2)"
[[schema]]
name = "qty"
type = "int"
[[schema]]
name = "recent"
type = "timestamp"
[[schema]]
name = "never"
type = "date"

[[quality]]
name = "code_present"
rule = "not_null"
column = "code"
[[quality]]
name = "id_unique"
rule = "unique"
column = "id"
[[quality]]
name = "id_code_unique"
rule = "unique"
columns = ["id", "code"]
[[quality]]
name = "code_known"
rule = "accepted_values"
column = "code"
values = ["a", "b"]
[[quality]]
name = "amount_range"
rule = "range"
column = "amount"
min = 0
max = 1000
[[quality]]
name = "enough_rows"
rule = "row_count"
min = 10
[[quality]]
name = "recent_is_fresh"
rule = "freshness"
column = "recent"
max_age = "1d"
[[quality]]
name = "never_is_fresh"
rule = "freshness"
column = "never"
max_age = "1d"
severity = "warning"
[[quality]]
name = "qty_positive"
rule = "sql"
predicate = "qty > 0"
{extra_rules}"#
        ),
    )
    .unwrap();
    let data = dir.join("buckets/lab/things");
    std::fs::create_dir_all(&data).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("code", DataType::Utf8, true),
        Field::new("amount", DataType::Decimal128(10, 2), true),
        Field::new("qty", DataType::Int32, true),
        Field::new(
            "recent",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("never", DataType::Date32, true),
    ]));
    let hour_ago = chrono::Utc::now().timestamp_micros() - 3_600_000_000;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![
            Some(1),
            Some(2),
            Some(3),
            Some(3),
            Some(4),
            Some(4),
            Some(4),
            None,
            None,
        ])),
        Arc::new(StringArray::from(vec![
            Some("a"),
            Some("b"),
            Some("x"),
            Some("a"),
            Some("a"),
            Some("a"),
            Some("b"),
            None,
            None,
        ])),
        Arc::new(
            Decimal128Array::from(vec![
                Some(1000),
                None,
                Some(500_000),
                Some(-100),
                Some(100),
                Some(100),
                Some(100),
                Some(100),
                Some(100),
            ])
            .with_precision_and_scale(10, 2)
            .unwrap(),
        ),
        Arc::new(Int32Array::from(vec![
            Some(1),
            Some(2),
            Some(0),
            None,
            Some(1),
            Some(1),
            Some(1),
            Some(1),
            Some(1),
        ])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![
                Some(hour_ago),
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
            ])
            .with_timezone("UTC"),
        ),
        Arc::new(Date32Array::from(vec![None::<i32>; 9])),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
    let file = std::fs::File::create(data.join("things-0.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    load(dir)
}

fn observed(check: &meshql_engine::quality::ProductCheck) -> Vec<(String, String, String)> {
    check
        .rules
        .iter()
        .map(|r| {
            (
                r.rule.clone(),
                r.status.as_str().to_string(),
                r.observed.clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_rule_kind_reports_what_it_observed() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = lab_mesh(dir.path(), "").await;
    let checks = check_mesh_quality(&mesh, Some("lab.things"), &CheckOptions::for_mesh(&mesh))
        .await
        .unwrap();
    let c = &checks[0];
    assert_eq!(c.rows, Some(9));
    assert_eq!(c.scans, 3, "one pass plus one per unique rule");
    let mut got = observed(c);
    // The freshness text carries an age that depends on the clock.
    let recent = got.iter_mut().find(|r| r.0 == "recent_is_fresh").unwrap();
    assert!(
        recent.2.starts_with("newest ") && recent.2.ends_with("1h old"),
        "{recent:?}"
    );
    recent.2 = "<age>".into();
    let expected: Vec<(String, String, String)> = [
        ("code_present", "fail", "2 NULLs"),
        // NULL ids are ignored; 3 appears twice and 4 three times.
        ("id_unique", "fail", "2 duplicate keys (5 rows), e.g. 3"),
        (
            "id_code_unique",
            "fail",
            "1 duplicate key (2 rows), e.g. (4, a)",
        ),
        // NULL codes are not the business of accepted_values.
        (
            "code_known",
            "fail",
            "1 row outside the accepted values, e.g. 'x'",
        ),
        (
            "amount_range",
            "fail",
            "2 rows out of range: min -1.00 < 0, max 5000.00 > 1000",
        ),
        ("enough_rows", "fail", "9 rows < min 10"),
        ("recent_is_fresh", "pass", "<age>"),
        (
            "never_is_fresh",
            "fail",
            "no values: the column is empty or all NULL",
        ),
        // qty = 0 fails; qty NULL makes the predicate NULL, which passes.
        ("qty_positive", "fail", "1 row violates it"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(got, expected);
    assert!(!c.passed());
    // Only warnings failing: passed.
    let blocking: Vec<&str> = c
        .rules
        .iter()
        .filter(|r| r.blocks())
        .map(|r| r.rule.as_str())
        .collect();
    assert!(!blocking.contains(&"never_is_fresh"));
}

#[tokio::test]
async fn a_rule_failing_at_run_time_is_an_error_and_the_others_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = lab_mesh(
        dir.path(),
        "[[quality]]\nname = \"divides_by_zero\"\nrule = \"sql\"\npredicate = \"1 / (qty - qty) = 1\"\nseverity = \"warning\"\n",
    )
    .await;
    let checks = check_mesh_quality(&mesh, None, &CheckOptions::for_mesh(&mesh))
        .await
        .unwrap();
    let c = &checks[0];
    let bad = c
        .rules
        .iter()
        .find(|r| r.rule == "divides_by_zero")
        .unwrap();
    assert_eq!(bad.status, RuleStatus::Error);
    assert!(
        bad.observed.to_lowercase().contains("divide by zero"),
        "{bad:?}"
    );
    // Every other rule has the result it has without the bad one (each ran on its own).
    let others: Vec<_> = observed(c)
        .into_iter()
        .filter(|r| r.0 != "divides_by_zero" && r.0 != "recent_is_fresh")
        .collect();
    assert!(others.contains(&("code_present".into(), "fail".into(), "2 NULLs".into())));
    assert!(others.contains(&(
        "id_unique".into(),
        "fail".into(),
        "2 duplicate keys (5 rows), e.g. 3".into()
    )));
    assert!(c.scans > 3, "the rules were split: {}", c.scans);
    // A warning that cannot be evaluated does not block; the failing error rules do.
    assert!(!bad.blocks());
}

#[tokio::test]
async fn lint_type_checks_sql_predicates_like_row_filters() {
    let dir = tempfile::tempdir().unwrap();
    demo_mesh(dir.path()).await;
    let orders = dir.path().join("catalog/sales/products/orders.toml");
    for (name, predicate) in [
        ("not_boolean", "total_amount + 1"),
        (
            "subquery",
            "order_id IN (SELECT order_id FROM sales.order_items)",
        ),
        ("unknown_column", "no_such_column > 0"),
        ("aggregate", "sum(total_amount) > 0"),
        ("fine", "order_id > 0"),
    ] {
        append(
            &orders,
            &format!(
                "\n[[quality]]\nname = \"{name}\"\nrule = \"sql\"\npredicate = \"{predicate}\"\n"
            ),
        );
    }
    let mesh = load(dir.path());
    let problems = lint_quality(&mesh);
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(problems.iter().all(|(f, _, _)| f == &orders));
    let fields: Vec<&str> = problems.iter().map(|(_, f, _)| f.as_str()).collect();
    // The demo's orders have 5 rules; the new ones are quality[5..].
    assert_eq!(
        fields,
        [
            "quality[5].predicate",
            "quality[6].predicate",
            "quality[7].predicate",
            "quality[8].predicate"
        ]
    );
    assert!(problems[0].2.contains("not boolean"), "{problems:#?}");
    assert!(problems[1].2.contains("subqueries"), "{problems:#?}");
    assert!(problems[2].2.contains("no_such_column"), "{problems:#?}");
    assert!(problems[3].2.contains("aggregate"), "{problems:#?}");
}

#[tokio::test]
async fn a_failing_error_rule_makes_the_product_failing_and_its_consumers_at_risk() {
    let dir = tempfile::tempdir().unwrap();
    demo_mesh(dir.path()).await;
    append(
        &dir.path().join("catalog/sales/products/orders.toml"),
        "\n[[quality]]\nname = \"total_small\"\nrule = \"range\"\ncolumn = \"total_amount\"\nmax = 100\n",
    );
    let engine = MeshEngine::try_new(load(dir.path())).unwrap();
    let over = single_i64(
        &query(
            &engine,
            "SELECT count(*) FROM sales.orders WHERE total_amount > 100",
        )
        .await
        .unwrap(),
    );
    assert!(over > 0);
    let admin = statuses(&engine, "admin").await;
    let (status, detail, at_risk) = &admin["sales.orders"];
    assert_eq!(status, "failing");
    assert!(
        detail.starts_with(&format!(
            "error rule `total_small` failed: {over} rows out of range: max "
        )),
        "{detail}"
    );
    assert_eq!(at_risk, "NULL");
    let (status, detail, at_risk) = &admin["shipping.delivery_performance"];
    assert_eq!(status, "at_risk");
    assert_eq!(at_risk, "sales.orders");
    assert_eq!(detail, "upstream product sales.orders is failing");
    let ds = statuses(&engine, "shipping_ds").await;
    assert_eq!(ds["shipping.delivery_performance"].0, "at_risk");
    assert_eq!(ds["shipping.delivery_performance"].2, "sales.orders");
    // eu_analyst reads EU orders only: the rule's observed value is over every row, withheld.
    let eu = statuses(&engine, "eu_analyst").await;
    assert_eq!(eu["sales.orders"].0, "failing");
    assert_eq!(eu["sales.orders"].1, "error rule `total_small` failed");
    // The same through `catalog check`'s library function.
    let mesh = load(dir.path());
    let checks = check_mesh_quality(&mesh, Some("sales.orders"), &CheckOptions::for_mesh(&mesh))
        .await
        .unwrap();
    assert!(!checks[0].passed());
    // The last known status reaches metadata calls (GetTables) without reading storage.
    let session = engine.session(principal(&engine, "shipping_ds")).unwrap();
    let tables = session.tables().await.unwrap();
    let status_of = |name: &str| {
        tables
            .iter()
            .find(|t| t.name == name)
            .and_then(|t| t.status.clone())
            .unwrap_or_default()
    };
    assert!(
        status_of("orders").starts_with("failing: "),
        "{}",
        status_of("orders")
    );
    assert_eq!(
        status_of("delivery_performance"),
        "at_risk: upstream product sales.orders is failing"
    );
}

#[tokio::test]
async fn stale_inputs_put_consumers_at_risk_naming_them_only_to_who_may_see_them() {
    let dir = tempfile::tempdir().unwrap();
    demo_mesh(dir.path()).await;
    // customers.customers promises 7 days; make its files 30 days old.
    age_files(
        &dir.path().join("buckets/customers/customers"),
        Duration::from_secs(30 * 86_400),
    );
    let engine = MeshEngine::try_new(load(dir.path())).unwrap();
    for user in ["admin", "sales_analyst", "eu_analyst"] {
        let s = statuses(&engine, user).await;
        assert_eq!(s["customers.customers"].0, "stale", "{user}");
        assert!(
            s["customers.customers"]
                .1
                .contains("past its freshness SLA of 7d"),
            "{user}: {:?}",
            s["customers.customers"]
        );
        assert_eq!(s["sales.orders"].0, "at_risk", "{user}");
        assert_eq!(s["sales.orders"].2, "customers.customers", "{user}");
    }
    // shipping_ds may not see customers: the upstream product is not named, anywhere.
    let b = query_as(&engine, "shipping_ds", "SELECT * FROM meshql.products")
        .await
        .unwrap();
    let all_text: String = (0..b[0].num_columns())
        .flat_map(|c| strings(&b, c))
        .collect::<Vec<_>>()
        .join("|");
    assert!(!all_text.contains("customers"), "{all_text}");
    let s = statuses(&engine, "shipping_ds").await;
    for p in ["sales.orders", "shipping.delivery_performance"] {
        assert_eq!(s[p].0, "at_risk", "{p}");
        assert_eq!(s[p].2, "an upstream product", "{p}");
        assert_eq!(
            s[p].1, "an upstream product is failing, stale or unavailable",
            "{p}"
        );
    }
    assert!(statuses(&engine, "guest").await.is_empty());
}

#[tokio::test]
async fn on_breach_refuse_refuses_stale_reads_naming_the_sla() {
    let dir = tempfile::tempdir().unwrap();
    demo_mesh(dir.path()).await;
    replace_in(
        &dir.path().join("catalog/shipping/products/shipments.toml"),
        "freshness = \"6h\"\n",
        "freshness = \"6h\"\non_breach = \"refuse\"\n",
    );
    // Its SLA is 6h: make its Delta log a day old.
    age_files(
        &dir.path().join("buckets/shipping/shipments/_delta_log"),
        Duration::from_secs(86_400 + 7200),
    );
    let engine = MeshEngine::try_new(load(dir.path())).unwrap();
    for user in ["admin", "sales_analyst", "shipping_ds"] {
        let err = query_as(&engine, user, "SELECT count(*) FROM shipping.shipments")
            .await
            .unwrap_err();
        match &err {
            EngineError::ProductStale {
                product, sla, age, ..
            } => {
                assert_eq!(product, "shipping.shipments");
                assert_eq!(sla, "6h");
                assert!(age.starts_with("1d 2h"), "{age}");
            }
            other => panic!("{user}: {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("shipping.shipments") && text.contains("6h") && text.contains("stale"),
            "{text}"
        );
        // A query that reads it through a join is refused too.
        let err = query_as(
            &engine,
            user,
            "SELECT count(*) FROM sales.orders o JOIN shipping.shipments s ON o.order_id = s.order_id",
        )
        .await
        .unwrap_err();
        assert!(matches!(err, EngineError::ProductStale { .. }), "{err:?}");
        // Its columns can still be listed, and time travel reads old data on purpose.
        let b = query_as(
            &engine,
            user,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'shipments'",
        )
        .await
        .unwrap();
        assert_eq!(strings(&b, 0).len(), 8);
        query_as(
            &engine,
            user,
            "SELECT count(*) FROM shipping.shipments VERSION AS OF 0",
        )
        .await
        .unwrap();
    }
    // A hidden stale product is still "not found", exactly like a missing one.
    for user in ["eu_analyst", "guest"] {
        let hidden = query_as(&engine, user, "SELECT * FROM shipping.shipments")
            .await
            .unwrap_err();
        let missing = query_as(&engine, user, "SELECT * FROM shipping.no_such_thing")
            .await
            .unwrap_err();
        assert_eq!(
            hidden.to_string().replace("shipments", "X"),
            missing.to_string().replace("no_such_thing", "X"),
            "{user}"
        );
        assert_eq!(
            std::mem::discriminant(&hidden),
            std::mem::discriminant(&missing)
        );
    }
    // Members of catalog.stale_reader_group read it; the breach is in their audit record.
    let reader = Principal::new("late_reader")
        .with_group("shipping")
        .with_group("stale_reader");
    let session = engine.session(reader).unwrap();
    let (_, stream) = session
        .sql("SELECT count(*) FROM shipping.shipments")
        .await
        .unwrap();
    let _: Vec<RecordBatch> = stream.try_collect().await.unwrap();
    let breach = session.reads()[0].sla_breach.clone().unwrap();
    assert!(breach.contains("past its freshness SLA of 6h"), "{breach}");
    // Status: stale, and its consumer at risk.
    let s = statuses(&engine, "shipping_ds").await;
    assert_eq!(s["shipping.shipments"].0, "stale");
    assert_eq!(s["shipping.delivery_performance"].0, "at_risk");
    assert_eq!(s["shipping.delivery_performance"].2, "shipping.shipments");
}

#[tokio::test]
async fn on_breach_warn_reads_and_records_the_breach() {
    let dir = tempfile::tempdir().unwrap();
    demo_mesh(dir.path()).await;
    age_files(
        &dir.path().join("buckets/shipping/shipments/_delta_log"),
        Duration::from_secs(86_400),
    );
    let engine = MeshEngine::try_new(load(dir.path())).unwrap();
    let session = engine.session(principal(&engine, "shipping_ds")).unwrap();
    let (_, stream) = session
        .sql("SELECT count(*) FROM shipping.shipments")
        .await
        .unwrap();
    let _: Vec<RecordBatch> = stream.try_collect().await.unwrap();
    let read = &session.reads()[0];
    assert_eq!(read.product, "shipping.shipments");
    let breach = read.sla_breach.clone().unwrap();
    assert!(breach.starts_with("data is 1d"), "{breach}");
    // The audit record (meshql.audit) carries it.
    let b = query_as(&engine, "shipping_ds", "SELECT products FROM meshql.audit")
        .await
        .unwrap();
    assert!(
        strings(&b, 0).iter().any(|p| p.contains("\"sla_breach\"")),
        "{:?}",
        strings(&b, 0)
    );
    // A fresh product's read has none; time travel is exempt.
    let session = engine.session(principal(&engine, "shipping_ds")).unwrap();
    let (_, stream) = session
        .sql("SELECT count(*) FROM sales.orders")
        .await
        .unwrap();
    let _: Vec<RecordBatch> = stream.try_collect().await.unwrap();
    assert_eq!(session.reads()[0].sla_breach, None);
    let session = engine.session(principal(&engine, "shipping_ds")).unwrap();
    let (_, stream) = session
        .sql("SELECT count(*) FROM shipping.shipments VERSION AS OF 0")
        .await
        .unwrap();
    let _: Vec<RecordBatch> = stream.try_collect().await.unwrap();
    assert_eq!(session.reads()[0].sla_breach, None);
}

#[tokio::test]
async fn lineage_shows_the_edges_each_principal_may_see() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let orders_customers = "sales.orders<-customers.customers";
    let perf_orders = "shipping.delivery_performance<-sales.orders";
    let perf_shipments = "shipping.delivery_performance<-shipping.shipments";
    let expected: [(&str, &[&str]); 5] = [
        ("admin", &[orders_customers, perf_orders, perf_shipments]),
        ("sales_analyst", &[orders_customers]),
        ("eu_analyst", &[orders_customers]),
        // customers.customers is hidden from shipping_ds: that edge is not shown.
        ("shipping_ds", &[perf_orders, perf_shipments]),
        ("guest", &[]),
    ];
    for (user, edges) in expected {
        let b = query_as(
            &engine,
            user,
            "SELECT product || '<-' || input FROM meshql.lineage ORDER BY 1",
        )
        .await
        .unwrap();
        assert_eq!(strings(&b, 0), edges.to_vec(), "{user}");
    }
    let b = query_as(
        &engine,
        "shipping_ds",
        "SELECT product || '.' || \"column\" || '<-' || input || '.' || input_column \
         FROM meshql.column_lineage ORDER BY 1",
    )
    .await
    .unwrap();
    let rows = strings(&b, 0);
    assert!(
        rows.contains(
            &"shipping.delivery_performance.days_late<-shipping.shipments.promised_at".to_string()
        ),
        "{rows:?}"
    );
    assert!(
        rows.contains(&"shipping.delivery_performance.region<-sales.orders.region".to_string()),
        "{rows:?}"
    );
    assert!(!rows.iter().any(|r| r.contains("customers")), "{rows:?}");
    for user in ["sales_analyst", "eu_analyst"] {
        let b = query_as(&engine, user, "SELECT * FROM meshql.column_lineage")
            .await
            .unwrap();
        assert_eq!(strings(&b, 0), ["sales.orders"], "{user}");
        assert_eq!(strings(&b, 1), ["region"], "{user}");
    }
}

#[tokio::test]
async fn a_column_the_principal_cannot_see_hides_its_rules_and_lineage() {
    let dir = tempfile::tempdir().unwrap();
    demo_mesh(dir.path()).await;
    // Regional analysts read orders without the region column.
    replace_in(
        &dir.path().join("catalog/sales/policies.toml"),
        "to = [\"group:regional_analysts\"]\nproducts = [\"orders\"]",
        "to = [\"group:regional_analysts\"]\nproducts = [\"orders\"]\ncolumns = [\"order_id\", \"customer_id\", \"order_ts\", \"status\", \"total_amount\"]",
    );
    let engine = MeshEngine::try_new(load(dir.path())).unwrap();
    let b = query_as(
        &engine,
        "eu_analyst",
        "SELECT rule FROM meshql.quality WHERE product = 'orders' ORDER BY rule",
    )
    .await
    .unwrap();
    assert_eq!(
        strings(&b, 0),
        [
            "has_orders",
            "order_id_unique",
            "status_known",
            "total_not_negative"
        ]
    );
    let b = query_as(&engine, "eu_analyst", "SELECT * FROM meshql.column_lineage")
        .await
        .unwrap();
    assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    // The edge itself (product level) is still shown: both products are visible.
    let b = query_as(&engine, "eu_analyst", "SELECT input FROM meshql.lineage")
        .await
        .unwrap();
    assert_eq!(strings(&b, 0), ["customers.customers"]);
}

#[tokio::test]
async fn quality_results_are_filtered_and_withheld_per_principal() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let mesh = load(dir.path());
    for user in USERS {
        let b = query_as(
            &engine,
            user,
            "SELECT domain || '.' || product, rule, status, observed, data_version, \
             checked_at IS NOT NULL FROM meshql.quality",
        )
        .await
        .unwrap();
        let (products, rules, status, observed) = (
            strings(&b, 0),
            strings(&b, 1),
            strings(&b, 2),
            strings(&b, 3),
        );
        let p = principal(&engine, user);
        let expected: Vec<String> = mesh
            .products()
            .filter(|p2| {
                mesh.access(&p, &p2.manifest.domain, &p2.manifest.name)
                    .is_some()
            })
            .flat_map(|p2| p2.manifest.quality.iter().map(move |_| p2.qualified_name()))
            .collect();
        assert_eq!(products, expected, "{user}");
        assert!(
            strings(&b, 5).iter().all(|v| v == "true"),
            "{user}: checked"
        );
        for i in 0..products.len() {
            let withheld = observed[i].starts_with("withheld");
            let should = match user {
                // Row filters on both of its products.
                "eu_analyst" => true,
                // email is masked for sales.
                "sales_analyst" => rules[i].starts_with("email_"),
                _ => false,
            };
            assert_eq!(
                withheld, should,
                "{user} {} {}: {}",
                products[i], rules[i], observed[i]
            );
            let failing = products[i] == "shipping.shipments"
                && rules[i] == "carrier_ship_day_not_after_delivery";
            assert_eq!(status[i], if failing { "fail" } else { "pass" }, "{user}");
        }
    }
}

#[tokio::test]
async fn new_data_versions_are_checked_again() {
    let dir = tempfile::tempdir().unwrap();
    demo_mesh(dir.path()).await;
    let config = dir.path().join("meshql.toml");
    replace_in(
        &config,
        "dir = \"catalog\"\n",
        "dir = \"catalog\"\nrefresh_interval = \"0\"\n",
    );
    let engine = MeshEngine::try_new(load(dir.path())).unwrap();
    let result = |engine: MeshEngine, product: &'static str, rule: &'static str| async move {
        let b = query(
            &engine,
            &format!(
                "SELECT data_version, status, observed FROM meshql.quality \
                 WHERE domain || '.' || product = '{product}' AND rule = '{rule}'"
            ),
        )
        .await
        .unwrap();
        (
            strings(&b, 0)[0].clone(),
            strings(&b, 1)[0].clone(),
            strings(&b, 2)[0].clone(),
        )
    };
    assert_eq!(
        result(engine.clone(), "sales.orders", "status_known").await,
        (
            "delta:1".into(),
            "pass".into(),
            "0 rows outside the accepted values".into()
        )
    );
    // A new Delta commit with an order in an unknown status.
    super::append_to_orders(
        &engine,
        dir.path(),
        "SELECT order_id + 100000 AS order_id, customer_id, order_ts, 'lost' AS status, \
         total_amount, region FROM sales.orders LIMIT 1",
    )
    .await;
    assert_eq!(
        result(engine.clone(), "sales.orders", "status_known").await,
        (
            "delta:2".into(),
            "fail".into(),
            "1 row outside the accepted values, e.g. 'lost'".into()
        )
    );
    assert_eq!(
        statuses(&engine, "admin").await["sales.orders"].0,
        "failing"
    );
    // New Parquet files: a copy of one duplicates its order lines.
    let (before, _, _) = result(engine.clone(), "sales.order_items", "line_unique").await;
    let items = dir.path().join("buckets/sales/order_items");
    std::fs::copy(
        items.join("order_items-000.parquet"),
        items.join("order_items-003.parquet"),
    )
    .unwrap();
    let (after, status, observed) =
        result(engine.clone(), "sales.order_items", "line_unique").await;
    assert_ne!(before, after);
    assert!(after.starts_with("parquet:"), "{after}");
    assert_eq!(status, "fail");
    assert!(observed.contains("duplicate keys"), "{observed}");
}

#[tokio::test]
async fn checks_have_a_memory_pool_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    demo_mesh(dir.path()).await;
    append(
        &dir.path().join("meshql.toml"),
        "\n[quality]\nmemory_limit = \"16KiB\"\n",
    );
    let engine = MeshEngine::try_new(load(dir.path())).unwrap();
    let b = query(
        &engine,
        "SELECT status, observed FROM meshql.quality WHERE product = 'order_items' AND rule = 'line_unique'",
    )
    .await
    .unwrap();
    assert_eq!(strings(&b, 0), ["error"], "{:?}", strings(&b, 1));
    assert!(
        strings(&b, 1)[0]
            .to_lowercase()
            .contains("resources exhausted"),
        "{:?}",
        strings(&b, 1)
    );
    // Queries have their own memory: they run.
    let n = single_i64(
        &query(
            &engine,
            "SELECT count(*) FROM (SELECT order_id, line_no FROM sales.order_items GROUP BY 1, 2)",
        )
        .await
        .unwrap(),
    );
    assert!(n > 0);
}

#[tokio::test]
async fn the_monitor_checks_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    demo_mesh(dir.path()).await;
    let engine = MeshEngine::try_new(load(dir.path())).unwrap();
    let session = engine.session(principal(&engine, "admin")).unwrap();
    let shipments = |tables: &[meshql_engine::TableInfo]| {
        tables
            .iter()
            .find(|t| t.name == "shipments")
            .and_then(|t| t.status.clone())
    };
    assert_eq!(
        shipments(&session.tables().await.unwrap()),
        None,
        "nothing known yet"
    );
    let monitor = engine.spawn_quality_monitor();
    // Metadata never reads storage: the status appears once the monitor has checked.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        let s = shipments(&session.tables().await.unwrap());
        if s.as_deref().is_some_and(|s| s.starts_with("warning: ")) {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "no status: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status
        .unwrap()
        .contains("carrier_ship_day_not_after_delivery"),);
    monitor.abort();
}
