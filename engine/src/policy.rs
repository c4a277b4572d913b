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
    parse_safe_for(state, sql, schema, "policies")
}

/// [`parse_safe`] for expressions of `what` (named in the problems reported): policies, or
/// the `sql` predicates of quality rules.
pub(crate) fn parse_safe_for(
    state: &SessionState,
    sql: &str,
    schema: &DFSchema,
    what: &str,
) -> std::result::Result<Expr, String> {
    let expr = state
        .create_logical_expr(sql, schema)
        .map_err(|e| crate::error::EngineError::from_datafusion(e).to_string())?;
    let mut problem: Option<String> = None;
    let _ = expr.apply(|e| {
        let bad = match e {
            Expr::AggregateFunction(_) => Some("aggregate functions are not allowed"),
            Expr::WindowFunction(_) => Some("window functions are not allowed"),
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) => {
                Some("subqueries (and so references to other products) are not allowed")
            }
            Expr::OuterReferenceColumn(..) => Some("outer references are not allowed"),
            Expr::Placeholder(_) => Some("placeholders are not allowed"),
            _ => None,
        };
        match bad {
            Some(m) => {
                problem = Some(format!("{m} in {what}"));
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

/// Type-checks every row filter and mask of the mesh against the contracts (no data is read).
/// Returns `(file, field, message)` for each problem.
pub(crate) fn check_policies(
    state: &SessionState,
    mesh: &meshql_catalog::Mesh,
) -> Vec<(std::path::PathBuf, String, String)> {
    use meshql_catalog::MaskTarget;
    let mut out = Vec::new();
    // Attributes become NULL: enough to type-check, never a real value.
    let nobody = Principal::new("lint");
    let schema_of = |domain: &str, product: &str| -> Option<DFSchema> {
        let p = mesh.product(domain, product)?;
        DFSchema::try_from(crate::contract::contract_schema(&p.manifest)).ok()
    };
    for (domain, set) in &mesh.policies.domains {
        for (i, f) in set.row_filters.iter().enumerate() {
            let Some(schema) = schema_of(domain, &f.product) else {
                continue;
            };
            let sql = substitute(&f.predicate, &nobody, None);
            let field = format!("row_filters[{i}].predicate");
            match parse_safe(state, &sql, &schema) {
                Err(e) => out.push((f.file.clone(), field, e)),
                Ok(expr) => match expr.get_type(&schema) {
                    Ok(arrow::datatypes::DataType::Boolean | arrow::datatypes::DataType::Null) => {}
                    Ok(dt) => out.push((
                        f.file.clone(),
                        field,
                        format!("predicate is of type {dt}, not boolean"),
                    )),
                    Err(e) => out.push((f.file.clone(), field, e.to_string())),
                },
            }
        }
        for (i, m) in set.masks.iter().enumerate() {
            if let MaskTarget::Column { product, column } = &m.target {
                if let Some(schema) = schema_of(domain, product) {
                    if let Some(problem) =
                        check_mask(state, &schema, column, &m.expression, &nobody)
                    {
                        out.push((m.file.clone(), format!("masks[{i}].expression"), problem));
                    }
                }
            }
        }
    }
    for (i, m) in mesh.policies.global.masks.iter().enumerate() {
        let MaskTarget::Classification(class) = &m.target else {
            continue;
        };
        for p in mesh.products() {
            for c in p
                .manifest
                .columns
                .iter()
                .filter(|c| c.classification.as_deref() == Some(class.as_str()))
            {
                let Some(schema) = schema_of(&p.manifest.domain, &p.manifest.name) else {
                    continue;
                };
                if let Some(problem) = check_mask(state, &schema, &c.name, &m.expression, &nobody) {
                    out.push((
                        m.file.clone(),
                        format!("masks[{i}].expression"),
                        format!("on {}.{}: {problem}", p.qualified_name(), c.name),
                    ));
                }
            }
        }
    }
    out
}

fn check_mask(
    state: &SessionState,
    schema: &DFSchema,
    column: &str,
    expression: &str,
    nobody: &Principal,
) -> Option<String> {
    let target = schema
        .field_with_unqualified_name(column)
        .ok()?
        .data_type()
        .clone();
    let sql = substitute(expression, nobody, Some(column));
    match parse_safe(state, &sql, schema) {
        Err(e) => Some(e),
        Ok(expr) => match expr.get_type(schema) {
            Ok(dt) if arrow::compute::can_cast_types(&dt, &target) => None,
            Ok(dt) => Some(format!(
                "mask is of type {dt}, which cannot become the column's type {target}"
            )),
            Err(e) => Some(e.to_string()),
        },
    }
}
