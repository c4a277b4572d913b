//! Loading whole meshes from disk: every problem across files is reported with file and field.

use std::fs;
use std::path::Path;

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
