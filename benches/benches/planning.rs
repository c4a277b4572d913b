//! Planning time against catalog size: the same 3-domain join planned (logical and physical
//! plan, as a query's planning does) in meshes of 100, 1,000 and 10,000 products, with and
//! without policies applying. Planning should stay flat in the size of the catalog: a session
//! resolves only the products a query names.
//!
//! `cargo bench -p meshql-benches --bench planning`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use meshql_catalog::{Mesh, Principal};
use meshql_engine::MeshEngine;

const JOIN: &str = "SELECT a.region, count(*), sum(b.amount), max(c.email) \
    FROM d0.p0 a JOIN d1.p0 b ON a.id = b.id JOIN d2.p0 c ON b.id = c.id GROUP BY a.region";

fn planning_by_catalog_size(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let admin = Principal::new("root")
        .with_group("admin")
        .with_group("pii_reader");
    let analyst = Principal::new("ana")
        .with_group("analysts")
        .with_attribute("region", "EU");
    let mut group = c.benchmark_group("plan_3_domain_join_by_catalog_size");
    for products in [100usize, 1_000, 10_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config =
            meshql_benches::synthetic_mesh(dir.path(), 10, products / 10, 50).expect("mesh");
        let engine = MeshEngine::try_new(Mesh::load(&config).expect("load")).expect("engine");
        for (name, principal) in [("no_policies", &admin), ("row_filters_and_mask", &analyst)] {
            group.bench_with_input(BenchmarkId::new(name, products), &products, |b, _| {
                b.to_async(&rt).iter(|| async {
                    let session = engine.session(principal.clone()).expect("session");
                    let q = session.plan_sql(JOIN).await.expect("plan");
                    session.physical_plan(&q).await.expect("physical plan")
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, planning_by_catalog_size);
criterion_main!(benches);
