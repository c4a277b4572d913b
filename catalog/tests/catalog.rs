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
