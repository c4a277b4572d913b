//! The `meshql` system schema: the catalog itself as tables (`domains`, `products`,
//! `columns`), built from the manifests for the calling principal.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{MemTable, MemorySchemaProvider, SchemaProvider};
use meshql_catalog::Mesh;

use crate::audit::AuditRecord;
use crate::error::{EngineError, Result};

/// Name of the system schema.
pub const SYSTEM_SCHEMA: &str = "meshql";

fn strings<'a>(v: impl IntoIterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(v))
}

fn table(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<Arc<MemTable>> {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    Ok(Arc::new(
        MemTable::try_new(schema, vec![vec![batch]])
            .map_err(|e| EngineError::Internal(e.to_string()))?,
    ))
}

fn s(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

/// Builds the system schema for `mesh`, listing the products and columns `visible_columns`
/// returns (None: the product is invisible; Some(columns): its visible columns).
pub(crate) fn system_schema(
    mesh: &Mesh,
    visible_columns: &dyn Fn(&str, &str) -> Option<Vec<String>>,
    audit: Vec<AuditRecord>,
) -> Result<Arc<dyn SchemaProvider>> {
    let visible = |d: &str, p: &str| visible_columns(d, p).is_some();
    let schema = MemorySchemaProvider::new();
    let domains: Vec<_> = mesh
        .domains
        .iter()
        .filter(|d| {
            d.products
                .iter()
                .any(|p| visible(d.name(), &p.manifest.name))
        })
        .collect();
    let domains_table = table(
        vec![
            s("name", false),
            s("description", false),
            s("owner", false),
            s("bucket", false),
            Field::new("products", DataType::Int32, false),
        ],
        vec![
            strings(domains.iter().map(|d| Some(d.name()))),
            strings(domains.iter().map(|d| Some(d.config.description.as_str()))),
            strings(domains.iter().map(|d| Some(d.config.owner.as_str()))),
            strings(domains.iter().map(|d| Some(d.config.bucket.as_str()))),
            Arc::new(Int32Array::from_iter_values(domains.iter().map(|d| {
                d.products
                    .iter()
                    .filter(|p| visible(d.name(), &p.manifest.name))
                    .count() as i32
            }))),
        ],
    )?;
    let products: Vec<_> = mesh
        .products()
        .filter(|p| visible(&p.manifest.domain, &p.manifest.name))
        .collect();
    let tags: Vec<String> = products.iter().map(|p| p.manifest.tags.join(",")).collect();
    let products_table = table(
        vec![
            s("domain", false),
            s("name", false),
            s("version", false),
            s("description", false),
            s("owner", false),
            s("format", false),
            s("location", false),
            s("freshness_sla", true),
            s("tags", false),
            Field::new("columns", DataType::Int32, false),
        ],
        vec![
            strings(products.iter().map(|p| Some(p.manifest.domain.as_str()))),
            strings(products.iter().map(|p| Some(p.manifest.name.as_str()))),
            strings(products.iter().map(|p| Some(p.manifest.version.as_str()))),
            strings(
                products
                    .iter()
                    .map(|p| Some(p.manifest.description.as_str())),
            ),
            strings(products.iter().map(|p| Some(p.manifest.owner.as_str()))),
            strings(products.iter().map(|p| Some(p.manifest.format.as_str()))),
            strings(products.iter().map(|p| Some(p.manifest.location.as_str()))),
            strings(
                products
                    .iter()
                    .map(|p| p.manifest.sla.freshness.as_ref().map(|(t, _)| t.as_str())),
            ),
            strings(tags.iter().map(|t| Some(t.as_str()))),
            Arc::new(Int32Array::from_iter_values(
                products.iter().map(|p| p.manifest.columns.len() as i32),
            )),
        ],
    )?;
    let cols: Vec<_> = products
        .iter()
        .flat_map(|p| {
            let shown = visible_columns(&p.manifest.domain, &p.manifest.name).unwrap_or_default();
            p.manifest
                .columns
                .iter()
                .enumerate()
                .filter(move |(_, c)| shown.contains(&c.name))
                .map(move |(i, c)| (*p, i, c))
        })
        .collect();
    let types: Vec<String> = cols.iter().map(|(_, _, c)| c.ty.to_string()).collect();
    let columns_table = table(
        vec![
            s("domain", false),
            s("product", false),
            s("name", false),
            Field::new("ordinal", DataType::Int32, false),
            s("type", false),
            Field::new("nullable", DataType::Boolean, false),
            s("description", false),
            s("classification", true),
            Field::new("primary_key", DataType::Boolean, false),
        ],
        vec![
            strings(
                cols.iter()
                    .map(|(p, _, _)| Some(p.manifest.domain.as_str())),
            ),
            strings(cols.iter().map(|(p, _, _)| Some(p.manifest.name.as_str()))),
            strings(cols.iter().map(|(_, _, c)| Some(c.name.as_str()))),
            Arc::new(Int32Array::from_iter_values(
                cols.iter().map(|(_, i, _)| *i as i32 + 1),
            )),
            strings(types.iter().map(|t| Some(t.as_str()))),
            Arc::new(BooleanArray::from_iter(
                cols.iter().map(|(_, _, c)| Some(c.nullable)),
            )),
            strings(cols.iter().map(|(_, _, c)| Some(c.description.as_str()))),
            strings(cols.iter().map(|(_, _, c)| c.classification.as_deref())),
            Arc::new(BooleanArray::from_iter(
                cols.iter().map(|(_, _, c)| Some(c.primary_key)),
            )),
        ],
    )?;
    let products_json: Vec<String> = audit
        .iter()
        .map(|r| serde_json::to_string(&r.products).unwrap_or_default())
        .collect();
    let audit_table = table(
        vec![
            s("time", false),
            s("user", false),
            s("sql", true),
            s("sql_sha256", false),
            s("products", false),
            Field::new("rows", DataType::Int64, false),
            Field::new("bytes", DataType::Int64, false),
            Field::new("duration_ms", DataType::Int64, false),
            s("outcome", false),
            s("error", true),
        ],
        vec![
            strings(audit.iter().map(|r| Some(r.time.as_str()))),
            strings(audit.iter().map(|r| Some(r.user.as_str()))),
            strings(audit.iter().map(|r| r.sql.as_deref())),
            strings(audit.iter().map(|r| Some(r.sql_sha256.as_str()))),
            strings(products_json.iter().map(|p| Some(p.as_str()))),
            Arc::new(Int64Array::from_iter_values(
                audit.iter().map(|r| r.rows as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                audit.iter().map(|r| r.bytes as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                audit.iter().map(|r| r.duration_ms as i64),
            )),
            strings(audit.iter().map(|r| Some(r.outcome))),
            strings(audit.iter().map(|r| r.error.as_deref())),
        ],
    )?;
    for (name, t) in [
        ("domains", domains_table),
        ("products", products_table),
        ("columns", columns_table),
        ("audit", audit_table),
    ] {
        schema
            .register_table(name.to_string(), t)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
    }
    Ok(Arc::new(schema))
}
