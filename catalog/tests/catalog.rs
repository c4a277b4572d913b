//! Loading whole meshes from disk: every problem across files is reported with file and field.

use std::fs;
use std::path::{Path, PathBuf};

use meshql_catalog::{CatalogError, Mesh};

const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$Wl1ZiKBWgKfCPWyC0JBSpHiCxEe0A2yKxsNx0cbdwzg";

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn manifest(domain: &str, name: &str) -> String {
    format!(
        "name = \"{name}\"\ndomain = \"{domain}\"\nversion = \"1.0.0\"\nowner = \"o@x\"\nformat = \"parquet\"\nlocation = \"{name}\"\n\n[[schema]]\nname = \"id\"\ntype = \"bigint\"\nprimary_key = true\n"
    )
}

fn mesh_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("meshql.toml"),
        &format!(
            "[catalog]\ndir = \"catalog\"\n[[domains]]\nname = \"sales\"\nbucket = \"buckets/sales\"\n[[domains]]\nname = \"crm\"\nbucket = \"file:///data/crm\"\n[[users]]\nname = \"ann\"\npassword_hash = \"{HASH}\"\n"
        ),
    );
    write(
        &dir.path().join("catalog/sales/products/orders.toml"),
        &manifest("sales", "orders"),
    );
    write(
        &dir.path().join("catalog/crm/products/people.toml"),
        &manifest("crm", "people"),
    );
    dir
}

#[test]
fn loads_a_good_mesh() {
    let dir = mesh_dir();
    let mesh = Mesh::load(&dir.path().join("meshql.toml")).unwrap();
    assert_eq!(mesh.domains.len(), 2);
    assert_eq!(
        mesh.product("sales", "orders").unwrap().qualified_name(),
        "sales.orders"
    );
    assert_eq!(mesh.products().count(), 2);
    assert!(mesh
        .domain("sales")
        .unwrap()
        .config
        .bucket
        .as_str()
        .ends_with("/buckets/sales/"));
}

#[test]
fn reports_problems_across_files() {
    let dir = mesh_dir();
    // A manifest that claims an unknown domain, one with a bad field, a folder for no domain.
    write(
        &dir.path().join("catalog/sales/products/ghost.toml"),
        &manifest("finance", "ghost"),
    );
    write(
        &dir.path().join("catalog/crm/products/bad.toml"),
        &manifest("crm", "bad").replace("bigint", "number"),
    );
    write(
        &dir.path().join("catalog/finance/products/x.toml"),
        &manifest("finance", "x"),
    );
    let err = Mesh::load(&dir.path().join("meshql.toml")).unwrap_err();
    let CatalogError::Invalid(problems) = &err else {
        panic!("{err}")
    };
    let found: Vec<(String, String)> = problems
        .iter()
        .map(|p| {
            (
                p.file.file_name().unwrap().to_string_lossy().to_string(),
                p.field.clone(),
            )
        })
        .collect();
    assert!(found.contains(&("finance".into(), "".into())), "{err}");
    assert!(
        found.contains(&("ghost.toml".into(), "domain".into())),
        "{err}"
    );
    assert!(
        found.contains(&("bad.toml".into(), "schema[0].type".into())),
        "{err}"
    );
    assert_eq!(problems.len(), 3, "{err}");
    assert!(
        err.to_string().contains("unknown domain `finance`"),
        "{err}"
    );
}

#[test]
fn missing_config_is_an_io_error_naming_the_file() {
    let err = Mesh::load(Path::new("/no/such/meshql.toml")).unwrap_err();
    assert!(matches!(err, CatalogError::Io { .. }));
    assert!(err.to_string().contains("/no/such/meshql.toml"));
}

#[test]
fn the_storage_doc_config_is_valid() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/storage.md"))
        .unwrap();
    let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
    let text = &doc[start..start + doc[start..].find("```").unwrap()];
    let config = meshql_catalog::MeshConfig::parse(
        Path::new("/etc/meshql/meshql.toml"),
        text,
        std::iter::empty(),
    )
    .unwrap_or_else(|p| panic!("{p:#?}"));
    let schemes: Vec<&str> = config.domains.iter().map(|d| d.bucket.scheme()).collect();
    assert_eq!(schemes, ["s3", "gs", "az", "file"]);
    assert_eq!(config.refresh_interval_secs, 5);
    assert_eq!(
        config.domain("sales").unwrap().credentials_env["secret_access_key"],
        "SALES_AWS_SECRET_ACCESS_KEY"
    );
}

#[test]
fn secrets_in_the_config_file_are_refused() {
    let text = "[catalog]\ndir = \"c\"\n[[domains]]\nname = \"d\"\nbucket = \"s3://b/\"\nstorage = { secret_access_key = \"x\" }\n";
    let problems =
        meshql_catalog::MeshConfig::parse(Path::new("/m.toml"), text, std::iter::empty())
            .unwrap_err();
    assert_eq!(
        problems[0].field, "domains[0].storage.secret_access_key",
        "{problems:#?}"
    );
    assert!(
        problems[0].message.contains("credentials_env"),
        "{problems:#?}"
    );
}

#[test]
fn two_domains_cannot_share_a_bucket() {
    let text = "[catalog]\ndir = \"c\"\n[[domains]]\nname = \"a\"\nbucket = \"s3://b/one/\"\n[[domains]]\nname = \"z\"\nbucket = \"s3://b/two/\"\n";
    let problems =
        meshql_catalog::MeshConfig::parse(Path::new("/m.toml"), text, std::iter::empty())
            .unwrap_err();
    assert_eq!(problems[0].field, "domains[1].bucket", "{problems:#?}");
}

// ---------------------------------------------------------------------------------------------
// Lineage across products
// ---------------------------------------------------------------------------------------------

/// A manifest of `domain.name` with columns `id` and `v`, derived from `inputs`.
fn derived(domain: &str, name: &str, inputs: &[&str]) -> String {
    let mut text = format!(
        "name = \"{name}\"\ndomain = \"{domain}\"\nversion = \"1.0.0\"\nowner = \"o@x\"\nformat = \"parquet\"\nlocation = \"{name}\"\n\n[[schema]]\nname = \"id\"\ntype = \"bigint\"\nprimary_key = true\n[[schema]]\nname = \"v\"\ntype = \"string\"\n"
    );
    for i in inputs {
        text.push_str(&format!("\n[[inputs]]\nproduct = \"{i}\"\n"));
    }
    text
}

fn problems_of(dir: &Path) -> Vec<(String, String, String)> {
    let err = Mesh::load(&dir.join("meshql.toml")).unwrap_err();
    let CatalogError::Invalid(problems) = &err else {
        panic!("{err}")
    };
    problems
        .iter()
        .map(|p| {
            (
                p.file.file_name().unwrap().to_string_lossy().to_string(),
                p.field.clone(),
                p.message.clone(),
            )
        })
        .collect()
}

#[test]
fn lineage_inputs_must_name_existing_products_and_columns() {
    let dir = mesh_dir();
    let cat = dir.path().join("catalog");
    write(
        &cat.join("sales/products/report.toml"),
        &(derived(
            "sales",
            "report",
            &["sales.orders", "crm.nope", "finance.ledger"],
        ) + "\n[[inputs]]\nproduct = \"crm.people\"\ncolumns = { v = [\"id\", \"name\"] }\n"),
    );
    let problems = problems_of(dir.path());
    assert_eq!(
        problems,
        vec![
            (
                "report.toml".into(),
                "inputs[1].product".into(),
                "unknown product `crm.nope`".into()
            ),
            (
                "report.toml".into(),
                "inputs[2].product".into(),
                "unknown domain `finance` in input `finance.ledger`".into()
            ),
            (
                "report.toml".into(),
                "inputs[3].columns.v".into(),
                "product `crm.people` has no column `name`".into()
            ),
        ]
    );
}

#[test]
fn an_input_whose_manifest_is_broken_is_reported_once() {
    let dir = mesh_dir();
    let cat = dir.path().join("catalog");
    write(
        &cat.join("crm/products/people.toml"),
        &manifest("crm", "people").replace("bigint", "number"),
    );
    write(
        &cat.join("sales/products/report.toml"),
        &derived("sales", "report", &["crm.people"]),
    );
    let problems = problems_of(dir.path());
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].0, "people.toml");
}

#[test]
fn lineage_cycles_are_reported_with_their_path() {
    let dir = mesh_dir();
    let cat = dir.path().join("catalog");
    // sales.a -> crm.b -> sales.c -> sales.a, and crm.d -> crm.e -> crm.d; sales.x reads the
    // first cycle without being part of it.
    write(
        &cat.join("sales/products/a.toml"),
        &derived("sales", "a", &["crm.b"]),
    );
    write(
        &cat.join("crm/products/b.toml"),
        &derived("crm", "b", &["sales.orders", "sales.c"]),
    );
    write(
        &cat.join("sales/products/c.toml"),
        &derived("sales", "c", &["sales.a"]),
    );
    write(
        &cat.join("crm/products/d.toml"),
        &derived("crm", "d", &["crm.e"]),
    );
    write(
        &cat.join("crm/products/e.toml"),
        &derived("crm", "e", &["crm.d"]),
    );
    write(
        &cat.join("sales/products/x.toml"),
        &derived("sales", "x", &["sales.a"]),
    );
    let mut problems = problems_of(dir.path());
    problems.sort();
    assert_eq!(
        problems,
        vec![
            // Reported once per cycle, on its product with the smallest name, at the input
            // that continues the cycle.
            (
                "b.toml".into(),
                "inputs[1].product".into(),
                "lineage cycle: crm.b -> sales.c -> sales.a -> crm.b; a product cannot derive from itself".into()
            ),
            (
                "d.toml".into(),
                "inputs[0].product".into(),
                "lineage cycle: crm.d -> crm.e -> crm.d; a product cannot derive from itself".into()
            ),
        ]
    );
}

#[test]
fn lineage_can_be_walked_both_ways() {
    let dir = mesh_dir();
    let cat = dir.path().join("catalog");
    // orders, people -> report -> summary ; report -> alerts
    write(
        &cat.join("sales/products/report.toml"),
        &(derived("sales", "report", &["sales.orders"])
            + "\n[[inputs]]\nproduct = \"crm.people\"\ncolumns = { v = \"id\" }\n"),
    );
    write(
        &cat.join("sales/products/summary.toml"),
        &derived("sales", "summary", &["sales.report"]),
    );
    write(
        &cat.join("crm/products/alerts.toml"),
        &derived("crm", "alerts", &["sales.report", "sales.orders"]),
    );
    let mesh = Mesh::load(&dir.path().join("meshql.toml")).unwrap_or_else(|e| panic!("{e}"));
    let names = |ps: Vec<&meshql_catalog::Product>| -> Vec<String> {
        ps.iter().map(|p| p.qualified_name()).collect()
    };
    assert_eq!(
        names(mesh.inputs_of("sales", "report")),
        ["sales.orders", "crm.people"]
    );
    assert_eq!(
        names(mesh.consumers_of("sales", "report")),
        ["sales.summary", "crm.alerts"]
    );
    assert_eq!(
        names(mesh.upstream("sales", "summary")),
        ["sales.report", "sales.orders", "crm.people"]
    );
    assert_eq!(
        names(mesh.downstream("sales", "orders")),
        ["sales.report", "crm.alerts", "sales.summary"]
    );
    assert!(mesh.upstream("sales", "orders").is_empty());
    assert!(mesh.downstream("nope", "nothing").is_empty());
    let edges: Vec<(String, String, usize)> = mesh
        .lineage_edges()
        .iter()
        .map(|e| {
            (
                e.product.qualified_name(),
                e.input.qualified_name(),
                e.spec.columns.len(),
            )
        })
        .collect();
    assert_eq!(
        edges,
        vec![
            ("sales.report".to_string(), "sales.orders".to_string(), 0),
            ("sales.report".to_string(), "crm.people".to_string(), 1),
            ("sales.summary".to_string(), "sales.report".to_string(), 0),
            ("crm.alerts".to_string(), "sales.report".to_string(), 0),
            ("crm.alerts".to_string(), "sales.orders".to_string(), 0),
        ]
    );
}

#[test]
fn load_checked_turns_every_failure_into_problems() {
    let problems = Mesh::load_checked(Path::new("/no/such/meshql.toml")).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].file, Path::new("/no/such/meshql.toml"));
    assert!(
        problems[0].message.contains("cannot read file"),
        "{}",
        problems[0]
    );
    // Problems across files: a manifest's quality rule, another's lineage, a policy.
    let dir = mesh_dir();
    let cat = dir.path().join("catalog");
    write(
        &cat.join("sales/products/orders.toml"),
        &(manifest("sales", "orders")
            + "\n[[quality]]\nname = \"q\"\nrule = \"not_null\"\ncolumn = \"nope\"\n"),
    );
    write(
        &cat.join("crm/products/people.toml"),
        &derived("crm", "people", &["sales.gone"]),
    );
    write(
        &cat.join("crm/policies.toml"),
        "[[grants]]\nto = [\"*\"]\nproducts = [\"ghost\"]\n",
    );
    let problems = Mesh::load_checked(&dir.path().join("meshql.toml")).unwrap_err();
    let fields: Vec<String> = problems
        .iter()
        .map(|p| {
            format!(
                "{}:{}",
                p.file.file_name().unwrap().to_string_lossy(),
                p.field
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            "orders.toml:quality[0].column",
            "people.toml:inputs[0].product",
            "policies.toml:grants[0].product"
        ],
        "{problems:#?}"
    );
    assert!(Mesh::load_checked(&mesh_dir().path().join("meshql.toml")).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Configuration: who may read stale products
// ---------------------------------------------------------------------------------------------

#[test]
fn stale_reader_group_defaults_and_can_be_configured() {
    use meshql_catalog::{MeshConfig, Principal, DEFAULT_STALE_READER_GROUP};
    let parse = |extra: &str| {
        MeshConfig::parse(
            Path::new("/m.toml"),
            &format!(
                "[catalog]\ndir = \"c\"\n{extra}\n[[domains]]\nname = \"d\"\nbucket = \"b\"\n"
            ),
            std::iter::empty(),
        )
    };
    let c = parse("").unwrap();
    assert_eq!(c.stale_reader_group, DEFAULT_STALE_READER_GROUP);
    assert_eq!(DEFAULT_STALE_READER_GROUP, "stale_reader");
    assert!(c.may_read_stale(&Principal::new("a").with_group("stale_reader")));
    assert!(!c.may_read_stale(&Principal::new("a").with_group("admin")));
    let c = parse("stale_reader_group = \"ops\"").unwrap();
    assert!(c.may_read_stale(&Principal::new("a").with_group("ops")));
    assert!(!c.may_read_stale(&Principal::new("a").with_group("stale_reader")));
    let problems = parse("stale_reader_group = \"\"").unwrap_err();
    assert_eq!(
        problems[0].field, "catalog.stale_reader_group",
        "{problems:#?}"
    );
    let problems = parse("stale_reader_group = 3").unwrap_err();
    assert_eq!(
        problems[0].field, "catalog.stale_reader_group",
        "{problems:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Change detection for hot reload
// ---------------------------------------------------------------------------------------------

use meshql_catalog::CatalogFingerprint;

/// Rewrites a file keeping its modification time, as an edit within the same tick of a coarse
/// file system clock would look.
fn rewrite_keeping_mtime(path: &Path, text: &str) {
    let mtime = fs::metadata(path).unwrap().modified().unwrap();
    fs::write(path, text).unwrap();
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(fs::metadata(path).unwrap().modified().unwrap(), mtime);
}

#[test]
fn fingerprint_notices_every_kind_of_catalog_change() {
    let dir = mesh_dir();
    let config = dir.path().join("meshql.toml");
    let cat = dir.path().join("catalog");
    let fp = CatalogFingerprint::scan(&config);
    // meshql.toml, 2 domain folders, 2 products folders, 2 manifests.
    assert_eq!(fp.len(), 7);
    assert_eq!(fp.files_hashed(), 3);
    let again = fp.rescan(&config);
    assert_eq!(again, fp, "nothing changed");
    assert!(again.changed_paths(&fp).is_empty());

    // Each step changes one thing; each must be noticed, naming what changed.
    let orders = cat.join("sales/products/orders.toml");
    type Step<'a> = (&'a str, Box<dyn Fn()>, PathBuf);
    let steps: Vec<Step> = vec![
        (
            "a manifest edited",
            Box::new({
                let f = orders.clone();
                move || {
                    fs::write(&f, manifest("sales", "orders").replace("1.0.0", "1.1.0")).unwrap()
                }
            }),
            orders.clone(),
        ),
        (
            "a manifest added",
            Box::new({
                let f = cat.join("sales/products/items.toml");
                move || write(&f, &manifest("sales", "items"))
            }),
            cat.join("sales/products/items.toml"),
        ),
        (
            "a domain policy file added",
            Box::new({
                let f = cat.join("sales/policies.toml");
                move || write(&f, "[[grants]]\nto = [\"*\"]\n")
            }),
            cat.join("sales/policies.toml"),
        ),
        (
            "a global policy file added",
            Box::new({
                let f = cat.join("_global/policies.toml");
                move || write(&f, "")
            }),
            cat.join("_global"),
        ),
        (
            "a folder naming no domain",
            Box::new({
                let f = cat.join("finance");
                move || fs::create_dir_all(&f).unwrap()
            }),
            cat.join("finance"),
        ),
        (
            "a user added to meshql.toml",
            Box::new({
                let f = config.clone();
                move || {
                    let text = fs::read_to_string(&f).unwrap();
                    fs::write(
                        &f,
                        text + &format!("[[users]]\nname = \"bob\"\npassword_hash = \"{HASH}\"\n"),
                    )
                    .unwrap()
                }
            }),
            config.clone(),
        ),
        (
            "a manifest removed",
            Box::new({
                let f = cat.join("sales/products/items.toml");
                move || fs::remove_file(&f).unwrap()
            }),
            cat.join("sales/products/items.toml"),
        ),
    ];
    let mut fp = fp;
    for (what, change, path) in steps {
        change();
        let next = fp.rescan(&config);
        assert_ne!(next, fp, "{what}");
        let changed = next.changed_paths(&fp);
        assert!(changed.contains(&path), "{what}: {changed:?}");
        fp = next;
    }
}

#[test]
fn fingerprint_sees_a_same_size_edit_within_the_same_second() {
    let dir = mesh_dir();
    let config = dir.path().join("meshql.toml");
    let orders = dir.path().join("catalog/sales/products/orders.toml");
    let before = CatalogFingerprint::scan(&config);
    let text = fs::read_to_string(&orders).unwrap();
    let edited = text.replace("1.0.0", "1.0.1");
    assert_eq!(edited.len(), text.len());
    rewrite_keeping_mtime(&orders, &edited);
    let after = before.rescan(&config);
    assert_ne!(after, before);
    assert_eq!(after.changed_paths(&before), [orders]);
}

#[test]
fn fingerprint_ignores_touches_and_temporary_files_and_reuses_old_digests() {
    let dir = mesh_dir();
    let config = dir.path().join("meshql.toml");
    let orders = dir.path().join("catalog/sales/products/orders.toml");
    // Let every file become older than the racy window, so a rescan may trust unchanged
    // metadata (not a timing assertion: only the file times matter).
    std::thread::sleep(std::time::Duration::from_millis(2_300));
    let fp = CatalogFingerprint::scan(&config);
    let again = fp.rescan(&config);
    assert_eq!(again, fp);
    assert_eq!(
        again.files_hashed(),
        0,
        "unchanged old files are not read again"
    );
    // Same content, new times: read again, but no change.
    let text = fs::read_to_string(&orders).unwrap();
    fs::write(&orders, &text).unwrap();
    let touched = again.rescan(&config);
    assert_eq!(touched, fp);
    assert_eq!(touched.files_hashed(), 1);
    // What an atomic install leaves while writing is not part of the catalog.
    fs::write(
        dir.path()
            .join("catalog/sales/products/.orders.toml.1.2.tmp"),
        "x",
    )
    .unwrap();
    fs::write(dir.path().join("catalog/sales/products/notes.txt"), "x").unwrap();
    assert_eq!(touched.rescan(&config), fp);
}

#[test]
fn fingerprint_of_a_broken_config_covers_the_config_only() {
    let dir = mesh_dir();
    let config = dir.path().join("meshql.toml");
    let good = fs::read_to_string(&config).unwrap();
    fs::write(&config, "[catalog\n").unwrap();
    let broken = CatalogFingerprint::scan(&config);
    assert_eq!(broken.len(), 1);
    // Manifest edits while the configuration is broken change nothing a reload could fix...
    write(
        &dir.path().join("catalog/sales/products/x.toml"),
        &manifest("sales", "x"),
    );
    assert_eq!(broken.rescan(&config), broken);
    // ...fixing the configuration does.
    fs::write(&config, good).unwrap();
    let fixed = broken.rescan(&config);
    assert_ne!(fixed, broken);
    assert!(fixed.len() > 1);
    // A missing configuration file is a state of its own.
    fs::remove_file(&config).unwrap();
    let missing = fixed.rescan(&config);
    assert_eq!(missing.len(), 1);
    assert_ne!(missing, fixed);
    assert_ne!(missing, broken);
}

#[test]
fn fingerprint_covers_jwt_key_and_secrets_files() {
    let dir = mesh_dir();
    let config = dir.path().join("meshql.toml");
    let text = fs::read_to_string(&config).unwrap().replace(
        "bucket = \"file:///data/crm\"",
        "bucket = \"s3://crm-bucket/\"\nsecrets_file = \"crm.secrets\"",
    ) + "[auth.jwt]\njwks_file = \"jwks.json\"\naudiences = [\"meshql\"]\n";
    fs::write(&config, text).unwrap();
    fs::write(dir.path().join("crm.secrets"), "access_key_id = \"a\"\n").unwrap();
    fs::write(dir.path().join("jwks.json"), "{\"keys\": []}").unwrap();
    let mut fp = CatalogFingerprint::scan(&config);
    for (file, text) in [
        ("crm.secrets", "access_key_id = \"b\"\n"),
        ("jwks.json", "{\"keys\": [1]}"),
    ] {
        let path = dir.path().join(file);
        fs::write(&path, text).unwrap();
        let next = fp.rescan(&config);
        assert_eq!(next.changed_paths(&fp), [path], "{file}");
        fp = next;
    }
}

// ---------------------------------------------------------------------------------------------
// Publishing: plan, diff, atomic install
// ---------------------------------------------------------------------------------------------

use meshql_catalog::{InstallPlan, Verdict};

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn publishing_a_new_product_installs_it_where_the_catalog_loads_it() {
    let dir = mesh_dir();
    let config = dir.path().join("meshql.toml");
    let source = dir.path().join("incoming/items.toml");
    write(&source, &derived("sales", "items", &["sales.orders"]));
    let plan = InstallPlan::prepare(&config, &source).unwrap_or_else(|e| panic!("{e}"));
    let products = dir.path().join("catalog/sales/products");
    assert_eq!(plan.target, products.join("items.toml"));
    assert!(plan.published.is_none());
    assert_eq!(plan.diff().verdict, Verdict::New);
    // The planned catalog already holds the product (for data and quality checks)...
    assert!(plan.mesh.product("sales", "items").is_some());
    assert_eq!(
        plan.mesh.upstream("sales", "items")[0].qualified_name(),
        "sales.orders"
    );
    // ...the real one does not, until it is installed.
    assert!(!plan.target.exists());
    assert_eq!(plan.install().unwrap(), plan.target);
    assert_eq!(
        fs::read_to_string(&plan.target).unwrap(),
        fs::read_to_string(&source).unwrap()
    );
    assert!(leftovers(&products).is_empty());
    let mesh = Mesh::load(&config).unwrap();
    assert!(mesh.product("sales", "items").is_some());
    // Into a domain that has no products folder yet.
    let source = dir.path().join("incoming/leads.toml");
    write(&source, &manifest("crm", "leads"));
    fs::remove_dir_all(dir.path().join("catalog/crm")).unwrap();
    let plan = InstallPlan::prepare(&config, &source).unwrap();
    plan.install().unwrap();
    assert!(dir.path().join("catalog/crm/products/leads.toml").exists());
}

#[test]
fn publishing_a_new_version_diffs_against_the_installed_one() {
    let dir = mesh_dir();
    let config = dir.path().join("meshql.toml");
    // The published product lives in a file not named after it.
    let products = dir.path().join("catalog/sales/products");
    fs::rename(
        products.join("orders.toml"),
        products.join("orders_v1.toml"),
    )
    .unwrap();
    let source = dir.path().join("orders.toml");
    let v2 = manifest("sales", "orders").replace(
        "primary_key = true\n",
        "primary_key = true\n[[schema]]\nname = \"note\"\ntype = \"string\"\n",
    );
    write(&source, &v2.replace("1.0.0", "1.1.0"));
    let plan = InstallPlan::prepare(&config, &source).unwrap();
    assert_eq!(plan.target, products.join("orders_v1.toml"));
    let diff = plan.diff();
    assert_eq!(diff.verdict, Verdict::Compatible, "{diff}");
    assert_eq!(diff.published_version.as_deref(), Some("1.0.0"));
    plan.install().unwrap();
    assert!(
        !products.join("orders.toml").exists(),
        "no second copy of the product"
    );
    // Dropping the column again without a major bump: breaking, refused by the verdict.
    write(
        &source,
        &manifest("sales", "orders").replace("1.0.0", "1.2.0"),
    );
    let plan = InstallPlan::prepare(&config, &source).unwrap();
    let diff = plan.diff();
    assert_eq!(diff.verdict, Verdict::BreakingWithoutMajorBump, "{diff}");
    assert_eq!(diff.affected_columns(), ["note"]);
    assert_eq!(diff.suggested_version.as_deref(), Some("2.0.0"));
    write(
        &source,
        &manifest("sales", "orders").replace("1.0.0", "2.0.0"),
    );
    let plan = InstallPlan::prepare(&config, &source).unwrap();
    assert_eq!(plan.diff().verdict, Verdict::BreakingWithMajorBump);
}

#[test]
fn publishing_refuses_unknown_domains_and_invalid_catalogs_naming_the_source() {
    let dir = mesh_dir();
    let config = dir.path().join("meshql.toml");
    let source = dir.path().join("x.toml");
    let problems = |text: &str| {
        write(&source, text);
        match InstallPlan::prepare(&config, &source) {
            Err(CatalogError::Invalid(p)) => p,
            other => panic!("{other:?}"),
        }
    };
    let p = problems(&manifest("finance", "ledger"));
    assert_eq!(
        (p[0].file.as_path(), p[0].field.as_str()),
        (source.as_path(), "domain")
    );
    assert!(
        p[0].message.contains("unknown domain `finance`"),
        "{}",
        p[0]
    );
    assert!(!dir.path().join("catalog/finance").exists());
    // A manifest problem names the source file.
    let p = problems(&manifest("sales", "items").replace("bigint", "number"));
    assert_eq!(
        (p[0].file.as_path(), p[0].field.as_str()),
        (source.as_path(), "schema[0].type")
    );
    // So does a problem only the whole catalog reveals (an unknown input).
    let p = problems(&derived("sales", "items", &["crm.ghost"]));
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(
        (p[0].file.as_path(), p[0].field.as_str()),
        (source.as_path(), "inputs[0].product")
    );
    // Or a cycle through the installed catalog.
    write(
        &dir.path().join("catalog/crm/products/people.toml"),
        &derived("crm", "people", &["sales.items"]),
    );
    let p = problems(&derived("sales", "items", &["crm.people"]));
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].message.contains("lineage cycle"), "{}", p[0]);
    // A file named after the product that holds another product is never overwritten.
    write(
        &dir.path().join("catalog/crm/products/people.toml"),
        &manifest("crm", "people"),
    );
    write(
        &dir.path().join("catalog/sales/products/items.toml"),
        &manifest("sales", "other"),
    );
    let p = problems(&manifest("sales", "items"));
    assert_eq!(p[0].field, "name");
    assert!(
        p[0].message.contains("already holds product `sales.other`"),
        "{}",
        p[0]
    );
    // An installed manifest that does not load: the published version is unknown.
    write(
        &dir.path().join("catalog/sales/products/items.toml"),
        "name = ",
    );
    let p = problems(&manifest("sales", "items"));
    assert!(p[0].message.contains("does not load"), "{}", p[0]);
    // A missing source file is an I/O error naming it.
    let err = InstallPlan::prepare(&config, Path::new("/no/such.toml")).unwrap_err();
    assert!(matches!(err, CatalogError::Io { .. }) && err.to_string().contains("/no/such.toml"));
}

#[test]
fn install_refuses_when_the_installed_manifest_changed_since_the_plan() {
    let dir = mesh_dir();
    let config = dir.path().join("meshql.toml");
    let source = dir.path().join("orders.toml");
    write(
        &source,
        &manifest("sales", "orders").replace("1.0.0", "1.0.1"),
    );
    let plan = InstallPlan::prepare(&config, &source).unwrap();
    let target = plan.target.clone();
    write(
        &target,
        &manifest("sales", "orders").replace("1.0.0", "1.5.0"),
    );
    let err = plan.install().unwrap_err();
    assert!(matches!(err, CatalogError::Changed { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("orders.toml changed since it was read"),
        "{err}"
    );
    assert!(
        fs::read_to_string(&target).unwrap().contains("1.5.0"),
        "nothing was written"
    );
    // Two plans for one new product: the second install finds the first one's file.
    let source = dir.path().join("items.toml");
    write(&source, &manifest("sales", "items"));
    let first = InstallPlan::prepare(&config, &source).unwrap();
    let second = InstallPlan::prepare(&config, &source).unwrap();
    first.install().unwrap();
    assert!(matches!(
        second.install(),
        Err(CatalogError::Changed { .. })
    ));
}

#[test]
fn atomic_writes_replace_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/m.toml");
    meshql_catalog::write_atomically(&path, "one").unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "one");
    meshql_catalog::write_atomically(&path, "two, longer").unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "two, longer");
    assert!(leftovers(&dir.path().join("a/b")).is_empty());
    // Writing where a folder stands fails cleanly, leaving nothing behind.
    fs::create_dir_all(dir.path().join("a/b/dir.toml/inner")).unwrap();
    let err = meshql_catalog::write_atomically(&dir.path().join("a/b/dir.toml"), "x").unwrap_err();
    assert!(matches!(err, CatalogError::Io { .. }), "{err}");
    assert!(leftovers(&dir.path().join("a/b")).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Documentation examples
// ---------------------------------------------------------------------------------------------

/// Every manifest example in docs/catalog.md parses, and the complete one has a rule of every
/// kind, lineage and deprecation as the text says.
#[test]
fn the_catalog_doc_manifests_are_valid() {
    use meshql_catalog::{OnBreach, ProductManifest, RULE_KINDS};
    let doc =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/catalog.md")).unwrap();
    let mut manifests = Vec::new();
    for block in doc.split("```toml\n").skip(1) {
        let text = &block[..block.find("```").unwrap()];
        if text.lines().any(|l| l.starts_with("domain = ")) {
            manifests.push(
                ProductManifest::parse(Path::new("docs/catalog.md"), text)
                    .unwrap_or_else(|p| panic!("{p:#?}\n{text}")),
            );
        }
    }
    assert_eq!(manifests.len(), 2);
    let m = manifests
        .iter()
        .find(|m| m.name == "delivery_performance")
        .unwrap();
    let kinds: Vec<&str> = m.quality.iter().map(|r| r.kind.rule()).collect();
    assert_eq!(kinds, RULE_KINDS);
    assert_eq!(m.sla.on_breach, OnBreach::Refuse);
    assert!(m
        .column("late")
        .unwrap()
        .deprecated
        .as_ref()
        .unwrap()
        .sunset
        .is_some());
    let inputs: Vec<String> = m.inputs.iter().map(|i| i.qualified_name()).collect();
    assert_eq!(inputs, ["sales.orders", "shipping.shipments"]);
    // The rendered diff shown in the docs is what `ContractDiff` prints.
    let start = doc.find("```text\ncrm.customers").unwrap() + "```text\n".len();
    let shown = &doc[start..start + doc[start..].find("\n```").unwrap()];
    let published = manifest("crm", "customers").replace("1.0.0", "1.2.0")
        + "[[schema]]\nname = \"country\"\ntype = \"string\"\n";
    let proposed = manifest("crm", "customers").replace("1.0.0", "1.3.0")
        + "[[schema]]\nname = \"age\"\ntype = \"int\"\n";
    let p = |t: &str| ProductManifest::parse(Path::new("m.toml"), t).unwrap();
    assert_eq!(
        meshql_catalog::diff(&p(&published), &p(&proposed)).to_string(),
        shown
    );
}

#[test]
fn refresh_interval_accepts_sub_second_and_compound_durations() {
    let parse = |value: &str| {
        let text = format!(
            "[catalog]\ndir = \"c\"\nrefresh_interval = {value}\n[[domains]]\nname = \"d\"\nbucket = \"b\"\n"
        );
        meshql_catalog::MeshConfig::parse(Path::new("/m/meshql.toml"), &text, std::iter::empty())
    };
    let ms = |v: &str| parse(v).map(|c| (c.refresh_interval.as_millis(), c.refresh_interval_secs));
    assert_eq!(ms("\"250ms\"").unwrap(), (250, 0));
    assert_eq!(ms("\"1m 30s\"").unwrap(), (90_000, 90));
    assert_eq!(ms("\"5s\"").unwrap(), (5_000, 5));
    assert_eq!(ms("\"2d\"").unwrap(), (172_800_000, 172_800));
    assert_eq!(ms("7").unwrap(), (7_000, 7));
    assert_eq!(ms("0").unwrap(), (0, 0));
    assert_eq!(ms("\"0s\"").unwrap(), (0, 0));
    let problems = parse("\"soon\"").unwrap_err();
    assert_eq!(
        problems[0].field, "catalog.refresh_interval",
        "{problems:?}"
    );
}
