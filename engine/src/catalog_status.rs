//! `meshql.catalog_status`: what catalog is in force and why the last change was rejected, as
//! the calling principal may see it.
//!
//! One `in_force` row (generation, since when, files read, products the caller can see, when
//! the reloader last looked), then, while the latest change is rejected, one `rejected` row per
//! problem with its file, field and message. Members of `admin` see every problem. Others see
//! the problems in the folders of domains in which they can see a product; the rest are counted
//! in one row whose file and field are NULL (`3 problem(s) in files you cannot see`), so they
//! learn that a change was rejected but not which domain, file or user it was about (problems
//! in `meshql.toml`, such as users, or in the global policies are admin-only). File paths are
//! shown relative to the configuration file's folder.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::MemTable;
use meshql_catalog::{Mesh, Principal, Problem};

use crate::audit::AUDIT_ADMIN_GROUP;
use crate::error::{EngineError, Result};
use crate::reload::CatalogStatus;

/// The table's schema.
pub(crate) fn catalog_status_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("generation", DataType::Int64, false),
        Field::new("since", ts.clone(), false),
        Field::new("files", DataType::Int64, true),
        Field::new("products", DataType::Int64, true),
        Field::new("last_checked", ts, true),
        Field::new("file", DataType::Utf8, true),
        Field::new("field", DataType::Utf8, true),
        Field::new("problem", DataType::Utf8, true),
    ]))
}

fn micros(t: SystemTime) -> i64 {
    chrono::DateTime::<chrono::Utc>::from(t).timestamp_micros()
}

/// `file` as shown: relative to the configuration's folder when inside it.
fn shown_path(file: &Path, mesh: &Mesh) -> String {
    let base = mesh.config.file.parent().unwrap_or(Path::new(""));
    match file.strip_prefix(base) {
        Ok(rel) if !base.as_os_str().is_empty() => rel.display().to_string(),
        _ => match file.strip_prefix(&mesh.config.catalog_dir) {
            Ok(rel) => format!("<catalog.dir>/{}", rel.display()),
            Err(_) => file.display().to_string(),
        },
    }
}

/// True when `principal` may see a problem in `file`: it is in the folder of a domain in which
/// the principal can see a product.
fn may_see(file: &Path, mesh: &Mesh, principal: &Principal) -> bool {
    let Ok(rel) = file.strip_prefix(&mesh.config.catalog_dir) else {
        return false;
    };
    let Some(domain) = rel.components().next().and_then(|c| c.as_os_str().to_str()) else {
        return false;
    };
    mesh.domain(domain).is_some_and(|d| {
        d.products
            .iter()
            .any(|p| mesh.access(principal, domain, &p.manifest.name).is_some())
    })
}

/// The rows of `meshql.catalog_status` for `principal`, whose session uses `mesh`.
pub(crate) fn catalog_status_table(
    status: &CatalogStatus,
    mesh: &Mesh,
    principal: &Principal,
) -> Result<Arc<MemTable>> {
    let admin = principal.has_group(AUDIT_ADMIN_GROUP);
    let visible_products = mesh
        .products()
        .filter(|p| {
            mesh.access(principal, &p.manifest.domain, &p.manifest.name)
                .is_some()
        })
        .count() as i64;
    let mut kind = vec!["in_force".to_string()];
    let mut since = vec![micros(status.since)];
    let mut files = vec![status.files.map(|f| f as i64)];
    let mut products = vec![Some(visible_products)];
    let mut last_checked = vec![status.last_checked.map(micros)];
    let mut file: Vec<Option<String>> = vec![None];
    let mut field: Vec<Option<String>> = vec![None];
    let mut problem: Vec<Option<String>> = vec![None];
    if let Some(r) = &status.rejected {
        let (shown, hidden): (Vec<&Problem>, Vec<&Problem>) = r
            .problems
            .iter()
            .partition(|p| admin || may_see(&p.file, mesh, principal));
        let mut push = |f: Option<String>, fl: Option<String>, msg: String| {
            kind.push("rejected".to_string());
            since.push(micros(r.at));
            files.push(None);
            products.push(None);
            last_checked.push(None);
            file.push(f);
            field.push(fl);
            problem.push(Some(msg));
        };
        for p in shown {
            push(
                Some(shown_path(&p.file, mesh)),
                Some(p.field.clone()),
                p.message.clone(),
            );
        }
        if !hidden.is_empty() {
            push(
                None,
                None,
                format!("{} problem(s) in files you cannot see", hidden.len()),
            );
        }
    }
    let generation = vec![status.generation as i64; kind.len()];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(kind)),
        Arc::new(Int64Array::from(generation)),
        Arc::new(TimestampMicrosecondArray::from(since).with_timezone("UTC")),
        Arc::new(Int64Array::from(files)),
        Arc::new(Int64Array::from(products)),
        Arc::new(TimestampMicrosecondArray::from(last_checked).with_timezone("UTC")),
        Arc::new(StringArray::from(file)),
        Arc::new(StringArray::from(field)),
        Arc::new(StringArray::from(problem)),
    ];
    let schema = catalog_status_schema();
    let batch =
        RecordBatch::try_new(Arc::clone(&schema), columns).map_err(|e| EngineError::Bug {
            context: "building meshql.catalog_status".to_string(),
            source: Box::new(e),
        })?;
    Ok(Arc::new(
        MemTable::try_new(schema, vec![vec![batch]]).map_err(EngineError::from_datafusion)?,
    ))
}
