//! Usage per product, computed from the audit records kept in memory: the `meshql.usage` system
//! table (per product: queries, distinct principals, first and last read — over the caller's own
//! records, or everyone's for audit admins), a product's usage panel (queries per day, distinct
//! consumers, last read; consumer names only for the owning domain's members and admins) and a
//! principal's query history.
//!
//! A record counts for every product it read (a join of two products counts once for each).
//! Products the caller cannot see are never listed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::logical_expr::TableType;
use meshql_catalog::{Mesh, Principal};
use serde::Serialize;

use crate::audit::{AuditLog, AuditRecord, AUDIT_ADMIN_GROUP};
use crate::error::{EngineError, Result};
use crate::session::MeshEngine;

/// Usage of one product, aggregated over some audit records.
#[derive(Debug, Default, Clone)]
struct Tally {
    queries: u64,
    principals: BTreeSet<String>,
    first: Option<String>,
    last: Option<String>,
}

impl Tally {
    fn add(&mut self, r: &AuditRecord) {
        self.queries += 1;
        self.principals.insert(r.user.clone());
        // RFC 3339 UTC timestamps with a fixed format sort as text.
        if self.first.as_deref().is_none_or(|f| r.time.as_str() < f) {
            self.first = Some(r.time.clone());
        }
        if self.last.as_deref().is_none_or(|l| r.time.as_str() > l) {
            self.last = Some(r.time.clone());
        }
    }
}

fn micros(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// The schema of `meshql.usage`.
pub(crate) fn usage_schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("domain", DataType::Utf8, false),
        Field::new("product", DataType::Utf8, false),
        Field::new("queries", DataType::Int64, false),
        Field::new("principals", DataType::Int64, false),
        Field::new("first_read", ts(), true),
        Field::new("last_read", ts(), true),
    ]))
}

/// `meshql.usage` of one principal: computed from the audit ring when the table is scanned
/// (never copied into a session).
#[derive(Debug)]
pub(crate) struct UsageTable {
    log: Arc<AuditLog>,
    principal: Principal,
    mesh: Arc<Mesh>,
}

impl UsageTable {
    pub(crate) fn new(log: Arc<AuditLog>, principal: Principal, mesh: Arc<Mesh>) -> Self {
        Self {
            log,
            principal,
            mesh,
        }
    }
}

#[async_trait::async_trait]
impl TableProvider for UsageTable {
    fn schema(&self) -> SchemaRef {
        usage_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let records = self.log.visible_to(&self.principal);
        let visible = |d: &str, p: &str| self.mesh.access(&self.principal, d, p).is_some();
        usage_table(&records, &visible)?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// `meshql.usage`: one row per visible product read by at least one of `records`.
pub(crate) fn usage_table(
    records: &[Arc<AuditRecord>],
    visible: &dyn Fn(&str, &str) -> bool,
) -> Result<Arc<MemTable>> {
    let mut tallies: BTreeMap<(String, String), Tally> = BTreeMap::new();
    for r in records {
        for read in &r.products {
            let Some((domain, product)) = read.product.split_once('.') else {
                continue;
            };
            if !visible(domain, product) {
                continue;
            }
            tallies
                .entry((domain.to_string(), product.to_string()))
                .or_default()
                .add(r);
        }
    }
    let schema = usage_schema();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            tallies.keys().map(|(d, _)| d.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            tallies.keys().map(|(_, p)| p.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            tallies.values().map(|t| t.queries as i64),
        )),
        Arc::new(Int64Array::from_iter_values(
            tallies.values().map(|t| t.principals.len() as i64),
        )),
        Arc::new(
            TimestampMicrosecondArray::from(
                tallies
                    .values()
                    .map(|t| t.first.as_deref().and_then(micros))
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(
            TimestampMicrosecondArray::from(
                tallies
                    .values()
                    .map(|t| t.last.as_deref().and_then(micros))
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    Ok(Arc::new(
        MemTable::try_new(schema, vec![vec![batch]])
            .map_err(|e| EngineError::Internal(e.to_string()))?,
    ))
}

/// Queries of one day (UTC).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DayUsage {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub queries: u64,
    pub consumers: u64,
}

/// One consumer of a product.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConsumerUsage {
    pub user: String,
    pub queries: u64,
    pub last_read: String,
}

/// A product's usage panel.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProductUsage {
    pub queries: u64,
    /// Distinct principals that read the product.
    pub consumers: u64,
    /// RFC 3339, UTC.
    pub last_read: Option<String>,
    /// Oldest day first, days with queries only.
    pub per_day: Vec<DayUsage>,
    /// Who reads the product, most queries first: only for members of the owning domain and
    /// audit admins (None for everyone else).
    pub by_consumer: Option<Vec<ConsumerUsage>>,
}

impl MeshEngine {
    /// The usage panel of `domain.product` as `viewer` may see it; None when the viewer cannot
    /// see the product (or it does not exist). Counts cover every principal's queries kept in
    /// memory; names are shown to the owning domain's members and audit admins only.
    pub fn product_usage(
        &self,
        viewer: &Principal,
        domain: &str,
        product: &str,
    ) -> Option<ProductUsage> {
        self.mesh().access(viewer, domain, product)?;
        let qualified = format!("{domain}.{product}");
        let mut total = Tally::default();
        let mut days: BTreeMap<String, Tally> = BTreeMap::new();
        let mut users: BTreeMap<String, Tally> = BTreeMap::new();
        for r in self.audit_log().all() {
            if !r.products.iter().any(|p| p.product == qualified) {
                continue;
            }
            total.add(&r);
            let day = r.time.get(..10).unwrap_or(&r.time).to_string();
            days.entry(day).or_default().add(&r);
            users.entry(r.user.clone()).or_default().add(&r);
        }
        let show_names = viewer.has_group(domain) || viewer.has_group(AUDIT_ADMIN_GROUP);
        let by_consumer = show_names.then(|| {
            let mut v: Vec<ConsumerUsage> = users
                .into_iter()
                .map(|(user, t)| ConsumerUsage {
                    user,
                    queries: t.queries,
                    last_read: t.last.unwrap_or_default(),
                })
                .collect();
            v.sort_by(|a, b| b.queries.cmp(&a.queries).then(a.user.cmp(&b.user)));
            v
        });
        Some(ProductUsage {
            queries: total.queries,
            consumers: total.principals.len() as u64,
            last_read: total.last,
            per_day: days
                .into_iter()
                .map(|(day, t)| DayUsage {
                    day,
                    queries: t.queries,
                    consumers: t.principals.len() as u64,
                })
                .collect(),
            by_consumer,
        })
    }

    /// The audit records `viewer` may see (its own; everyone's for audit admins), newest first,
    /// at most `limit`: the query history of the web console.
    pub fn history(&self, viewer: &Principal, limit: usize) -> Vec<AuditRecord> {
        self.audit_log()
            .visible_to(viewer)
            .iter()
            .rev()
            .take(limit)
            .map(|r| AuditRecord::clone(r))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::product::ProductRead;
    use datafusion::prelude::SessionContext;

    fn record(user: &str, time: &str, products: &[&str]) -> Arc<AuditRecord> {
        Arc::new(AuditRecord {
            time: time.to_string(),
            user: user.to_string(),
            sql: None,
            sql_sha256: String::new(),
            products: products
                .iter()
                .map(|p| ProductRead {
                    product: p.to_string(),
                    delta_version: None,
                    columns: vec![],
                    policies: vec![],
                    sla_breach: None,
                    deprecated: vec![],
                })
                .collect(),
            rows: 0,
            bytes: 0,
            duration_ms: 0,
            outcome: "ok",
            error: None,
            workers: vec![],
            cache: None,
        })
    }

    #[tokio::test]
    async fn usage_counts_queries_and_principals_of_visible_products_only() {
        let records = vec![
            record("ann", "2026-01-01T10:00:00.000Z", &["sales.orders"]),
            record(
                "bob",
                "2026-01-02T10:00:00.000Z",
                &["sales.orders", "customers.customers"],
            ),
            record("ann", "2026-01-03T10:00:00.000Z", &["sales.orders"]),
            record("ann", "2026-01-03T11:00:00.000Z", &[]),
        ];
        let visible = |d: &str, _: &str| d == "sales";
        let table = usage_table(&records, &visible).unwrap();
        let ctx = SessionContext::new();
        ctx.register_table("usage", table).unwrap();
        let batches = ctx
            .sql("SELECT domain, product, queries, principals, CAST(first_read AS VARCHAR) AS f, CAST(last_read AS VARCHAR) AS l FROM usage")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        insta::assert_snapshot!(text, @r"
        +--------+---------+---------+------------+----------------------+----------------------+
        | domain | product | queries | principals | f                    | l                    |
        +--------+---------+---------+------------+----------------------+----------------------+
        | sales  | orders  | 3       | 2          | 2026-01-01T10:00:00Z | 2026-01-03T10:00:00Z |
        +--------+---------+---------+------------+----------------------+----------------------+
        ");
    }
}
