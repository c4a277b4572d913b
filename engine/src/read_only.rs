//! The read-only SQL surface, by construction: what may run is decided by an allow-list of
//! read-only shapes, checked twice.
//!
//! 1. On the parsed statement: only queries (`SELECT`, `WITH`, `VALUES`, `TABLE`), `EXPLAIN` of
//!    any form (`ANALYZE`, `VERBOSE`, `FORMAT`, parenthesised options) whose explained statement
//!    is itself allowed, `DESCRIBE`, `SHOW TABLES`, `SHOW COLUMNS`, `SHOW FUNCTIONS` and
//!    `SHOW <setting>`. Inside a query, nested statements (data-modifying CTEs, `INSERT`
//!    bodies) and `SELECT ... INTO` are refused.
//! 2. On the logical plan and every plan nested in it (subqueries, CTEs, the plan under
//!    `EXPLAIN` / `EXPLAIN ANALYZE`): only relational operators and scans of the tables meshql
//!    itself provides (products, the `meshql` system tables, `information_schema`, and the
//!    generated series of `range` / `generate_series`).
//!
//! Anything else is refused before it runs, with the same `ReadOnly` error for every principal.

use std::ops::ControlFlow;

use datafusion::catalog::MemTable;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{DescribeAlias, Select, SetExpr, Statement, Visit, Visitor};

use crate::error::{EngineError, Result};

fn refused(what: impl std::fmt::Display) -> EngineError {
    EngineError::ReadOnly(format!(
        "meshql is read-only: {what} is not allowed; only queries (SELECT, WITH, VALUES, \
         EXPLAIN, DESCRIBE, SHOW) are accepted"
    ))
}

/// Checks a parsed statement against the allow-list.
pub(crate) fn check_statement(statement: &DFStatement) -> Result<()> {
    match statement {
        DFStatement::Statement(s) => check_sql_statement(s),
        DFStatement::Explain(e) => check_statement(&e.statement),
        DFStatement::CreateExternalTable(_) => Err(refused("CREATE EXTERNAL TABLE")),
        DFStatement::CopyTo(_) => Err(refused("COPY")),
        DFStatement::Reset(_) => Err(refused("RESET")),
    }
}

fn check_sql_statement(s: &Statement) -> Result<()> {
    match s {
        Statement::Query(_)
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. } => {}
        Statement::ExplainTable {
            describe_alias: DescribeAlias::Describe | DescribeAlias::Desc,
            ..
        } => {}
        Statement::Explain { statement, .. } => check_sql_statement(statement)?,
        other => return Err(refused(statement_kind(other))),
    }
    // Nothing inside may write: no nested statements, no SELECT INTO.
    match s.visit(&mut NestedWrites { top: true }) {
        ControlFlow::Break(what) => Err(refused(what)),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// The statement's leading keywords, for messages (`INSERT`, `CREATE TABLE`, ...).
fn statement_kind(s: &Statement) -> String {
    let text = s.to_string();
    let words: Vec<&str> = text
        .split_whitespace()
        .take_while(|w| w.chars().all(|c| c.is_ascii_alphabetic() || c == '_'))
        .take(3)
        .collect();
    let kind = words
        .iter()
        .take_while(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    if kind.is_empty() {
        "this statement".to_string()
    } else {
        kind
    }
}

struct NestedWrites {
    top: bool,
}

impl Visitor for NestedWrites {
    type Break = String;

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<String> {
        if std::mem::replace(&mut self.top, false) {
            return ControlFlow::Continue(());
        }
        match s {
            Statement::Query(_) => ControlFlow::Continue(()),
            Statement::Explain { statement, .. } if matches!(**statement, Statement::Query(_)) => {
                ControlFlow::Continue(())
            }
            other => ControlFlow::Break(format!("{} inside a query", statement_kind(other))),
        }
    }

    fn pre_visit_query(
        &mut self,
        q: &datafusion::sql::sqlparser::ast::Query,
    ) -> ControlFlow<String> {
        let mut stack = vec![q.body.as_ref()];
        while let Some(body) = stack.pop() {
            match body {
                SetExpr::SetOperation { left, right, .. } => {
                    stack.push(left);
                    stack.push(right);
                }
                SetExpr::Insert(_) => return ControlFlow::Break("INSERT".into()),
                SetExpr::Update(_) => return ControlFlow::Break("UPDATE".into()),
                SetExpr::Delete(_) => return ControlFlow::Break("DELETE".into()),
                SetExpr::Merge(_) => return ControlFlow::Break("MERGE".into()),
                SetExpr::Select(_) | SetExpr::Query(_) | SetExpr::Values(_) | SetExpr::Table(_) => {
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<String> {
        if select.into.is_some() {
            return ControlFlow::Break("SELECT ... INTO".into());
        }
        ControlFlow::Continue(())
    }
}

/// Checks a logical plan and every plan nested in it against the allow-list. Only audit admins
/// may read DataFusion's settings (`SHOW`, `information_schema.df_settings`): they include
/// local paths.
pub(crate) fn check_plan(plan: &LogicalPlan, admin: bool) -> Result<()> {
    let mut refusal: Option<EngineError> = None;
    let walk = plan.apply_with_subqueries(|node| match check_node(node, admin) {
        Ok(()) => Ok(TreeNodeRecursion::Continue),
        Err(e) => {
            refusal = Some(e);
            Ok(TreeNodeRecursion::Stop)
        }
    });
    if let Err(e) = walk {
        return Err(EngineError::from_datafusion(e));
    }
    match refusal {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn check_node(node: &LogicalPlan, admin: bool) -> Result<()> {
    match node {
        LogicalPlan::Projection(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::Window(_)
        | LogicalPlan::Aggregate(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Join(_)
        | LogicalPlan::Repartition(_)
        | LogicalPlan::Union(_)
        | LogicalPlan::EmptyRelation(_)
        | LogicalPlan::Subquery(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Values(_)
        | LogicalPlan::Distinct(_)
        | LogicalPlan::Unnest(_)
        | LogicalPlan::RecursiveQuery(_)
        | LogicalPlan::DescribeTable(_)
        // EXPLAIN [ANALYZE] runs or shows its input, which this walk checks too.
        | LogicalPlan::Explain(_)
        | LogicalPlan::Analyze(_) => Ok(()),
        LogicalPlan::TableScan(scan) => {
            let provider = source_as_provider(&scan.source).map_err(EngineError::from_datafusion)?;
            let any: &dyn std::any::Any = provider.as_ref();
            let known = any.is::<crate::product::ProductTable>()
                || any.is::<MemTable>()
                || any.is::<crate::system::AuditTable>()
                || any.is::<crate::usage::UsageTable>()
                || any.is::<crate::freshness::RefusedTable>()
                || any.is::<datafusion::catalog::streaming::StreamingTable>()
                || any.is::<datafusion::functions_table::generate_series::GenerateSeriesTable>();
            if !known {
                return Err(refused(format!("reading `{}`", scan.table_name)));
            }
            if !admin
                && scan.table_name.schema() == Some("information_schema")
                && scan.table_name.table() == "df_settings"
            {
                return Err(EngineError::AccessDenied {
                    product: "information_schema.df_settings".to_string(),
                    reason: "engine settings are only shown to members of group `admin`"
                        .to_string(),
                });
            }
            Ok(())
        }
        LogicalPlan::Ddl(ddl) => Err(refused(ddl.name())),
        LogicalPlan::Dml(dml) => Err(refused(format!("{} ({})", dml.op, dml.table_name))),
        LogicalPlan::Copy(_) => Err(refused("COPY")),
        LogicalPlan::Statement(s) => Err(refused(s.name())),
        LogicalPlan::Extension(e) => Err(refused(e.node.name())),
    }
}
