//! A product's health as a consumer sees it, and the system tables that show it:
//! the `status` columns of `meshql.products`, `meshql.quality`, `meshql.lineage` and
//! `meshql.column_lineage`.
//!
//! A product's **own** status comes from its storage (can the data be read?), its quality
//! results for the current data version and its freshness SLA; its lineage adds `at_risk` when
//! a product it derives from (directly or through others) is failing, stale or unavailable.
//! When several apply, the most severe wins:
//!
//! `unavailable` > `failing` > `stale` > `at_risk` > `warning` > `healthy`
//!
//! (`status_detail` lists every reason, most severe first; `at_risk_upstream` names the
//! upstream products at fault whatever the product's own status.)
//!
//! Everything is filtered to what the caller may see: hidden products are absent, an upstream
//! product the caller may not see is called "an upstream product", a rule naming a column the
//! caller may not see is not shown (and counts as "a rule" in details), and observed values are
//! withheld from callers whose reading of the product is restricted (a row filter, or a masked
//! column the rule reads): they are computed over every row, in clear. Pass/fail itself is the
//! product's public health and is shown to everyone who sees the product.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, Utc};
use datafusion::catalog::MemTable;
use datafusion::execution::runtime_env::RuntimeEnv;
use meshql_catalog::{ColumnAccess, Mesh, Principal, Product, Severity};

use crate::error::{EngineError, Result};
use crate::freshness::{observe_bounded, sla_breach, DataState, SlaBreach};
use crate::quality::{ProductCheck, RuleResult, RuleStatus};
use crate::quality_store::QualityStore;

/// How long a query of `meshql.products` or `meshql.quality` waits for the first check of a
/// product (it keeps running after; later queries see its result).
const FIRST_RESULT_WAIT: Duration = Duration::from_secs(20);
/// How long it waits for the check of a new data version when an older one has results (which
/// are shown meanwhile): data that changes all the time must not make every query wait.
const NEW_VERSION_WAIT: Duration = Duration::from_secs(2);

/// A product's status, in increasing severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Status {
    Healthy,
    Warning,
    AtRisk,
    Stale,
    Failing,
    Unavailable,
}

impl Status {
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Warning => "warning",
            Status::AtRisk => "at_risk",
            Status::Stale => "stale",
            Status::Failing => "failing",
            Status::Unavailable => "unavailable",
        }
    }

    /// Whether this (own) status puts products derived from this one at risk.
    fn endangers_consumers(&self) -> bool {
        matches!(self, Status::Stale | Status::Failing | Status::Unavailable)
    }
}

/// Why a product has its own status.
#[derive(Debug, Clone)]
enum Reason {
    Unavailable(String),
    Rule(RuleResult),
    Stale(SlaBreach),
    /// Quality results are missing or for another data version.
    NotChecked {
        current: String,
        checked: Option<String>,
    },
}

/// A product's own health (before lineage).
#[derive(Debug, Clone)]
struct Own {
    status: Status,
    reasons: Vec<Reason>,
}

fn own_health(
    product: &Product,
    state: Option<&std::result::Result<DataState, String>>,
    check: Option<&ProductCheck>,
    now: DateTime<Utc>,
) -> Own {
    let mut reasons = Vec::new();
    let mut status = Status::Healthy;
    let raise = |s: Status, status: &mut Status| *status = (*status).max(s);
    match state {
        Some(Err(e)) => {
            raise(Status::Unavailable, &mut status);
            reasons.push(Reason::Unavailable(e.clone()));
        }
        Some(Ok(s)) => {
            if let Some(b) = sla_breach(&product.manifest, s, now.timestamp_micros()) {
                raise(Status::Stale, &mut status);
                reasons.push(Reason::Stale(b));
            }
        }
        None => {}
    }
    let current = state
        .and_then(|s| s.as_ref().ok())
        .map(|s| s.version.clone());
    if !product.manifest.quality.is_empty() {
        match check {
            Some(c) => {
                if let Some(e) = &c.error {
                    if c.data_version == current.clone().unwrap_or_default() || current.is_none() {
                        raise(Status::Unavailable, &mut status);
                        reasons.push(Reason::Unavailable(e.clone()));
                    }
                } else {
                    for r in c.at(now).rules {
                        if r.status == RuleStatus::Pass {
                            continue;
                        }
                        raise(
                            match r.severity {
                                Severity::Error => Status::Failing,
                                Severity::Warning => Status::Warning,
                            },
                            &mut status,
                        );
                        reasons.push(Reason::Rule(r));
                    }
                }
                if let Some(v) = current.filter(|v| *v != c.data_version) {
                    reasons.push(Reason::NotChecked {
                        current: v,
                        checked: Some(c.data_version.clone()),
                    });
                }
            }
            None => {
                if let Some(v) = current {
                    reasons.push(Reason::NotChecked {
                        current: v,
                        checked: None,
                    });
                }
            }
        }
    }
    // Most severe first.
    reasons.sort_by_key(|r| {
        std::cmp::Reverse(match r {
            Reason::Unavailable(_) => 5,
            Reason::Rule(r) if r.severity == Severity::Error => 4,
            Reason::Stale(_) => 3,
            Reason::Rule(_) => 2,
            Reason::NotChecked { .. } => 1,
        })
    });
    Own { status, reasons }
}

/// How a caller may see one rule's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuleView {
    /// The rule reads a column the caller may not see: the rule is not shown.
    Hidden,
    /// Shown, but its observed value is withheld (row filter, or a masked column).
    Withheld,
    Shown,
}

/// What one principal may see.
struct Viewer<'a> {
    mesh: &'a Mesh,
    principal: &'a Principal,
}

impl Viewer<'_> {
    fn visible(&self, product: &Product) -> bool {
        self.mesh
            .policies
            .access(self.principal, &product.manifest)
            .is_some()
    }

    fn rule(&self, product: &Product, columns: &[String]) -> RuleView {
        let Some(access) = self.mesh.policies.access(self.principal, &product.manifest) else {
            return RuleView::Hidden;
        };
        let mut view = if access.row_filters.is_empty() {
            RuleView::Shown
        } else {
            RuleView::Withheld
        };
        for c in columns {
            match access.columns.iter().find(|(name, _)| name == c) {
                None => return RuleView::Hidden,
                Some((_, ColumnAccess::Masked(_))) => view = RuleView::Withheld,
                Some((_, ColumnAccess::Clear)) => {}
            }
        }
        view
    }

    /// The reasons of a product's own status in words for this caller.
    fn reasons(&self, product: &Product, reasons: &[Reason]) -> Vec<String> {
        let mut out = Vec::new();
        let mut unnamed: BTreeMap<&'static str, usize> = BTreeMap::new();
        for r in reasons {
            match r {
                Reason::Unavailable(m) => out.push(format!("data unavailable: {m}")),
                Reason::Stale(b) => out.push(b.to_string()),
                Reason::NotChecked {
                    current,
                    checked: None,
                } => out.push(format!(
                    "quality not checked yet for data version {current}"
                )),
                Reason::NotChecked {
                    current,
                    checked: Some(v),
                } => out.push(format!(
                    "quality results are for data version {v}; {current} is not checked yet"
                )),
                Reason::Rule(rule) => {
                    let verb = if rule.status == RuleStatus::Error {
                        "could not be evaluated"
                    } else {
                        "failed"
                    };
                    match self.rule(product, &rule.columns) {
                        RuleView::Hidden => {
                            *unnamed.entry(rule.severity.as_str()).or_default() += 1
                        }
                        RuleView::Withheld => {
                            out.push(format!("{} rule `{}` {verb}", rule.severity, rule.rule))
                        }
                        RuleView::Shown => out.push(format!(
                            "{} rule `{}` {verb}: {}",
                            rule.severity, rule.rule, rule.observed
                        )),
                    }
                }
            }
        }
        for (severity, n) in unnamed {
            out.push(format!(
                "{n} {severity} rule(s) on columns you cannot see failed"
            ));
        }
        out
    }
}

/// What is known of each product (by `domain.product`): its observed data state and its latest
/// quality results.
type Known = BTreeMap<
    String,
    (
        Option<std::result::Result<DataState, String>>,
        Option<Arc<ProductCheck>>,
    ),
>;

/// What `meshql.products` shows about one product's health.
#[derive(Debug, Clone)]
pub(crate) struct ProductHealth {
    pub(crate) state: std::result::Result<DataState, String>,
    /// Whether the freshness SLA is met now (None: no SLA, or no time known).
    pub(crate) sla_met: Option<bool>,
    pub(crate) status: Status,
    pub(crate) detail: String,
    pub(crate) at_risk_upstream: Option<String>,
}

/// What computing health needs.
pub(crate) struct HealthContext<'a> {
    pub(crate) mesh: &'a Arc<Mesh>,
    pub(crate) runtime: &'a Arc<RuntimeEnv>,
    pub(crate) store: &'a Arc<QualityStore>,
    pub(crate) principal: &'a Principal,
}

/// Observes `products` (and with them, every product upstream of them) now and gets their
/// quality results for the current data versions, waiting a bounded time for checks.
async fn observe_all(cx: &HealthContext<'_>, products: &[&Product]) -> Known {
    let mesh = cx.mesh;
    let mut targets: BTreeMap<String, &Product> = BTreeMap::new();
    for p in products {
        targets.insert(p.qualified_name(), p);
        for u in mesh.upstream(&p.manifest.domain, &p.manifest.name) {
            targets.insert(u.qualified_name(), u);
        }
    }
    let start = Instant::now();
    let work = targets.values().map(|p| async move {
        let state = match mesh.domain(&p.manifest.domain) {
            Some(d) => observe_bounded(cx.runtime, d, p, None).await,
            None => Err("unknown domain".to_string()),
        };
        cx.store
            .observations
            .record(&p.qualified_name(), state.clone());
        let check = match (&state, p.manifest.quality.is_empty()) {
            (Ok(s), false) => {
                let limit = if cx.store.latest(p).is_some() {
                    NEW_VERSION_WAIT
                } else {
                    FIRST_RESULT_WAIT
                };
                let wait = limit.saturating_sub(start.elapsed());
                match cx.store.result(mesh, p, s, Some(wait)).await {
                    Some(c) => Some(c),
                    None => cx.store.latest(p),
                }
            }
            (Err(_), false) => cx.store.latest(p),
            _ => None,
        };
        (p.qualified_name(), (Some(state), check))
    });
    futures::future::join_all(work).await.into_iter().collect()
}

/// The health of `products` (all visible to the caller), observed now.
pub(crate) async fn products_health(
    cx: &HealthContext<'_>,
    products: &[&Product],
) -> Vec<ProductHealth> {
    let known = observe_all(cx, products).await;
    let now = Utc::now();
    products
        .iter()
        .map(|p| {
            let (state, _) = known
                .get(&p.qualified_name())
                .cloned()
                .unwrap_or((None, None));
            let state = state.unwrap_or_else(|| Err("not observed".to_string()));
            let sla_met = match (&state, &p.manifest.sla.freshness) {
                (Ok(s), Some(_)) => s
                    .last_modified_us
                    .map(|_| sla_breach(&p.manifest, s, now.timestamp_micros()).is_none()),
                _ => None,
            };
            let (status, detail, at_risk) = compose(cx.mesh, cx.principal, p, &known, now);
            ProductHealth {
                state,
                sla_met,
                status,
                detail,
                at_risk_upstream: at_risk,
            }
        })
        .collect()
}

/// Status, detail and at-risk upstream of `product` from what is `known` of every product.
fn compose(
    mesh: &Mesh,
    principal: &Principal,
    product: &Product,
    known: &Known,
    now: DateTime<Utc>,
) -> (Status, String, Option<String>) {
    let viewer = Viewer { mesh, principal };
    let own_of = |p: &Product| {
        let (state, check) = known
            .get(&p.qualified_name())
            .cloned()
            .unwrap_or((None, None));
        own_health(p, state.as_ref(), check.as_deref(), now)
    };
    let own = own_of(product);
    let mut status = own.status;
    let mut detail = viewer.reasons(product, &own.reasons);
    let mut named: BTreeSet<String> = BTreeSet::new();
    let mut hidden = false;
    for u in mesh.upstream(&product.manifest.domain, &product.manifest.name) {
        let up = own_of(u);
        if !up.status.endangers_consumers() {
            continue;
        }
        if viewer.visible(u) {
            if named.insert(u.qualified_name()) {
                detail.push(format!(
                    "upstream product {} is {}",
                    u.qualified_name(),
                    up.status.as_str()
                ));
            }
        } else {
            hidden = true;
        }
    }
    if hidden {
        detail.push("an upstream product is failing, stale or unavailable".to_string());
    }
    let mut at_risk: Vec<String> = named.into_iter().collect();
    if hidden {
        at_risk.push("an upstream product".to_string());
    }
    if !at_risk.is_empty() {
        status = status.max(Status::AtRisk);
    }
    (
        status,
        detail.join("; "),
        (!at_risk.is_empty()).then(|| at_risk.join(", ")),
    )
}

/// The last known status of `product` for `principal`, from earlier observations and checks
/// only (metadata calls never touch storage): `status` or `status: detail`; None when the
/// product was never observed.
pub(crate) fn known_status(
    mesh: &Mesh,
    store: &QualityStore,
    principal: &Principal,
    product: &Product,
) -> Option<String> {
    store
        .observations
        .last(&product.qualified_name())
        .as_ref()?;
    let mut known: Known = BTreeMap::new();
    let upstream = mesh.upstream(&product.manifest.domain, &product.manifest.name);
    for p in std::iter::once(product).chain(upstream) {
        let state = store
            .observations
            .last(&p.qualified_name())
            .map(|o| o.state);
        known.insert(p.qualified_name(), (state, store.latest(p)));
    }
    let (status, detail, _) = compose(mesh, principal, product, &known, Utc::now());
    Some(if detail.is_empty() {
        status.as_str().to_string()
    } else {
        format!("{}: {detail}", status.as_str())
    })
}

fn s(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn strings<'a>(v: impl IntoIterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(v))
}

fn mem_table(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<Arc<MemTable>> {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    Ok(Arc::new(
        MemTable::try_new(schema, vec![vec![batch]])
            .map_err(|e| EngineError::Internal(e.to_string()))?,
    ))
}

/// The columns `meshql.products` gets from here, after its freshness columns.
pub(crate) fn product_status_fields() -> Vec<Field> {
    vec![
        s("status", false),
        s("status_detail", false),
        s("at_risk_upstream", true),
    ]
}

/// Schema of `meshql.quality`.
pub(crate) fn quality_schema() -> Schema {
    Schema::new(vec![
        s("domain", false),
        s("product", false),
        s("rule", false),
        s("type", false),
        s("severity", false),
        s("status", false),
        s("observed", true),
        s("data_version", true),
        Field::new(
            "checked_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        s("definition", false),
        s("description", false),
    ])
}

/// `meshql.quality`: every rule of every product the caller sees (but rules on columns it
/// cannot see), with the results for the current data version (or the latest checked one).
pub(crate) async fn quality_table(cx: &HealthContext<'_>) -> Result<Arc<MemTable>> {
    let viewer = Viewer {
        mesh: cx.mesh,
        principal: cx.principal,
    };
    let products: Vec<&Product> = cx
        .mesh
        .products()
        .filter(|p| !p.manifest.quality.is_empty() && viewer.visible(p))
        .collect();
    let known = observe_all(cx, &products).await;
    let now = Utc::now();
    struct Row {
        domain: String,
        product: String,
        rule: String,
        kind: &'static str,
        severity: &'static str,
        status: &'static str,
        observed: Option<String>,
        data_version: Option<String>,
        checked_at: Option<i64>,
        definition: String,
        description: String,
    }
    let mut rows: Vec<Row> = Vec::new();
    for p in products {
        let (state, check) = known
            .get(&p.qualified_name())
            .cloned()
            .unwrap_or((None, None));
        let check = check.map(|c| c.at(now));
        for (i, rule) in p.manifest.quality.iter().enumerate() {
            let result = check
                .as_ref()
                .and_then(|c| c.rules.get(i).filter(|r| r.rule == rule.name));
            let columns: Vec<String> = match result {
                Some(r) => r.columns.clone(),
                None => rule.kind.columns().into_iter().map(String::from).collect(),
            };
            let view = viewer.rule(p, &columns);
            if view == RuleView::Hidden {
                continue;
            }
            let (status, observed) = match (result, &state) {
                (Some(r), _) => (r.status.as_str(), Some(r.observed.clone())),
                (None, Some(Err(e))) => ("error", Some(format!("data unavailable: {e}"))),
                (None, _) => ("pending", None),
            };
            let observed = match (view, observed) {
                (RuleView::Withheld, Some(_)) => {
                    Some("withheld: computed over data your access does not show".to_string())
                }
                (_, o) => o,
            };
            rows.push(Row {
                domain: p.manifest.domain.clone(),
                product: p.manifest.name.clone(),
                rule: rule.name.clone(),
                kind: rule.kind.rule(),
                severity: rule.severity.as_str(),
                status,
                observed,
                data_version: match (&check, &state) {
                    (Some(c), _) => Some(c.data_version.clone()),
                    (None, Some(Ok(s))) => Some(s.version.clone()),
                    _ => None,
                },
                checked_at: check.as_ref().map(|c| c.checked_at.timestamp_micros()),
                definition: rule.kind.to_string(),
                description: rule.description.clone(),
            });
        }
    }
    let schema = quality_schema();
    let fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    mem_table(
        fields,
        vec![
            strings(rows.iter().map(|r| Some(r.domain.as_str()))),
            strings(rows.iter().map(|r| Some(r.product.as_str()))),
            strings(rows.iter().map(|r| Some(r.rule.as_str()))),
            strings(rows.iter().map(|r| Some(r.kind))),
            strings(rows.iter().map(|r| Some(r.severity))),
            strings(rows.iter().map(|r| Some(r.status))),
            strings(rows.iter().map(|r| r.observed.as_deref())),
            strings(rows.iter().map(|r| r.data_version.as_deref())),
            Arc::new(
                TimestampMicrosecondArray::from(
                    rows.iter().map(|r| r.checked_at).collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
            strings(rows.iter().map(|r| Some(r.definition.as_str()))),
            strings(rows.iter().map(|r| Some(r.description.as_str()))),
        ],
    )
}

/// Schema of `meshql.lineage`.
pub(crate) fn lineage_schema() -> Schema {
    Schema::new(vec![
        s("product", false),
        s("input", false),
        s("description", false),
    ])
}

/// `meshql.lineage`: one row per `[[inputs]]` edge whose both ends the caller may see.
pub(crate) fn lineage_table(mesh: &Mesh, principal: &Principal) -> Result<Arc<MemTable>> {
    let viewer = Viewer { mesh, principal };
    let edges: Vec<_> = mesh
        .lineage_edges()
        .into_iter()
        .filter(|e| viewer.visible(e.product) && viewer.visible(e.input))
        .collect();
    let names: Vec<(String, String)> = edges
        .iter()
        .map(|e| (e.product.qualified_name(), e.input.qualified_name()))
        .collect();
    let schema = lineage_schema();
    mem_table(
        schema.fields().iter().map(|f| f.as_ref().clone()).collect(),
        vec![
            strings(names.iter().map(|(p, _)| Some(p.as_str()))),
            strings(names.iter().map(|(_, i)| Some(i.as_str()))),
            strings(edges.iter().map(|e| Some(e.spec.description.as_str()))),
        ],
    )
}

/// Schema of `meshql.column_lineage`.
pub(crate) fn column_lineage_schema() -> Schema {
    Schema::new(vec![
        s("product", false),
        s("column", false),
        s("input", false),
        s("input_column", false),
    ])
}

/// `meshql.column_lineage`: which input columns each column is computed from, for columns the
/// caller may see on both sides.
pub(crate) fn column_lineage_table(mesh: &Mesh, principal: &Principal) -> Result<Arc<MemTable>> {
    let columns_of = |p: &Product| -> Option<Vec<String>> {
        mesh.policies
            .access(principal, &p.manifest)
            .map(|a| a.columns.iter().map(|(c, _)| c.to_string()).collect())
    };
    let mut rows: Vec<[String; 4]> = Vec::new();
    for e in mesh.lineage_edges() {
        let (Some(mine), Some(theirs)) = (columns_of(e.product), columns_of(e.input)) else {
            continue;
        };
        for (column, inputs) in &e.spec.columns {
            if !mine.contains(column) {
                continue;
            }
            for c in inputs.iter().filter(|c| theirs.contains(c)) {
                rows.push([
                    e.product.qualified_name(),
                    column.clone(),
                    e.input.qualified_name(),
                    c.clone(),
                ]);
            }
        }
    }
    let schema = column_lineage_schema();
    mem_table(
        schema.fields().iter().map(|f| f.as_ref().clone()).collect(),
        (0..4)
            .map(|i| strings(rows.iter().map(|r| Some(r[i].as_str()))))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_documented_order() {
        let mut all = [
            Status::Warning,
            Status::Unavailable,
            Status::Healthy,
            Status::Stale,
            Status::AtRisk,
            Status::Failing,
        ];
        all.sort();
        assert_eq!(
            all.map(|s| s.as_str()),
            [
                "healthy",
                "warning",
                "at_risk",
                "stale",
                "failing",
                "unavailable"
            ]
        );
        assert!(!Status::Warning.endangers_consumers());
        assert!(!Status::AtRisk.endangers_consumers());
        assert!(Status::Stale.endangers_consumers());
    }
}
