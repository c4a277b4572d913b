//! Compiling a principal's access to a product into DataFusion expressions: the row filter
//! predicate and the projection with masks. Policies are SQL text in the catalog; they are
//! parsed here against the product's contract schema, checked for safety, and any failure
//! denies access (fail closed) without echoing the policy text to the client.

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{cast, col, Expr, ExprSchemable};
use meshql_catalog::{substitute, ColumnAccess, Principal, ProductAccess};

use crate::error::{EngineError, Result};

/// A principal's compiled view of a product.
#[derive(Debug, Clone)]
pub(crate) struct SecuredView {
    /// ANDed row filters, evaluated first.
    pub(crate) filter: Option<Expr>,
    /// One expression per visible column, aliased to the column name.
    pub(crate) columns: Vec<Expr>,
}

/// Compiles `access` against `schema` (the product's contract schema).
pub(crate) fn compile(
    state: &SessionState,
    product: &str,
    schema: &DFSchema,
    principal: &Principal,
    access: &ProductAccess<'_>,
) -> Result<SecuredView> {
    let denied = |policy: &str, what: String| {
        tracing::warn!(product, policy, error = %what, "invalid policy: access denied");
        EngineError::AccessDenied {
            product: product.to_string(),
            reason: format!(
                "policy `{policy}` is invalid (see the server log; run `meshql catalog lint`)"
            ),
        }
    };
    let mut filter: Option<Expr> = None;
    for f in &access.row_filters {
        let sql = substitute(&f.predicate, principal, None);
        let expr = parse_safe(state, &sql, schema).map_err(|e| denied(&f.name, e))?;
        let dt = expr
            .get_type(schema)
            .map_err(|e| denied(&f.name, e.to_string()))?;
        if dt != arrow::datatypes::DataType::Boolean && dt != arrow::datatypes::DataType::Null {
            return Err(denied(
                &f.name,
                format!("predicate is of type {dt}, not boolean"),
            ));
        }
        filter = Some(match filter {
            Some(prev) => prev.and(expr),
            None => expr,
        });
    }
    let mut columns = Vec::new();
    for (name, a) in &access.columns {
        let column = col(Column::new_unqualified(*name));
        let expr = match a {
            ColumnAccess::Clear => column,
            ColumnAccess::Masked(m) => {
                let target = schema
                    .field_with_unqualified_name(name)
                    .map_err(|e| denied(&m.name, e.to_string()))?
                    .data_type()
                    .clone();
                let sql = substitute(&m.expression, principal, Some(name));
                let expr = parse_safe(state, &sql, schema).map_err(|e| denied(&m.name, e))?;
                // The mask keeps the column's type.
                cast(expr, target).alias(*name)
            }
        };
        columns.push(expr);
    }
    Ok(SecuredView { filter, columns })
}

/// Parses a policy expression and rejects unsafe constructs: aggregates, window functions,
/// subqueries, placeholders and references to anything but the product's own columns.
pub(crate) fn parse_safe(
    state: &SessionState,
    sql: &str,
    schema: &DFSchema,
) -> std::result::Result<Expr, String> {
    let expr = state
        .create_logical_expr(sql, schema)
        .map_err(|e| e.to_string())?;
    let mut problem: Option<String> = None;
    let _ = expr.apply(|e| {
        let bad = match e {
            Expr::AggregateFunction(_) => Some("aggregate functions are not allowed in policies"),
            Expr::WindowFunction(_) => Some("window functions are not allowed in policies"),
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) => {
                Some("subqueries (and so references to other products) are not allowed in policies")
            }
            Expr::OuterReferenceColumn(..) => Some("outer references are not allowed in policies"),
            Expr::Placeholder(_) => Some("placeholders are not allowed in policies"),
            _ => None,
        };
        match bad {
            Some(m) => {
                problem = Some(m.to_string());
                Ok(TreeNodeRecursion::Stop)
            }
            None => Ok(TreeNodeRecursion::Continue),
        }
    });
    match problem {
        Some(p) => Err(p),
        None => Ok(expr),
    }
}
