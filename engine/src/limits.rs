//! Limits on what one request may ask of the engine, with their defaults, and the checks on a
//! statement's size and shape that run before anything else touches it.
//!
//! Deeply nested SQL is the one input that could stop the process: DataFusion's and sqlparser's
//! trees are cloned, compared, dropped and evaluated by recursive code that is not protected
//! against stack overflow. meshql therefore (1) refuses SQL larger than `max_sql_bytes` before
//! parsing, (2) measures the nesting depth of the parsed statement with sqlparser's
//! stack-protected visitor and refuses anything deeper than `max_expr_depth`, dismantling the
//! refused tree without deep recursion, and (3) plans and runs queries on threads with large
//! stacks (see [`crate::executor`]) sized for that depth with a wide margin.

use std::ops::ControlFlow;
use std::time::Duration;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, Query, SetExpr, Value, ValueWithSpan, Visit, VisitMut, Visitor, VisitorMut,
};
use meshql_catalog::{EngineConfig, LimitsConfig};

use crate::error::{EngineError, Result};

/// Default `[limits] max_sql_bytes`.
pub const DEFAULT_MAX_SQL_BYTES: u64 = 1024 * 1024;
/// Default `[limits] max_expr_depth`.
pub const DEFAULT_MAX_EXPR_DEPTH: usize = 1000;
/// Default `[limits] max_concurrent_queries`.
pub const DEFAULT_MAX_CONCURRENT_QUERIES: usize = 16;
/// Default `[limits] max_queries_per_user`.
pub const DEFAULT_MAX_QUERIES_PER_USER: usize = 4;
/// Default `[limits] queue_timeout`.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `[limits] statement_timeout`.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Default `engine.result_cache_size`.
pub const DEFAULT_RESULT_CACHE_SIZE: u64 = 256 * 1024 * 1024;
/// Default `engine.result_cache_max_entry`.
pub const DEFAULT_RESULT_CACHE_MAX_ENTRY: u64 = 16 * 1024 * 1024;
/// Default `[engine] memory_limit` when the machine's memory is unknown.
pub const FALLBACK_MEMORY_LIMIT: u64 = 4 * 1024 * 1024 * 1024;

/// The limits in force, defaults resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub memory_limit: u64,
    pub query_memory_limit: u64,
    pub spill_dir: Option<std::path::PathBuf>,
    pub target_partitions: usize,
    pub batch_size: usize,
    pub max_concurrent_queries: usize,
    pub queue_timeout: Duration,
    pub max_queries_per_user: usize,
    pub statement_timeout: Duration,
    pub max_sql_bytes: u64,
    pub max_expr_depth: usize,
    /// Bytes of results the result cache keeps (0: no cache).
    pub result_cache_size: u64,
    /// Largest single result the result cache keeps, in bytes.
    pub result_cache_max_entry: u64,
}

impl Limits {
    /// Resolves the configured values, filling in defaults: `memory_limit` is half the
    /// machine's memory (4 GiB when unknown), `query_memory_limit` a quarter of
    /// `memory_limit`, `target_partitions` the number of cores.
    pub fn from_config(engine: &EngineConfig, limits: &LimitsConfig) -> Self {
        let memory_limit = engine.memory_limit.unwrap_or_else(default_memory_limit);
        let query_memory_limit = engine
            .query_memory_limit
            .unwrap_or(memory_limit / 4)
            .min(memory_limit);
        Self {
            memory_limit,
            query_memory_limit,
            spill_dir: engine.spill_dir.clone(),
            target_partitions: engine.target_partitions.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
            }),
            batch_size: engine.batch_size.unwrap_or(8192),
            max_concurrent_queries: limits
                .max_concurrent_queries
                .unwrap_or(DEFAULT_MAX_CONCURRENT_QUERIES),
            queue_timeout: limits.queue_timeout.unwrap_or(DEFAULT_QUEUE_TIMEOUT),
            max_queries_per_user: limits
                .max_queries_per_user
                .unwrap_or(DEFAULT_MAX_QUERIES_PER_USER),
            statement_timeout: limits
                .statement_timeout
                .unwrap_or(DEFAULT_STATEMENT_TIMEOUT),
            max_sql_bytes: limits.max_sql_bytes.unwrap_or(DEFAULT_MAX_SQL_BYTES),
            max_expr_depth: limits.max_expr_depth.unwrap_or(DEFAULT_MAX_EXPR_DEPTH),
            result_cache_size: engine
                .result_cache_size
                .unwrap_or(DEFAULT_RESULT_CACHE_SIZE),
            result_cache_max_entry: engine
                .result_cache_max_entry
                .unwrap_or(DEFAULT_RESULT_CACHE_MAX_ENTRY),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::from_config(&EngineConfig::default(), &LimitsConfig::default())
    }
}

/// Half of the machine's memory (from `/proc/meminfo`), or 4 GiB when it cannot be read.
fn default_memory_limit() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib * 1024 / 2)
        .filter(|b| *b > 0)
        .unwrap_or(FALLBACK_MEMORY_LIMIT)
}

/// A size for messages: `1 MiB`.
pub(crate) fn size(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

/// Refuses SQL text over `max_sql_bytes`, before it is parsed.
pub(crate) fn check_sql_size(sql: &str, max_sql_bytes: u64) -> Result<()> {
    if sql.len() as u64 > max_sql_bytes {
        return Err(EngineError::LimitExceeded {
            limit: "max_sql_bytes",
            message: format!(
                "the SQL text is {} ({} bytes), over the limit of {} (max_sql_bytes)",
                size(sql.len() as u64),
                sql.len(),
                size(max_sql_bytes)
            ),
        });
    }
    Ok(())
}

/// Refuses a statement nested deeper than `max_depth`: expressions inside expressions (operator
/// chains such as `1+1+...`, `a OR b OR ...`, `||`, CASE, function calls, parentheses),
/// subqueries, and UNION / INTERSECT / EXCEPT chains all count. A refused statement is
/// dismantled without deep recursion.
pub(crate) fn check_depth(statement: DFStatement, max_depth: usize) -> Result<DFStatement> {
    let mut depth = DepthCheck {
        depth: 0,
        max: max_depth,
    };
    let over = match &statement {
        DFStatement::Statement(s) => s.visit(&mut depth).is_break(),
        DFStatement::Explain(e) => explain_depth(&e.statement, &mut depth),
        DFStatement::CopyTo(c) => match &c.source {
            datafusion::sql::parser::CopyToSource::Query(q) => q.visit(&mut depth).is_break(),
            datafusion::sql::parser::CopyToSource::Relation(_) => false,
        },
        DFStatement::CreateExternalTable(_) | DFStatement::Reset(_) => false,
    };
    if over {
        dismantle(statement);
        return Err(EngineError::LimitExceeded {
            limit: "max_expr_depth",
            message: format!(
                "the statement nests expressions, subqueries or set operations more than \
                 {max_depth} levels deep (max_expr_depth); split long operator chains, e.g. \
                 `x IN (...)` instead of `x = a OR x = b OR ...`"
            ),
        });
    }
    Ok(statement)
}

fn explain_depth(statement: &DFStatement, depth: &mut DepthCheck) -> bool {
    match statement {
        DFStatement::Statement(s) => s.visit(depth).is_break(),
        DFStatement::Explain(e) => explain_depth(&e.statement, depth),
        DFStatement::CopyTo(c) => match &c.source {
            datafusion::sql::parser::CopyToSource::Query(q) => q.visit(depth).is_break(),
            datafusion::sql::parser::CopyToSource::Relation(_) => false,
        },
        DFStatement::CreateExternalTable(_) | DFStatement::Reset(_) => false,
    }
}

struct DepthCheck {
    depth: usize,
    max: usize,
}

impl Visitor for DepthCheck {
    type Break = ();

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > self.max {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        // A query counts one level, plus the length of its set-operation chain (which the
        // parser builds as a left-deep tree).
        self.depth += 1 + set_chain_depth(&query.body, self.max.saturating_sub(self.depth));
        if self.depth > self.max {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        self.depth -= 1 + set_chain_depth(&query.body, usize::MAX);
        ControlFlow::Continue(())
    }
}

/// The depth of nested set operations in `body`, counted without recursion (stops past `cap`).
fn set_chain_depth(body: &SetExpr, cap: usize) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(body, 0usize)];
    while let Some((node, d)) = stack.pop() {
        if let SetExpr::SetOperation { left, right, .. } = node {
            let d = d + 1;
            deepest = deepest.max(d);
            if deepest > cap {
                break;
            }
            stack.push((left, d));
            stack.push((right, d));
        }
    }
    deepest
}

/// Drops a (possibly very deep) statement without deep recursion: every expression is replaced
/// by a literal after its children were (post-order, with sqlparser's stack-protected
/// visitor), and set-operation chains are taken apart with an explicit stack.
fn dismantle(statement: DFStatement) {
    let mut statement = statement;
    let mut hollow = Hollow;
    match &mut statement {
        DFStatement::Statement(s) => {
            let _ = s.visit(&mut hollow);
        }
        DFStatement::Explain(e) => dismantle_in_place(&mut e.statement),
        DFStatement::CopyTo(c) => {
            if let datafusion::sql::parser::CopyToSource::Query(q) = &mut c.source {
                let _ = q.visit(&mut hollow);
            }
        }
        DFStatement::CreateExternalTable(_) | DFStatement::Reset(_) => {}
    }
    drop(statement);
}

fn dismantle_in_place(statement: &mut DFStatement) {
    let mut hollow = Hollow;
    match statement {
        DFStatement::Statement(s) => {
            let _ = s.visit(&mut hollow);
        }
        DFStatement::Explain(e) => dismantle_in_place(&mut e.statement),
        DFStatement::CopyTo(c) => {
            if let datafusion::sql::parser::CopyToSource::Query(q) = &mut c.source {
                let _ = q.visit(&mut hollow);
            }
        }
        DFStatement::CreateExternalTable(_) | DFStatement::Reset(_) => {}
    }
}

struct Hollow;

fn placeholder() -> Expr {
    Expr::Value(ValueWithSpan::from(Value::Null))
}

impl VisitorMut for Hollow {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        // Its children are placeholders by now, so dropping it is shallow.
        drop(std::mem::replace(expr, placeholder()));
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let body = std::mem::replace(
            &mut query.body,
            Box::new(SetExpr::Values(datafusion::sql::sqlparser::ast::Values {
                explicit_row: false,
                value_keyword: false,
                rows: Vec::new(),
            })),
        );
        let mut stack = vec![*body];
        while let Some(node) = stack.pop() {
            if let SetExpr::SetOperation { left, right, .. } = node {
                stack.push(*left);
                stack.push(*right);
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> DFStatement {
        crate::time_travel::parse_statement(sql).unwrap()
    }

    #[test]
    fn depth_counts_chains_nesting_and_set_operations() {
        let chain = |n: usize, op: &str| format!("SELECT {}", vec!["1"; n].join(op));
        assert!(check_depth(parse(&chain(50, "+")), 100).is_ok());
        let err = check_depth(parse(&chain(200, "+")), 100).unwrap_err();
        assert!(
            matches!(
                err,
                EngineError::LimitExceeded {
                    limit: "max_expr_depth",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(check_depth(parse(&chain(200, " OR ")), 100).is_err());
        let union = vec!["SELECT 1"; 200].join(" UNION ALL ");
        assert!(check_depth(parse(&union), 100).is_err());
        let union = vec!["SELECT 1"; 20].join(" UNION ALL ");
        assert!(check_depth(parse(&union), 100).is_ok());
        // Wide is fine: many columns, a long IN list, a long CASE.
        let wide = format!("SELECT {}", vec!["a + 1"; 500].join(", "));
        assert!(check_depth(parse(&wide), 100).is_ok());
        let in_list = format!(
            "SELECT 1 WHERE 1 IN ({})",
            (0..5000)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(check_depth(parse(&in_list), 100).is_ok());
        // Under EXPLAIN too.
        let explain = format!("EXPLAIN ANALYZE {}", chain(200, "||"));
        assert!(check_depth(parse(&explain), 100).is_err());
    }

    #[test]
    fn a_very_deep_statement_is_refused_and_dropped_without_overflowing() {
        // 200,000 levels: far more than any thread stack could drop recursively. Runs on a
        // small (2 MiB) thread stack on purpose.
        let sql = chain_sql(200_000);
        let handle = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let statement = parse(&sql);
                check_depth(statement, 1000).is_err()
            })
            .unwrap();
        assert!(handle.join().unwrap());
    }

    fn chain_sql(n: usize) -> String {
        let mut s = String::with_capacity(n * 2 + 8);
        s.push_str("SELECT 1");
        for _ in 0..n {
            s.push_str("+1");
        }
        s
    }

    #[test]
    fn sql_size() {
        assert!(check_sql_size("SELECT 1", 8).is_ok());
        let err = check_sql_size("SELECT 10", 8).unwrap_err();
        assert!(err.to_string().contains("max_sql_bytes"), "{err}");
    }
}
