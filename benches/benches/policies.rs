//! What access policies cost: planning a 3-domain join over a 100-product mesh with 50
//! policies, with and without policies applying; and executing a realistic query over the demo
//! mesh with a row filter and a mask, against the same query without them.
//!
//! `cargo bench -p meshql-benches --bench policies`

use criterion::{criterion_group, criterion_main, Criterion};
use futures::TryStreamExt;
use meshql_catalog::{Mesh, Principal};
use meshql_engine::demo::{write_demo, DemoOptions};
use meshql_engine::MeshEngine;

const JOIN: &str = "SELECT a.region, count(*), sum(b.amount), max(c.email) \
    FROM d0.p0 a JOIN d1.p0 b ON a.id = b.id JOIN d2.p0 c ON b.id = c.id GROUP BY a.region";

fn planning(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = meshql_benches::synthetic_mesh(dir.path(), 4, 25, 50).expect("mesh");
    let engine = MeshEngine::try_new(Mesh::load(&config).expect("load")).expect("engine");
    let without = Principal::new("root")
        .with_group("admin")
        .with_group("pii_reader");
    let with = Principal::new("ana")
        .with_group("analysts")
        .with_attribute("region", "EU");
    let mut group = c.benchmark_group("plan_3_domain_join_100_products_50_policies");
    for (name, principal) in [("no_policies", without), ("row_filters_and_mask", with)] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let session = engine.session(principal.clone()).expect("session");
                let q = session.plan_sql(JOIN).await.expect("plan");
                session.physical_plan(&q).await.expect("physical plan")
            })
        });
    }
    group.finish();
}

const REALISTIC: &str = "SELECT c.tier, c.region, count(*) AS orders, sum(o.total_amount) AS revenue, count(c.email) AS reachable \
    FROM sales.orders o JOIN customers.customers c ON o.customer_id = c.customer_id \
    WHERE o.status <> 'cancelled' GROUP BY c.tier, c.region ORDER BY revenue DESC";

fn execution(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let report = rt
        .block_on(write_demo(
            &DemoOptions {
                dir: dir.path().to_path_buf(),
                scale: 20,
                force: false,
            },
            &mut |_: &str| {},
        ))
        .expect("demo");
    // A principal whose row filters keep every row and whose email is masked: the same work as
    // admin's, plus the policies.
    std::fs::write(
        dir.path().join("catalog/_global/policies.toml"),
        std::fs::read_to_string(dir.path().join("catalog/_global/policies.toml")).expect("read")
            + "\n[[grants]]\nto = [\"group:bench\"]\ndomains = [\"sales\", \"customers\"]\n",
    )
    .expect("write");
    for (domain, product) in [("sales", "orders"), ("customers", "customers")] {
        let file = dir.path().join(format!("catalog/{domain}/policies.toml"));
        let text = std::fs::read_to_string(&file).expect("read");
        std::fs::write(
            &file,
            format!("{text}\n[[row_filters]]\nname = \"bench_{product}\"\nproduct = \"{product}\"\napplies_to = [\"group:bench\"]\npredicate = \"region <> ${{principal.excluded}} OR region IS NOT NULL\"\n"),
        )
        .expect("write");
    }
    let engine = MeshEngine::try_new(Mesh::load(&report.config).expect("load")).expect("engine");
    let admin = Principal::new("admin")
        .with_group("admin")
        .with_group("pii_reader");
    let bench = Principal::new("bench")
        .with_group("bench")
        .with_attribute("excluded", "MARS");
    let mut group = c.benchmark_group("execute_orders_join_customers_scale20");
    group.sample_size(20);
    for (name, principal) in [("no_policies", admin), ("row_filter_and_mask", bench)] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let session = engine.session(principal.clone()).expect("session");
                let (_, stream) = session.sql(REALISTIC).await.expect("plan");
                let batches: Vec<_> = stream.try_collect().await.expect("run");
                batches.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, planning, execution);
criterion_main!(benches);
