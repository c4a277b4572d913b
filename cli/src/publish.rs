//! Self-serve publishing: `meshql catalog diff` (what a manifest changes against the published
//! version, the verdict, and who it would break) and `meshql product publish` (the same checks,
//! then the data against the contract, the quality rules, and an atomic install that a running
//! server picks up within `catalog.refresh_interval`).
//!
//! Exit codes, for CI pipelines (documented in docs/publishing.md):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | accepted (new product, unchanged, compatible, breaking with a major bump); published |
//! | 1 | breaking change without a major version bump (the affected readers are listed) |
//! | 2 | command-line usage error |
//! | 3 | version refused: the contract changed without a new version, or the version goes backwards |
//! | 4 | invalid: the manifest, or the catalog as it would be, has problems (by file and field) |
//! | 5 | the data at the product's location does not match the contract (`publish`) |
//! | 6 | a quality rule of severity `error` fails (`publish`) |
//! | 7 | the published manifest changed while publishing; nothing installed, run it again |
//! | 8 | could not run: unreadable configuration or audit file, I/O error while installing |

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use meshql_catalog::{CatalogError, ContractDiff, InstallPlan, Mesh, Verdict};
use meshql_engine::{usage_of_columns, ColumnUsage, MeshEngine};

/// How `catalog diff` prints its result.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum DiffFormat {
    Text,
    Json,
}

/// The exit codes of `catalog diff` and `product publish` (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Accepted = 0,
    BreakingWithoutMajorBump = 1,
    VersionRefused = 3,
    Invalid = 4,
    DataMismatch = 5,
    QualityFailed = 6,
    Conflict = 7,
    Failed = 8,
}

impl Outcome {
    fn of(verdict: Verdict) -> Outcome {
        match verdict {
            Verdict::New
            | Verdict::Unchanged
            | Verdict::Compatible
            | Verdict::BreakingWithMajorBump => Outcome::Accepted,
            Verdict::BreakingWithoutMajorBump => Outcome::BreakingWithoutMajorBump,
            Verdict::VersionNotIncreased | Verdict::VersionDecreased | Verdict::InvalidVersion => {
                Outcome::VersionRefused
            }
        }
    }

    fn code(self) -> ExitCode {
        ExitCode::from(self as u8)
    }
}

/// A manifest checked against the catalog: the plan, the diff, and the readers of what it
/// breaks.
struct Review {
    plan: InstallPlan,
    diff: ContractDiff,
    usage: ColumnUsage,
    /// An engine over the catalog as it would be (its audit file off).
    engine: MeshEngine,
}

/// Prints a failure and returns its outcome.
fn fail(outcome: Outcome, lines: impl IntoIterator<Item = String>) -> Outcome {
    for l in lines {
        println!("{l}");
    }
    outcome
}

/// Plans the installation of `manifest`, checks the catalog as it would be (as `catalog lint`
/// does), diffs the contract and finds the readers of the affected columns since `since` ago.
fn review(config: &Path, manifest: &Path, since: Duration) -> Result<Review, Outcome> {
    let plan = match InstallPlan::prepare(config, manifest) {
        Ok(p) => p,
        Err(CatalogError::Invalid(problems)) => {
            let n = problems.len();
            return Err(fail(
                Outcome::Invalid,
                problems
                    .iter()
                    .map(|p| p.to_string())
                    .chain([format!("invalid: {n} problem(s); nothing published")]),
            ));
        }
        Err(e) => return Err(fail(Outcome::Failed, [format!("error: {e}")])),
    };
    let mut mesh: Mesh = plan.mesh.clone();
    // This engine only checks: it must not append to the server's audit file.
    mesh.config.audit.file = None;
    let engine = match MeshEngine::try_new(mesh) {
        Ok(e) => e,
        Err(e) => return Err(fail(Outcome::Invalid, [format!("invalid: {e}")])),
    };
    let mut policy_problems = engine.check_policies();
    policy_problems.extend(meshql_engine::quality::lint_quality(&plan.mesh));
    if !policy_problems.is_empty() {
        let n = policy_problems.len();
        return Err(fail(
            Outcome::Invalid,
            policy_problems
                .into_iter()
                .map(|(file, field, message)| format!("{}: {field}: {message}", file.display()))
                .chain([format!("invalid: {n} problem(s); nothing published")]),
        ));
    }
    let diff = plan.diff();
    let columns = diff.affected_columns();
    let since = chrono::Utc::now()
        - chrono::Duration::from_std(since).unwrap_or_else(|_| chrono::Duration::days(36_500));
    let audit = &plan.mesh.config.audit;
    let usage = match &audit.file {
        Some(file) => usage_of_columns(file, &diff.product, &columns, since, audit.hash_sql)
            .map_err(|e| {
                fail(
                    Outcome::Failed,
                    [format!(
                        "error: cannot read the audit file {}: {e}",
                        file.display()
                    )],
                )
            })?,
        None => ColumnUsage {
            product: diff.product.clone(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            ..ColumnUsage::default()
        },
    };
    Ok(Review {
        plan,
        diff,
        usage,
        engine,
    })
}

fn print_review(r: &Review, audit_configured: bool) {
    println!("{}", r.diff);
    if r.diff.is_breaking() {
        if audit_configured {
            println!("{}", r.usage);
        } else {
            println!("affected readers unknown: no [audit] file is configured");
        }
    }
}

/// `meshql catalog diff --config F MANIFEST`.
pub(crate) async fn diff(
    config: &Path,
    manifest: &Path,
    format: DiffFormat,
    since: Duration,
) -> ExitCode {
    let r = match review(config, manifest, since) {
        Ok(r) => r,
        Err(outcome) => return outcome.code(),
    };
    let outcome = Outcome::of(r.diff.verdict);
    match format {
        DiffFormat::Text => print_review(&r, r.plan.mesh.config.audit.file.is_some()),
        DiffFormat::Json => {
            let out = serde_json::json!({
                "product": r.diff.product,
                "verdict": r.diff.verdict,
                "accepted": r.diff.is_accepted(),
                "diff": r.diff,
                "affected": r.usage,
                "exit_code": outcome as u8,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&out).unwrap_or_else(|e| e.to_string())
            );
        }
    }
    outcome.code()
}

/// `meshql product publish --config F MANIFEST [--dry-run]`.
pub(crate) async fn publish(
    config: &Path,
    manifest: &Path,
    dry_run: bool,
    since: Duration,
) -> ExitCode {
    let r = match review(config, manifest, since) {
        Ok(r) => r,
        Err(outcome) => return outcome.code(),
    };
    print_review(&r, r.plan.mesh.config.audit.file.is_some());
    let outcome = Outcome::of(r.diff.verdict);
    if outcome != Outcome::Accepted {
        println!(
            "refused: {} {} is {}; nothing published",
            r.diff.product, r.diff.proposed_version, r.diff.verdict
        );
        return outcome.code();
    }
    let (domain, name) = (&r.plan.proposed.domain, &r.plan.proposed.name);
    let data = r.engine.check_product_data(domain, name).await;
    if !data.is_empty() {
        let n = data.len();
        return fail(
            Outcome::DataMismatch,
            data.into_iter()
                .map(|m| format!("{}: data of `{}`: {m}", manifest.display(), r.diff.product))
                .chain([format!(
                    "refused: the data does not match the contract ({n} problem(s)); nothing published"
                )]),
        )
        .code();
    }
    println!("data matches the contract");
    if let Err(failures) = quality_check(&r.engine, &r.plan).await {
        let n = failures.len();
        return fail(
            Outcome::QualityFailed,
            failures.into_iter().chain([format!(
                "refused: {n} quality rule(s) of severity error fail; nothing published"
            )]),
        )
        .code();
    }
    if dry_run {
        println!(
            "dry run: {} {} would be installed at {}",
            r.diff.product,
            r.diff.proposed_version,
            r.plan.target.display()
        );
        return Outcome::Accepted.code();
    }
    match r.plan.install() {
        Ok(target) => {
            println!(
                "published {} {} to {}; a running server picks it up within catalog.refresh_interval",
                r.diff.product,
                r.diff.proposed_version,
                target.display()
            );
            Outcome::Accepted.code()
        }
        Err(e @ CatalogError::Changed { .. }) => {
            fail(Outcome::Conflict, [format!("conflict: {e}")]).code()
        }
        Err(e) => fail(Outcome::Failed, [format!("error: {e}")]).code(),
    }
}

/// THE call site of the product's quality rules during `publish` (the same checks as
/// `meshql catalog check DOMAIN.PRODUCT`, on the catalog as it would be): `Err` lists the rules
/// of severity `error` that fail, or why the data could not be checked (printed, exit 6);
/// failing `warning` rules are printed and do not refuse.
async fn quality_check(_engine: &MeshEngine, plan: &InstallPlan) -> Result<(), Vec<String>> {
    use meshql_engine::quality::{check_mesh_quality, CheckOptions, RuleStatus};
    let product = plan.proposed.qualified_name();
    if plan.proposed.quality.is_empty() {
        println!("no quality rules");
        return Ok(());
    }
    let checks = check_mesh_quality(
        &plan.mesh,
        Some(&product),
        &CheckOptions::for_mesh(&plan.mesh),
    )
    .await
    .map_err(|e| vec![format!("quality rules of `{product}` could not run: {e}")])?;
    let mut failures = Vec::new();
    for c in &checks {
        if let Some(e) = &c.error {
            failures.push(format!("quality of `{product}`: data unavailable: {e}"));
        }
        for r in &c.rules {
            if r.status == RuleStatus::Pass {
                continue;
            }
            let line = format!(
                "quality rule `{}` ({}, {}): {} ({})",
                r.rule,
                r.severity.as_str(),
                if r.status == RuleStatus::Fail {
                    "fails"
                } else {
                    "error"
                },
                r.observed,
                r.definition
            );
            match r.severity {
                meshql_catalog::Severity::Error => failures.push(line),
                meshql_catalog::Severity::Warning => println!("warning: {line}"),
            }
        }
    }
    if failures.is_empty() {
        let rules: usize = checks.iter().map(|c| c.rules.len()).sum();
        println!("quality rules pass ({rules} rule(s))");
        Ok(())
    } else {
        Err(failures)
    }
}
