//! Quality rules (`[[quality]]` in a contract) compiled into DataFusion plans and run over a
//! product's data.
//!
//! A product's rules run over its **contract plan** (the same projection queries see, without
//! any principal's policies: quality is checked by the platform) as one query:
//!
//! - one aggregate without grouping computes every rule but `unique` in a single pass:
//!   `count(*)` (row_count), `count(c)` (not_null: NULLs are rows minus that), and per rule
//!   `sum(CASE WHEN <violation> THEN 1 ELSE 0 END)` (accepted_values, range, sql), with
//!   `min`/`max` for the values reported (range, freshness, an example of a value not
//!   accepted);
//! - each `unique` rule is a grouped aggregate over its key columns (`GROUP BY key HAVING
//!   count(*) > 1`, rows with a NULL in the key left out), then counted; it reads only the key
//!   columns. The parts are cross-joined (each yields one row) into one plan. With Parquet and Delta (columnar) each column is still read about once: the extra
//!   scan of a `unique` rule reads only its key columns, and keeps its hash table out of the
//!   single-pass aggregate (whose state stays a few numbers per rule).
//!
//! Nothing is evaluated row by row in Rust. If the combined query fails (say an `sql`
//! predicate divides by zero on some row), each rule is run on its own so the others still get
//! a result and the failing one reports its error.
//!
//! Semantics (docs/quality.md): NULLs are only the business of `not_null`; an `sql` predicate
//! that evaluates to NULL passes; `unique` ignores rows with a NULL in the key; `freshness`
//! fails when the column has no value and is judged again whenever results are shown (the data
//! does not change, but time passes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use chrono::{DateTime, SecondsFormat, Utc};
use datafusion::common::DFSchema;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use datafusion::logical_expr::{
    cast, ident, lit, not, when, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder,
};
use datafusion::prelude::SessionConfig;
use meshql_catalog::{
    ColumnType, Domain, Mesh, Product, ProductManifest, QualityKind, QualityRule, Severity,
};
use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::freshness::{format_age, observe_bounded, DataState};
use crate::policy::parse_safe_for;
use crate::product::resolve_product;
use crate::time_travel::AsOf;

/// The outcome of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleStatus {
    /// The data satisfies the rule.
    Pass,
    /// The data breaks the rule.
    Fail,
    /// The rule could not be evaluated (the data could not be read, the predicate failed).
    Error,
}

impl RuleStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            RuleStatus::Pass => "pass",
            RuleStatus::Fail => "fail",
            RuleStatus::Error => "error",
        }
    }
}

/// One rule's result.
#[derive(Debug, Clone, Serialize)]
pub struct RuleResult {
    /// The rule's name.
    pub rule: String,
    /// The rule type (`not_null`, `unique`, ...).
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub severity: Severity,
    /// A one-line summary such as `range(total_amount, min 0)`.
    pub definition: String,
    pub description: String,
    pub status: RuleStatus,
    /// What was observed, for people: `3 NULLs`, `2 duplicate keys (4 rows), e.g. 17`,
    /// `max 1200000000 > 1000000`, or the error.
    pub observed: String,
    /// The contract columns the rule reads (to withhold observed values from principals who
    /// may not read them in clear).
    #[serde(skip)]
    pub(crate) columns: Vec<String>,
    /// For `freshness`: the newest value (microseconds since the epoch, and as text) and the
    /// allowed age, to judge it again when results are shown.
    #[serde(skip)]
    newest: Option<Newest>,
}

#[derive(Debug, Clone)]
struct Newest {
    value_us: Option<i64>,
    text: String,
    max_age_secs: u64,
    max_age: String,
}

impl RuleResult {
    /// The result as it stands at `now`: a `freshness` rule is judged again (its data is as
    /// old as it was, plus the time since the check).
    pub fn at(&self, now: DateTime<Utc>) -> RuleResult {
        let mut r = self.clone();
        if let Some(n) = &self.newest {
            let (status, observed) = judge_freshness(n, now);
            r.status = status;
            r.observed = observed;
        }
        r
    }

    /// True when this result makes its product fail (`error` severity, failed or not
    /// evaluable).
    pub fn blocks(&self) -> bool {
        self.severity == Severity::Error && self.status != RuleStatus::Pass
    }
}

fn judge_freshness(n: &Newest, now: DateTime<Utc>) -> (RuleStatus, String) {
    match n.value_us {
        None => (
            RuleStatus::Fail,
            "no values: the column is empty or all NULL".to_string(),
        ),
        Some(v) => {
            let age = Duration::from_micros(now.timestamp_micros().saturating_sub(v).max(0) as u64);
            let age_text = format_age(age);
            if age.as_secs() > n.max_age_secs {
                (
                    RuleStatus::Fail,
                    format!(
                        "newest {} is {age_text} old > max_age {}",
                        n.text, n.max_age
                    ),
                )
            } else {
                (
                    RuleStatus::Pass,
                    format!("newest {} is {age_text} old", n.text),
                )
            }
        }
    }
}

/// The result of checking one product's rules on one version of its data.
#[derive(Debug, Clone, Serialize)]
pub struct ProductCheck {
    /// `domain.product`.
    pub product: String,
    /// The data version checked (`delta:<version>`, `parquet:<hash>`).
    pub data_version: String,
    /// RFC 3339, UTC.
    #[serde(serialize_with = "rfc3339")]
    pub checked_at: DateTime<Utc>,
    /// Rows in the product (when a scan ran).
    pub rows: Option<u64>,
    /// Scans of the product's data the check used (0 without rules; 1, plus one per `unique`
    /// rule; more when a failing combined query was split into one query per rule).
    pub scans: usize,
    pub duration_ms: u64,
    /// Why the product's data could not be read, if it could not.
    pub error: Option<String>,
    pub rules: Vec<RuleResult>,
    /// Identifies the rules (and contract) checked: results of other rules do not apply.
    #[serde(skip)]
    pub(crate) rules_fingerprint: String,
}

fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

impl ProductCheck {
    /// The results as they stand at `now` (see [`RuleResult::at`]).
    pub fn at(&self, now: DateTime<Utc>) -> ProductCheck {
        let mut c = self.clone();
        c.rules = self.rules.iter().map(|r| r.at(now)).collect();
        c
    }

    /// True when no `error` rule fails (or cannot be evaluated) and the data could be read:
    /// what `catalog check` exits 0 on and `product publish` requires.
    pub fn passed(&self) -> bool {
        self.error.is_none() && !self.rules.iter().any(RuleResult::blocks)
    }
}

/// A fingerprint of what a check depends on besides the data: the rules and the contract's
/// columns, format and location.
pub(crate) fn rules_fingerprint(manifest: &ProductManifest) -> String {
    use sha2::Digest;
    let text = format!(
        "{:?}|{:?}|{}|{}",
        manifest.quality,
        manifest
            .columns
            .iter()
            .map(|c| (&c.name, c.ty))
            .collect::<Vec<_>>(),
        manifest.format.as_str(),
        manifest.location
    );
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What an aggregate output column holds for one rule.
enum Part {
    /// Aggregate expressions added to the single-pass aggregate.
    Aggregates(Vec<Expr>),
    /// A separate one-row plan (a `unique` rule).
    Plan(LogicalPlan),
}

/// A compiled rule: its part of the plan, or why it cannot be compiled.
struct CompiledRule {
    part: std::result::Result<Part, String>,
    columns: Vec<String>,
}

const ROWS: &str = "__rows";

fn name(i: usize, what: &str) -> String {
    format!("__q{i}_{what}")
}

fn violations(i: usize, what: &str, violation: Expr) -> std::result::Result<Expr, String> {
    Ok(sum(when(violation, lit(1i64))
        .otherwise(lit(0i64))
        .map_err(|e| e.to_string())?)
    .alias(name(i, what)))
}

/// Parses a literal or predicate against the contract schema.
fn expr(state: &SessionState, sql: &str, schema: &DFSchema) -> std::result::Result<Expr, String> {
    parse_safe_for(state, sql, schema, "quality rules")
}

/// True when the SQL expression holds a subquery (checked on the syntax, before planning, so
/// that a subquery naming another product is reported as such rather than as an unknown
/// table).
fn has_subquery(sql: &str) -> bool {
    use datafusion::sql::sqlparser::ast::{visit_expressions, Expr as SqlExpr};
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let Ok(parsed) = Parser::new(&GenericDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
    else {
        return false;
    };
    let found = visit_expressions(&parsed, |e| {
        if matches!(
            e,
            SqlExpr::Subquery(_) | SqlExpr::Exists { .. } | SqlExpr::InSubquery { .. }
        ) {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    });
    found.is_break()
}

/// Parses an `sql` rule's predicate and checks that it is boolean.
pub(crate) fn predicate(
    state: &SessionState,
    sql: &str,
    schema: &DFSchema,
) -> std::result::Result<Expr, String> {
    if has_subquery(sql) {
        return Err(
            "subqueries (and so references to other products) are not allowed in quality rules"
                .to_string(),
        );
    }
    let e = expr(state, sql, schema)?;
    match e.get_type(schema) {
        Ok(DataType::Boolean | DataType::Null) => Ok(e),
        Ok(dt) => Err(format!("predicate is of type {dt}, not boolean")),
        Err(e) => Err(e.to_string()),
    }
}

fn compile_rule(
    state: &SessionState,
    contract: &LogicalPlan,
    i: usize,
    rule: &QualityRule,
) -> CompiledRule {
    let schema = contract.schema();
    let mut columns: Vec<String> = rule.kind.columns().into_iter().map(String::from).collect();
    let part = (|| -> std::result::Result<Part, String> {
        match &rule.kind {
            QualityKind::NotNull { column } => Ok(Part::Aggregates(vec![
                count(ident(column)).alias(name(i, "nonnull"))
            ])),
            QualityKind::RowCount { .. } => Ok(Part::Aggregates(Vec::new())),
            QualityKind::Freshness { column, .. } => Ok(Part::Aggregates(vec![
                max(ident(column)).alias(name(i, "newest"))
            ])),
            QualityKind::AcceptedValues { column, values } => {
                let list = values
                    .iter()
                    .map(|v| expr(state, &v.to_sql(), schema))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let bad = ident(column).in_list(list, true);
                Ok(Part::Aggregates(vec![
                    violations(i, "bad", bad.clone())?,
                    min(when(bad, ident(column)).end().map_err(|e| e.to_string())?)
                        .alias(name(i, "example")),
                ]))
            }
            QualityKind::Range {
                column,
                min: lo,
                max: hi,
            } => {
                let mut aggs = vec![
                    min(ident(column)).alias(name(i, "min")),
                    max(ident(column)).alias(name(i, "max")),
                ];
                if let Some(lo) = lo {
                    let v = expr(state, &lo.to_sql(), schema)?;
                    aggs.push(violations(i, "below", ident(column).lt(v))?);
                }
                if let Some(hi) = hi {
                    let v = expr(state, &hi.to_sql(), schema)?;
                    aggs.push(violations(i, "above", ident(column).gt(v))?);
                }
                Ok(Part::Aggregates(aggs))
            }
            QualityKind::Sql { predicate: sql } => {
                let p = predicate(state, sql, schema)?;
                columns = p
                    .column_refs()
                    .into_iter()
                    .map(|c| c.name.clone())
                    .collect();
                columns.sort();
                columns.dedup();
                Ok(Part::Aggregates(vec![violations(i, "bad", not(p))?]))
            }
            QualityKind::Unique { columns: keys } => {
                let not_null = keys
                    .iter()
                    .map(|k| ident(k).is_not_null())
                    .reduce(Expr::and)
                    .ok_or("a unique rule needs at least one column")?;
                let example = if keys.len() == 1 {
                    cast(ident(&keys[0]), DataType::Utf8)
                } else {
                    datafusion::functions::string::expr_fn::concat_ws(
                        lit(", "),
                        keys.iter()
                            .map(|k| cast(ident(k), DataType::Utf8))
                            .collect(),
                    )
                };
                let plan = LogicalPlanBuilder::from(contract.clone())
                    .filter(not_null)
                    .and_then(|b| {
                        b.aggregate(
                            keys.iter().map(ident).collect::<Vec<_>>(),
                            vec![count(lit(1i64)).alias("__n")],
                        )
                    })
                    .and_then(|b| b.filter(ident("__n").gt(lit(1i64))))
                    .and_then(|b| {
                        b.aggregate(
                            Vec::<Expr>::new(),
                            vec![
                                count(lit(1i64)).alias(name(i, "dupkeys")),
                                sum(ident("__n")).alias(name(i, "duprows")),
                                min(example).alias(name(i, "example")),
                            ],
                        )
                    })
                    .and_then(|b| b.build())
                    .map_err(|e| e.to_string())?;
                Ok(Part::Plan(plan))
            }
        }
    })();
    CompiledRule { part, columns }
}

/// One query computing the parts of `rules` (indexes into the compiled rules).
fn combine(
    contract: &LogicalPlan,
    compiled: &[CompiledRule],
    which: &[usize],
) -> std::result::Result<(LogicalPlan, usize), String> {
    let mut aggs = vec![count(lit(1i64)).alias(ROWS)];
    let mut plans = Vec::new();
    for &i in which {
        match &compiled[i].part {
            Ok(Part::Aggregates(a)) => aggs.extend(a.iter().cloned()),
            Ok(Part::Plan(p)) => plans.push(p.clone()),
            Err(_) => {}
        }
    }
    let mut builder = LogicalPlanBuilder::from(contract.clone())
        .aggregate(Vec::<Expr>::new(), aggs)
        .map_err(|e| e.to_string())?;
    let scans = 1 + plans.len();
    for p in plans {
        builder = builder.cross_join(p).map_err(|e| e.to_string())?;
    }
    Ok((builder.build().map_err(|e| e.to_string())?, scans))
}

async fn run(state: &SessionState, plan: &LogicalPlan) -> Result<RecordBatch> {
    let physical = state
        .create_physical_plan(plan)
        .await
        .map_err(EngineError::from_datafusion)?;
    let batches = datafusion::physical_plan::collect(physical, state.task_ctx())
        .await
        .map_err(|e| match EngineError::from_datafusion(e) {
            EngineError::ResourcesExhausted { message, source } => {
                EngineError::ResourcesExhausted {
                    message: format!(
                        "resources exhausted (the quality checks' `quality.memory_limit`): {message}"
                    ),
                    source,
                }
            }
            other => other,
        })?;
    batches
        .into_iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| EngineError::Internal("a quality query returned no row".to_string()))
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a ArrayRef> {
    batch.column_by_name(name)
}

/// An integer aggregate (NULL, e.g. a sum over no rows, is 0).
fn int(batch: &RecordBatch, name: &str) -> i64 {
    column(batch, name)
        .and_then(|a| arrow::compute::cast(a, &DataType::Int64).ok())
        .map(|a| {
            let a = a.as_primitive::<Int64Type>();
            if a.is_null(0) {
                0
            } else {
                a.value(0)
            }
        })
        .unwrap_or(0)
}

/// A value for people (None when NULL).
fn text(batch: &RecordBatch, name: &str) -> Option<String> {
    let a = column(batch, name)?;
    if a.is_null(0) {
        return None;
    }
    arrow::util::display::array_value_to_string(a, 0).ok()
}

fn plural(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Turns the aggregate row into the rule's result.
fn read_rule(
    batch: &RecordBatch,
    i: usize,
    rule: &QualityRule,
    manifest: &ProductManifest,
) -> (RuleStatus, String, Option<Newest>) {
    let rows = int(batch, ROWS);
    let quote = |column: &str, v: String| match manifest.column(column).map(|c| c.ty) {
        Some(ColumnType::String) => format!("'{}'", v.replace('\'', "''")),
        _ => v,
    };
    match &rule.kind {
        QualityKind::NotNull { .. } => {
            let nulls = rows - int(batch, &name(i, "nonnull"));
            (
                if nulls > 0 {
                    RuleStatus::Fail
                } else {
                    RuleStatus::Pass
                },
                plural(nulls, "NULL", "NULLs"),
                None,
            )
        }
        QualityKind::Unique { columns } => {
            let keys = int(batch, &name(i, "dupkeys"));
            if keys == 0 {
                return (RuleStatus::Pass, "no duplicate keys".to_string(), None);
            }
            let dup_rows = int(batch, &name(i, "duprows"));
            let example = text(batch, &name(i, "example"))
                .map(|e| {
                    if columns.len() == 1 {
                        format!(", e.g. {}", quote(&columns[0], e))
                    } else {
                        format!(", e.g. ({e})")
                    }
                })
                .unwrap_or_default();
            (
                RuleStatus::Fail,
                format!(
                    "{} ({}){example}",
                    plural(keys, "duplicate key", "duplicate keys"),
                    plural(dup_rows, "row", "rows")
                ),
                None,
            )
        }
        QualityKind::AcceptedValues { column, .. } => {
            let bad = int(batch, &name(i, "bad"));
            if bad == 0 {
                return (
                    RuleStatus::Pass,
                    "0 rows outside the accepted values".to_string(),
                    None,
                );
            }
            let example = text(batch, &name(i, "example"))
                .map(|e| format!(", e.g. {}", quote(column, e)))
                .unwrap_or_default();
            (
                RuleStatus::Fail,
                format!(
                    "{} outside the accepted values{example}",
                    plural(bad, "row", "rows")
                ),
                None,
            )
        }
        QualityKind::Range {
            min: lo, max: hi, ..
        } => {
            let below = int(batch, &name(i, "below"));
            let above = int(batch, &name(i, "above"));
            let (obs_min, obs_max) = (text(batch, &name(i, "min")), text(batch, &name(i, "max")));
            let (Some(obs_min), Some(obs_max)) = (obs_min, obs_max) else {
                return (RuleStatus::Pass, "no values".to_string(), None);
            };
            if below + above == 0 {
                return (
                    RuleStatus::Pass,
                    format!("min {obs_min}, max {obs_max}"),
                    None,
                );
            }
            let mut why = Vec::new();
            if let (true, Some(lo)) = (below > 0, lo) {
                why.push(format!("min {obs_min} < {lo}"));
            }
            if let (true, Some(hi)) = (above > 0, hi) {
                why.push(format!("max {obs_max} > {hi}"));
            }
            (
                RuleStatus::Fail,
                format!(
                    "{} out of range: {}",
                    plural(below + above, "row", "rows"),
                    why.join(", ")
                ),
                None,
            )
        }
        QualityKind::RowCount { min: lo, max: hi } => {
            let n = rows.max(0) as u64;
            let rows_text = plural(rows, "row", "rows");
            if let Some(lo) = lo.filter(|lo| n < *lo) {
                (RuleStatus::Fail, format!("{rows_text} < min {lo}"), None)
            } else if let Some(hi) = hi.filter(|hi| n > *hi) {
                (RuleStatus::Fail, format!("{rows_text} > max {hi}"), None)
            } else {
                (RuleStatus::Pass, rows_text, None)
            }
        }
        QualityKind::Freshness {
            max_age,
            max_age_secs,
            ..
        } => {
            let key = name(i, "newest");
            let value_us = column(batch, &key).and_then(|a| {
                let a = arrow::compute::cast(a, &DataType::Timestamp(TimeUnit::Microsecond, None))
                    .ok()?;
                let a = a.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
                (!a.is_null(0)).then(|| a.value(0))
            });
            let newest = Newest {
                value_us,
                text: text(batch, &key).unwrap_or_default(),
                max_age_secs: *max_age_secs,
                max_age: max_age.clone(),
            };
            let (status, observed) = judge_freshness(&newest, Utc::now());
            (status, observed, Some(newest))
        }
        QualityKind::Sql { .. } => {
            let bad = int(batch, &name(i, "bad"));
            (
                if bad > 0 {
                    RuleStatus::Fail
                } else {
                    RuleStatus::Pass
                },
                format!(
                    "{} {} it",
                    plural(bad, "row", "rows"),
                    if bad == 1 { "violates" } else { "violate" }
                ),
                None,
            )
        }
    }
}

fn result_of(
    rule: &QualityRule,
    columns: Vec<String>,
    status: RuleStatus,
    observed: String,
    newest: Option<Newest>,
) -> RuleResult {
    RuleResult {
        rule: rule.name.clone(),
        kind: rule.kind.rule(),
        severity: rule.severity,
        definition: rule.kind.to_string(),
        description: rule.description.clone(),
        status,
        observed,
        columns,
        newest,
    }
}

/// A session state for checks: the checks' runtime, the engine's settings.
pub(crate) fn check_state(runtime: &Arc<RuntimeEnv>, config: &SessionConfig) -> SessionState {
    SessionStateBuilder::new()
        .with_config(config.clone())
        .with_runtime_env(Arc::clone(runtime))
        .with_default_features()
        .build()
}

/// Checks `product`'s rules on its data. With `state`, the Delta version observed there is the
/// one read (results belong to exactly that data version); without, the data is observed
/// first.
pub(crate) async fn run_check(
    runtime: &Arc<RuntimeEnv>,
    config: &SessionConfig,
    domain: &Domain,
    product: &Product,
    state: Option<DataState>,
) -> ProductCheck {
    let start = Instant::now();
    let checked_at = Utc::now();
    let manifest = &product.manifest;
    let mut check = ProductCheck {
        product: product.qualified_name(),
        data_version: String::new(),
        checked_at,
        rows: None,
        scans: 0,
        duration_ms: 0,
        error: None,
        rules: Vec::new(),
        rules_fingerprint: rules_fingerprint(manifest),
    };
    let all_error = |message: &str| -> Vec<RuleResult> {
        manifest
            .quality
            .iter()
            .map(|r| {
                result_of(
                    r,
                    r.kind.columns().into_iter().map(String::from).collect(),
                    RuleStatus::Error,
                    message.to_string(),
                    None,
                )
            })
            .collect()
    };
    let state = match state {
        Some(s) => Ok(s),
        None => observe_bounded(runtime, domain, product, None).await,
    };
    let state = match state {
        Ok(s) => s,
        Err(e) => {
            check.error = Some(e.clone());
            check.rules = all_error(&format!("data unavailable: {e}"));
            check.duration_ms = start.elapsed().as_millis() as u64;
            return check;
        }
    };
    check.data_version = state.version.clone();
    if manifest.quality.is_empty() {
        check.duration_ms = start.elapsed().as_millis() as u64;
        return check;
    }
    let session = check_state(runtime, config);
    let as_of = state
        .delta_version
        .and_then(|v| u64::try_from(v).ok())
        .map(AsOf::Version);
    let contract =
        match resolve_product(runtime, config, domain, product, as_of.as_ref(), None).await {
            Ok(r) => r.plan,
            Err(e) => {
                let e = e.to_string();
                check.error = Some(e.clone());
                check.rules = all_error(&e);
                check.duration_ms = start.elapsed().as_millis() as u64;
                return check;
            }
        };
    let compiled: Vec<CompiledRule> = manifest
        .quality
        .iter()
        .enumerate()
        .map(|(i, r)| compile_rule(&session, &contract, i, r))
        .collect();
    let runnable: Vec<usize> = (0..compiled.len())
        .filter(|&i| compiled[i].part.is_ok())
        .collect();
    // Everything in one query; on failure, each rule on its own.
    let mut rows: Option<RecordBatch> = None;
    let mut per_rule: Vec<Option<std::result::Result<RecordBatch, String>>> =
        vec![None; compiled.len()];
    match combine(&contract, &compiled, &runnable) {
        Ok((plan, scans)) => {
            check.scans += scans;
            match run(&session, &plan).await {
                Ok(batch) => rows = Some(batch),
                Err(EngineError::ProductUnavailable { message, .. }) => {
                    check.error = Some(message.clone());
                    check.rules = all_error(&format!("data unavailable: {message}"));
                    check.duration_ms = start.elapsed().as_millis() as u64;
                    return check;
                }
                Err(e) => {
                    tracing::info!(product = %check.product, error = %e, "quality query failed; checking each rule on its own");
                    for &i in &runnable {
                        let result = match combine(&contract, &compiled, &[i]) {
                            Ok((plan, scans)) => {
                                check.scans += scans;
                                run(&session, &plan).await.map_err(|e| e.to_string())
                            }
                            Err(e) => Err(e),
                        };
                        per_rule[i] = Some(result);
                    }
                }
            }
        }
        Err(e) => {
            for &i in &runnable {
                per_rule[i] = Some(Err(e.clone()));
            }
        }
    }
    if let Some(b) = &rows {
        check.rows = Some(int(b, ROWS).max(0) as u64);
    }
    for (i, (rule, c)) in manifest.quality.iter().zip(compiled).enumerate() {
        let result = match (&c.part, &rows, per_rule[i].take()) {
            (Err(e), _, _) => result_of(rule, c.columns, RuleStatus::Error, e.clone(), None),
            (Ok(_), Some(b), _) => {
                let (s, o, n) = read_rule(b, i, rule, manifest);
                result_of(rule, c.columns, s, o, n)
            }
            (Ok(_), None, Some(Ok(b))) => {
                if check.rows.is_none() {
                    check.rows = Some(int(&b, ROWS).max(0) as u64);
                }
                let (s, o, n) = read_rule(&b, i, rule, manifest);
                result_of(rule, c.columns, s, o, n)
            }
            (Ok(_), None, Some(Err(e))) => result_of(rule, c.columns, RuleStatus::Error, e, None),
            (Ok(_), None, None) => result_of(
                rule,
                c.columns,
                RuleStatus::Error,
                "not evaluated".to_string(),
                None,
            ),
        };
        check.rules.push(result);
    }
    check.duration_ms = start.elapsed().as_millis() as u64;
    check
}

/// Options of [`check_mesh_quality`].
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Bytes the checks may use (their DataFusion memory pool).
    pub memory_limit_bytes: u64,
    pub target_partitions: usize,
    pub batch_size: usize,
}

impl CheckOptions {
    /// The mesh's `[quality] memory_limit` and the engine's defaults.
    pub fn for_mesh(mesh: &Mesh) -> Self {
        let engine = crate::EngineOptions::default();
        Self {
            memory_limit_bytes: mesh.config.quality.memory_limit_bytes,
            target_partitions: engine.target_partitions,
            batch_size: engine.batch_size,
        }
    }
}

/// The runtime checks run on: a memory pool of their own (grouping operators spill to disk
/// past it), object stores from `stores` (or the mesh's buckets when None).
pub(crate) fn check_runtime(
    memory_limit_bytes: u64,
    stores: Option<&Arc<RuntimeEnv>>,
) -> Result<Arc<RuntimeEnv>> {
    let pool = Arc::new(datafusion::execution::memory_pool::FairSpillPool::new(
        usize::try_from(memory_limit_bytes).unwrap_or(usize::MAX),
    ));
    let mut builder = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_memory_pool(pool)
        // No list-files cache: a check reads the files of the data version it checks.
        .with_cache_manager(
            datafusion::execution::cache::cache_manager::CacheManagerConfig::default()
                .with_list_files_cache_limit(0),
        );
    if let Some(main) = stores {
        builder = builder.with_object_store_registry(Arc::clone(&main.object_store_registry));
    }
    builder.build_arc().map_err(EngineError::from_datafusion)
}

/// The session configuration of checks.
pub(crate) fn check_config(target_partitions: usize, batch_size: usize) -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_target_partitions(target_partitions.max(1))
        .with_batch_size(batch_size.max(1));
    config.options_mut().execution.parquet.pushdown_filters = true;
    config
}

/// Runs the quality rules of every product of `mesh`, or of `only` (`domain.product`), one
/// product after the other, on a runtime of their own. This is what `meshql catalog check`
/// runs, and what `product publish` runs on the catalog as it will be
/// (`InstallPlan::mesh`) before installing a manifest: a product fails when
/// [`ProductCheck::passed`] is false. Products without rules are observed (their data version
/// and whether their data can be read) but not scanned.
pub async fn check_mesh_quality(
    mesh: &Mesh,
    only: Option<&str>,
    options: &CheckOptions,
) -> Result<Vec<ProductCheck>> {
    let selected: Vec<(&Domain, &Product)> = mesh
        .domains
        .iter()
        .flat_map(|d| d.products.iter().map(move |p| (d, p)))
        .filter(|(_, p)| only.is_none_or(|o| p.qualified_name() == o))
        .collect();
    if let (Some(o), true) = (only, selected.is_empty()) {
        return Err(EngineError::plan(format!(
            "unknown product `{o}`: expected `domain.product` of a product in the catalog"
        )));
    }
    let runtime = check_runtime(options.memory_limit_bytes, None)?;
    crate::buckets::register_domain_stores(&runtime, mesh)?;
    let config = check_config(options.target_partitions, options.batch_size);
    let mut out = Vec::new();
    for (d, p) in selected {
        out.push(run_check(&runtime, &config, d, p, None).await);
    }
    Ok(out)
}

/// Type-checks every `sql` rule's predicate against its contract like a row filter (no
/// subqueries, no other products, no aggregates; boolean). Returns `(file, field, problem)`;
/// reads no data.
pub fn lint_quality(mesh: &Mesh) -> Vec<(std::path::PathBuf, String, String)> {
    let state = SessionStateBuilder::new().with_default_features().build();
    let mut out = Vec::new();
    for p in mesh.products() {
        let Ok(schema) = DFSchema::try_from(crate::contract::contract_schema(&p.manifest)) else {
            continue;
        };
        for (i, rule) in p.manifest.quality.iter().enumerate() {
            if let QualityKind::Sql { predicate: sql } = &rule.kind {
                if let Err(e) = predicate(&state, sql, &schema) {
                    out.push((p.file.clone(), format!("quality[{i}].predicate"), e));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::catalog::MemTable;
    use datafusion::datasource::provider_as_source;

    const MANIFEST: &str = r#"
name = "t"
domain = "d"
version = "1.0.0"
description = "x"
owner = "o"
format = "parquet"
location = "t"
[[schema]]
name = "id"
type = "bigint"
[[schema]]
name = "code"
type = "string"
[[schema]]
name = "amount"
type = "decimal(10,2)"
[[quality]]
name = "id_present"
rule = "not_null"
column = "id"
[[quality]]
name = "id_unique"
rule = "unique"
column = "id"
[[quality]]
name = "code_known"
rule = "accepted_values"
column = "code"
values = ["a", "b"]
[[quality]]
name = "amount_range"
rule = "range"
column = "amount"
min = 0
[[quality]]
name = "rows"
rule = "row_count"
min = 1
[[quality]]
name = "positive"
rule = "sql"
predicate = "amount > 0 OR code = 'b'"
"#;

    /// The plan of a product's check: one aggregate for every rule but `unique`, and one
    /// grouped pass over the key per `unique` rule, cross-joined.
    #[test]
    fn rules_compile_into_one_aggregate_plus_one_grouped_pass_per_unique_rule() {
        let manifest =
            ProductManifest::parse(std::path::Path::new("t.toml"), MANIFEST).expect("manifest");
        let schema = Arc::new(crate::contract::contract_schema(&manifest));
        let table = MemTable::try_new(schema, vec![vec![]]).expect("table");
        let contract = LogicalPlanBuilder::scan("t", provider_as_source(Arc::new(table)), None)
            .and_then(|b| b.build())
            .expect("scan");
        let state = SessionStateBuilder::new().with_default_features().build();
        let compiled: Vec<CompiledRule> = manifest
            .quality
            .iter()
            .enumerate()
            .map(|(i, r)| compile_rule(&state, &contract, i, r))
            .collect();
        assert!(compiled.iter().all(|c| c.part.is_ok()));
        let all: Vec<usize> = (0..compiled.len()).collect();
        let (plan, scans) = combine(&contract, &compiled, &all).expect("plan");
        assert_eq!(scans, 2);
        insta::assert_snapshot!(plan.display_indent(), @r#"
        Cross Join:
          Aggregate: groupBy=[[]], aggr=[[count(Int64(1)) AS __rows, count(t.id) AS __q0_nonnull, sum(CASE WHEN t.code NOT IN ([Utf8("a"), Utf8("b")]) THEN Int64(1) ELSE Int64(0) END) AS __q2_bad, min(CASE WHEN t.code NOT IN ([Utf8("a"), Utf8("b")]) THEN t.code END) AS __q2_example, min(t.amount) AS __q3_min, max(t.amount) AS __q3_max, sum(CASE WHEN t.amount < CAST(Utf8("0") AS Decimal128(10, 2)) THEN Int64(1) ELSE Int64(0) END) AS __q3_below, sum(CASE WHEN NOT t.amount > Int64(0) OR t.code = Utf8("b") THEN Int64(1) ELSE Int64(0) END) AS __q5_bad]]
            TableScan: t
          Aggregate: groupBy=[[]], aggr=[[count(Int64(1)) AS __q1_dupkeys, sum(__n) AS __q1_duprows, min(CAST(t.id AS Utf8)) AS __q1_example]]
            Filter: __n > Int64(1)
              Aggregate: groupBy=[[t.id]], aggr=[[count(Int64(1)) AS __n]]
                Filter: t.id IS NOT NULL
                  TableScan: t
        "#);
        // The sql rule reads the columns its predicate names.
        assert_eq!(compiled[5].columns, ["amount", "code"]);
    }

    #[test]
    fn a_predicate_with_a_subquery_is_refused_before_planning() {
        let state = SessionStateBuilder::new().with_default_features().build();
        let schema = DFSchema::empty();
        for sql in [
            "x IN (SELECT y FROM other.product)",
            "EXISTS (SELECT 1)",
            "(SELECT max(y) FROM other.product) > 1",
        ] {
            assert_eq!(
                predicate(&state, sql, &schema).unwrap_err(),
                "subqueries (and so references to other products) are not allowed in quality rules"
            );
        }
    }
}
