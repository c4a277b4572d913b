//! Hot reload: snapshots per session, rejected changes, the status.

use meshql_catalog::{CatalogFingerprint, Mesh};
use meshql_engine::{MeshEngine, ReloadOutcome, Reloader};

use super::{demo_mesh, principal, single_i64};

#[tokio::test]
async fn sessions_keep_their_catalog_and_a_broken_change_is_rejected_as_a_whole() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_mesh(dir.path()).await;
    let fingerprint = CatalogFingerprint::scan(&config);
    let engine = MeshEngine::try_new(Mesh::load(&config).unwrap()).unwrap();
    let reloader = Reloader::new(engine.clone(), &config, fingerprint, None);
    assert!(matches!(
        reloader.check_now().await,
        ReloadOutcome::Unchanged
    ));
    assert_eq!(engine.catalog_status().generation, 1);

    let sales = principal(&engine, "sales_analyst");
    let before = engine.session(sales.clone()).unwrap();
    let policies = config
        .parent()
        .unwrap()
        .join("catalog/customers/policies.toml");
    let original = std::fs::read_to_string(&policies).unwrap();
    let grant = "[[grants]]\nto = [\"group:sales\"]\nproducts = [\"customers\"]\n";
    assert!(original.contains(grant));
    std::fs::write(&policies, original.replace(grant, "")).unwrap();
    match reloader.check_now().await {
        ReloadOutcome::Applied {
            generation,
            changed,
        } => {
            assert_eq!(generation, 2);
            assert_eq!(changed, vec![policies.clone()]);
        }
        other => panic!("{other:?}"),
    }
    // The session created before the reload keeps the catalog it started with; a new one sees
    // the grant gone.
    assert_eq!(before.snapshot().generation(), 1);
    let (_, stream) = before
        .sql("SELECT count(*) FROM customers.customers")
        .await
        .unwrap();
    let batches: Vec<_> = futures::TryStreamExt::try_collect(stream).await.unwrap();
    assert!(single_i64(&batches) > 0);
    let after = engine.session(sales).unwrap();
    assert_eq!(after.snapshot().generation(), 2);
    let e = after
        .sql("SELECT count(*) FROM customers.customers")
        .await
        .err()
        .expect("the grant is gone");
    assert!(e.to_string().contains("not found"), "{e}");

    // A manifest with an unknown type: rejected as a whole, generation 2 stays.
    let manifest = config
        .parent()
        .unwrap()
        .join("catalog/customers/products/customers.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let tier = "name = \"tier\"\ntype = \"string\"";
    std::fs::write(
        &manifest,
        text.replace(tier, "name = \"tier\"\ntype = \"strang\""),
    )
    .unwrap();
    // A valid change to another file in the same look is rejected with it.
    std::fs::write(&policies, &original).unwrap();
    let ReloadOutcome::Rejected { problems } = reloader.check_now().await else {
        panic!("expected a rejection")
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].file, manifest);
    assert!(problems[0].field.ends_with(".type"), "{:?}", problems[0]);
    let status = engine.catalog_status();
    assert_eq!(status.generation, 2);
    assert_eq!(status.rejections, 1);
    assert_eq!(status.rejected.as_ref().unwrap().problems, problems);
    // Not tried again until something changes.
    assert!(matches!(
        reloader.check_now().await,
        ReloadOutcome::Unchanged
    ));
    assert_eq!(engine.catalog_status().rejections, 1);
    // Fixed: the new catalog (with the restored grant) is in force, the rejection cleared.
    std::fs::write(&manifest, &text).unwrap();
    assert!(matches!(
        reloader.check_now().await,
        ReloadOutcome::Applied { generation: 3, .. }
    ));
    let status = engine.catalog_status();
    assert!(status.rejected.is_none());
    assert_eq!((status.applied, status.rejections), (2, 1));
    let sales = principal(&engine, "sales_analyst");
    let (_, stream) = engine
        .session(sales)
        .unwrap()
        .sql("SELECT count(*) FROM customers.customers")
        .await
        .unwrap();
    let batches: Vec<_> = futures::TryStreamExt::try_collect(stream).await.unwrap();
    assert!(single_i64(&batches) > 0);
}

#[tokio::test]
async fn a_policy_that_does_not_type_check_rejects_the_change() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_mesh(dir.path()).await;
    let fingerprint = CatalogFingerprint::scan(&config);
    let engine = MeshEngine::try_new(Mesh::load(&config).unwrap()).unwrap();
    let reloader = Reloader::new(engine.clone(), &config, fingerprint, None);
    let policies = config
        .parent()
        .unwrap()
        .join("catalog/customers/policies.toml");
    let original = std::fs::read_to_string(&policies).unwrap();
    // Loads (the column exists), but the predicate is not boolean: only the engine sees it.
    std::fs::write(
        &policies,
        original.replace(
            "predicate = \"region = ${principal.region}\"",
            "predicate = \"region\"",
        ),
    )
    .unwrap();
    let ReloadOutcome::Rejected { problems } = reloader.check_now().await else {
        panic!("expected a rejection")
    };
    assert_eq!(problems[0].file, policies);
    assert!(problems[0].field.contains("predicate"), "{problems:?}");
    assert_eq!(engine.catalog_status().generation, 1);
}

/// A Parquet product resolved by one query (location kind, schema, contract projection) is
/// reused by the next ones of the same catalog: its files are still listed by every query, so
/// a new file is read at once, and a reload that moves the product is followed at once.
#[tokio::test]
async fn resolved_products_are_reused_but_new_files_and_reloads_are_seen_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_mesh(dir.path()).await;
    let text = std::fs::read_to_string(&config).unwrap();
    // Resolutions are kept for the refresh interval: an hour, longer than the test.
    std::fs::write(&config, super::set_refresh_interval(&text, "1h")).unwrap();
    let engine = MeshEngine::try_new(Mesh::load(&config).unwrap()).unwrap();
    let items = "SELECT count(*) FROM sales.order_items";
    let before = single_i64(&super::query(&engine, items).await.unwrap());

    let location = dir.path().join("buckets/sales/order_items");
    let file = location.join("order_items-000.parquet");
    std::fs::copy(&file, location.join("zz-new.parquet")).unwrap();
    assert_eq!(
        single_i64(&super::query(&engine, items).await.unwrap()),
        before + super::parquet_rows(&file),
        "a new file is read by the next query"
    );

    // A file replaced in place by one with other rows is read as it is now, its statistics
    // included: `count(*)` is answered from them.
    let other = std::fs::read_dir(&location)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| super::parquet_rows(p) != super::parquet_rows(&file))
        .expect("the demo's order_items files differ in rows");
    let total = single_i64(&super::query(&engine, items).await.unwrap());
    let replaced = location.join("zz-new.parquet");
    let expected = total - super::parquet_rows(&replaced) + super::parquet_rows(&other);
    std::fs::copy(&other, &replaced).unwrap();
    assert_eq!(
        single_i64(&super::query(&engine, items).await.unwrap()),
        expected,
        "a replaced file is read as it is now"
    );

    // The owner moves the product to a location holding one file; a reload follows it.
    let moved = dir.path().join("buckets/sales/order_items_v2");
    std::fs::create_dir_all(&moved).unwrap();
    std::fs::copy(&file, moved.join("only.parquet")).unwrap();
    super::replace_in(
        &dir.path().join("catalog/sales/products/order_items.toml"),
        "location = \"order_items\"",
        "location = \"order_items_v2\"",
    );
    engine
        .install_catalog(Mesh::load(&config).unwrap(), None)
        .unwrap();
    assert_eq!(
        single_i64(&super::query(&engine, items).await.unwrap()),
        super::parquet_rows(&file),
        "the reloaded catalog's location is read"
    );
}
