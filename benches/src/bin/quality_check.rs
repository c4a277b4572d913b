//! What checking a product's quality rules costs: meshql's one-pass check against one query
//! per rule, on the TPC-H mesh (`benches/tpch/gen.py`).
//!
//! ```text
//! quality_check --config bench-data/tpch-sf1/parquet/meshql.toml [--product sales.lineitem]
//!               [--iterations 3] [--check-memory-limit BYTES] [--json FILE]
//! ```
//!
//! The TPC-H contracts have no rules: five are added to the product in memory (`RULES`: one
//! `not_null`, `unique`, `accepted_values`, `range` and `sql` rule, all true of TPC-H data).
//! Each iteration runs, in turn,
//!
//! - **one-pass**: `meshql_engine::quality::check_mesh_quality` on the product (what
//!   `meshql catalog check` and the server run: every rule in one aggregate, plus a grouped
//!   pass for the `unique` rule);
//! - **per-rule**: one query per rule through a query session, the way one would check them by
//!   hand: `SELECT count(*) FROM p WHERE NOT (<rule>)` (for `not_null`, `WHERE c IS NULL`; for
//!   `unique`, `SELECT count(*) FROM (SELECT key FROM p WHERE key IS NOT NULL GROUP BY key
//!   HAVING count(*) > 1)`).
//!
//! Both answers are cross-checked (the violation count of every rule must agree). Timings are
//! wall-clock seconds including planning and product resolution; the report gives min and
//! median, and the ratio of medians (per-rule / one-pass). By default the check's memory pool is
//! unlimited, like the queries'.

use std::path::PathBuf;
use std::time::Instant;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use futures::TryStreamExt;
use meshql_catalog::{Mesh, Principal, ProductManifest, QualityKind};
use meshql_engine::quality::{check_mesh_quality, CheckOptions, ProductCheck};
use meshql_engine::MeshEngine;
use serde_json::json;

/// The rules added to `sales.lineitem` (five kinds; all hold on TPC-H data).
const RULES: &str = r#"
[[quality]]
name = "comment_present"
rule = "not_null"
column = "l_comment"

[[quality]]
name = "line_unique"
rule = "unique"
columns = ["l_orderkey", "l_linenumber"]

[[quality]]
name = "returnflag_known"
rule = "accepted_values"
column = "l_returnflag"
values = ["A", "N", "R"]

[[quality]]
name = "quantity_range"
rule = "range"
column = "l_quantity"
min = 1
max = 50

[[quality]]
name = "shipped_before_received"
rule = "sql"
predicate = "l_shipdate <= l_receiptdate"
"#;

struct Args {
    config: PathBuf,
    product: String,
    iterations: usize,
    check_memory_limit: u64,
    json: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        config: PathBuf::new(),
        product: "sales.lineitem".into(),
        iterations: 3,
        check_memory_limit: u64::MAX,
        json: None,
    };
    let mut config = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--config" => config = Some(PathBuf::from(value("--config")?)),
            "--product" => a.product = value("--product")?,
            "--iterations" => {
                a.iterations = value("--iterations")?
                    .parse()
                    .map_err(|e| format!("--iterations: {e}"))?
            }
            "--check-memory-limit" => {
                a.check_memory_limit = value("--check-memory-limit")?
                    .parse()
                    .map_err(|e| format!("--check-memory-limit: {e}"))?
            }
            "--json" => a.json = Some(PathBuf::from(value("--json")?)),
            "-h" | "--help" => {
                return Err(
                    "usage: quality_check --config FILE [--product D.P] [--iterations N] \
                            [--check-memory-limit BYTES] [--json FILE]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    a.config = config.ok_or("--config FILE is required")?;
    a.iterations = a.iterations.max(1);
    Ok(a)
}

/// The per-rule query of a rule, and how to read its answer as a violation count.
fn rule_sql(table: &str, kind: &QualityKind) -> String {
    let lit = |v: &meshql_catalog::RuleLiteral| v.to_sql();
    match kind {
        QualityKind::NotNull { column } => {
            format!("SELECT count(*) FROM {table} WHERE {column} IS NULL")
        }
        QualityKind::Unique { columns } => {
            let key = columns.join(", ");
            let not_null = columns
                .iter()
                .map(|c| format!("{c} IS NOT NULL"))
                .collect::<Vec<_>>()
                .join(" AND ");
            format!(
                "SELECT count(*) FROM (SELECT {key} FROM {table} WHERE {not_null} \
                 GROUP BY {key} HAVING count(*) > 1)"
            )
        }
        QualityKind::AcceptedValues { column, values } => format!(
            "SELECT count(*) FROM {table} WHERE NOT ({column} IN ({}))",
            values.iter().map(lit).collect::<Vec<_>>().join(", ")
        ),
        QualityKind::Range { column, min, max } => {
            let mut ok = Vec::new();
            if let Some(m) = min {
                ok.push(format!("{column} >= {}", lit(m)));
            }
            if let Some(m) = max {
                ok.push(format!("{column} <= {}", lit(m)));
            }
            format!(
                "SELECT count(*) FROM {table} WHERE NOT ({})",
                ok.join(" AND ")
            )
        }
        QualityKind::RowCount { .. } => format!("SELECT count(*) FROM {table}"),
        QualityKind::Freshness { column, .. } => format!("SELECT max({column}) FROM {table}"),
        QualityKind::Sql { predicate } => {
            format!("SELECT count(*) FROM {table} WHERE NOT ({predicate})")
        }
    }
}

/// The violation count a one-pass result reports (its leading number; 0 for a passing
/// `unique` or `range`).
fn violations(observed: &str) -> Option<i64> {
    if observed.starts_with("no duplicate keys") || observed.starts_with("min ") {
        return Some(0);
    }
    observed.split_whitespace().next()?.parse().ok()
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

async fn run(a: Args) -> Result<(), String> {
    let mut mesh = Mesh::load(&a.config).map_err(|e| e.to_string())?;
    let (domain, name) = a
        .product
        .split_once('.')
        .ok_or("--product must be domain.product")?;
    let product = mesh
        .domains
        .iter_mut()
        .find(|d| d.name() == domain)
        .and_then(|d| d.products.iter_mut().find(|p| p.manifest.name == name))
        .ok_or_else(|| format!("no product {} in {}", a.product, a.config.display()))?;
    let text = std::fs::read_to_string(&product.file).map_err(|e| e.to_string())?;
    let with_rules = format!("{text}\n{RULES}");
    product.manifest = ProductManifest::parse(&product.file, &with_rules)
        .map_err(|p| format!("the bench's rules do not fit {}: {p:?}", a.product))?;
    let rules = product.manifest.quality.clone();
    let admin = mesh
        .config
        .users
        .iter()
        .find(|u| u.groups.iter().any(|g| g == "admin"))
        .map(Principal::from_user)
        .ok_or("the mesh has no user in group admin")?;
    let engine = MeshEngine::try_new(mesh.clone()).map_err(|e| e.to_string())?;
    let mut options = CheckOptions::for_mesh(&mesh);
    options.memory_limit_bytes = a.check_memory_limit;

    eprintln!(
        "{}: {} rules, {} iteration(s), {} partitions",
        a.product,
        rules.len(),
        a.iterations,
        options.target_partitions
    );
    let (mut one_pass, mut per_rule) = (Vec::new(), Vec::new());
    let mut per_rule_each: Vec<Vec<f64>> = vec![Vec::new(); rules.len()];
    let mut last: Option<ProductCheck> = None;
    // One warm-up round (file metadata and OS caches), then the timed ones.
    for iteration in 0..=a.iterations {
        let start = Instant::now();
        let check = check_mesh_quality(&mesh, Some(&a.product), &options)
            .await
            .map_err(|e| e.to_string())?
            .pop()
            .ok_or("no check result")?;
        let t_one = start.elapsed().as_secs_f64();
        if let Some(e) = &check.error {
            return Err(format!("the check could not read the data: {e}"));
        }
        let mut counts = Vec::new();
        let mut t_rules = Vec::new();
        for rule in &rules {
            let sql = rule_sql(&a.product, &rule.kind);
            let start = Instant::now();
            let session = engine.session(admin.clone()).map_err(|e| e.to_string())?;
            let (_, stream) = session.sql(&sql).await.map_err(|e| format!("{sql}: {e}"))?;
            let batches: Vec<arrow::array::RecordBatch> =
                stream.try_collect().await.map_err(|e| e.to_string())?;
            t_rules.push(start.elapsed().as_secs_f64());
            let col = batches
                .iter()
                .find(|b| b.num_rows() > 0)
                .map(|b| b.column(0).clone())
                .ok_or("a per-rule query returned no row")?;
            let n = arrow::compute::cast(&col, &DataType::Int64).ok().map(|c| {
                let c = c.as_primitive::<Int64Type>();
                if c.is_null(0) {
                    0
                } else {
                    c.value(0)
                }
            });
            counts.push(n);
        }
        // Cross-check: both ways count the same violations.
        for ((rule, result), n) in rules.iter().zip(&check.rules).zip(&counts) {
            if let (Some(n), Some(v)) = (n, violations(&result.observed)) {
                if *n != v {
                    return Err(format!(
                        "rule {}: the one-pass check observed `{}` but its query counted {n}",
                        rule.name, result.observed
                    ));
                }
            }
        }
        let total: f64 = t_rules.iter().sum();
        if iteration == 0 {
            eprintln!("warm-up: one-pass {t_one:.3}s, per-rule {total:.3}s");
        } else {
            eprintln!(
                "iteration {iteration}: one-pass {t_one:.3}s ({} scans), per-rule {total:.3}s {:?}",
                check.scans,
                t_rules
                    .iter()
                    .map(|t| format!("{t:.3}"))
                    .collect::<Vec<_>>()
            );
            one_pass.push(t_one);
            per_rule.push(total);
            for (i, t) in t_rules.iter().enumerate() {
                per_rule_each[i].push(*t);
            }
        }
        last = Some(check);
    }
    let check = last.ok_or("no iteration ran")?;
    let ratio = median(&per_rule) / median(&one_pass);
    println!(
        "{} ({} rows, {} rules, {} partitions): one-pass min {:.3}s median {:.3}s ({} scans); \
         per-rule min {:.3}s median {:.3}s; per-rule / one-pass = {ratio:.2}",
        a.product,
        check.rows.unwrap_or(0),
        rules.len(),
        options.target_partitions,
        min(&one_pass),
        median(&one_pass),
        check.scans,
        min(&per_rule),
        median(&per_rule),
    );
    for (rule, times) in rules.iter().zip(&per_rule_each) {
        println!(
            "  {:<24} {:<16} per-rule query median {:.3}s",
            rule.name,
            rule.kind.rule(),
            median(times)
        );
    }
    if let Some(path) = a.json {
        let report = json!({
            "product": a.product,
            "rows": check.rows,
            "rules": rules.iter().map(|r| json!({"name": r.name, "type": r.kind.rule()})).collect::<Vec<_>>(),
            "partitions": options.target_partitions,
            "iterations": a.iterations,
            "one_pass_seconds": one_pass,
            "one_pass_scans": check.scans,
            "per_rule_seconds": per_rule,
            "per_rule_each_seconds": per_rule_each,
            "ratio_of_medians": ratio,
        });
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
