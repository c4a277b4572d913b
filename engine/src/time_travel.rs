//! Delta time travel in SQL: `SELECT ... FROM sales.orders VERSION AS OF 0` and
//! `... TIMESTAMP AS OF '2025-06-01T00:00:00Z'` (the Delta Lake / Databricks syntax).
//!
//! DataFusion's generic SQL dialect does not parse table versions, so meshql parses with
//! [`MeshDialect`]: the generic dialect in every respect except that it accepts them. Versioned
//! table references are then rewritten to internal names (`orders@v0`, `orders@t<timestamp>`)
//! that the domain schema resolves to the Delta table at that version, under the same access
//! policies as the current version.

use std::any::TypeId;
use std::ops::ControlFlow;

use datafusion::sql::parser::{DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    Ident, ObjectNamePart, TableFactor, TableVersion, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::{Dialect, GenericDialect};

use crate::error::{EngineError, Result};

/// A point in a Delta table's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AsOf {
    Version(u64),
    /// An RFC 3339 / ISO 8601 timestamp.
    Timestamp(String),
}

/// Splits an internal table name into the product name and the version asked for.
pub(crate) fn split_versioned(name: &str) -> (&str, Option<AsOf>) {
    match name.split_once('@') {
        Some((base, spec)) => match (spec.strip_prefix('v'), spec.strip_prefix('t')) {
            (Some(v), _) => match v.parse() {
                Ok(v) => (base, Some(AsOf::Version(v))),
                Err(_) => (name, None),
            },
            (_, Some(ts)) => (base, Some(AsOf::Timestamp(ts.to_string()))),
            _ => (name, None),
        },
        None => (name, None),
    }
}

/// Parses one SQL statement with [`MeshDialect`] and rewrites time-travel references.
#[cfg(test)]
pub(crate) fn parse(sql: &str) -> Result<DFStatement> {
    let mut statement = parse_statement(sql)?;
    rewrite(&mut statement)?;
    Ok(statement)
}

/// Parses one SQL statement with [`MeshDialect`], without rewriting it.
pub(crate) fn parse_statement(sql: &str) -> Result<DFStatement> {
    let dialect = MeshDialect(GenericDialect {});
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(EngineError::from_datafusion)?;
    if statements.len() != 1 {
        return Err(EngineError::plan(format!(
            "expected exactly one SQL statement, found {}",
            statements.len()
        )));
    }
    statements
        .pop_front()
        .ok_or_else(|| EngineError::plan("empty SQL"))
}

/// Rewrites time-travel references (`VERSION AS OF`, `TIMESTAMP AS OF`) to internal names.
pub(crate) fn rewrite(statement: &mut DFStatement) -> Result<()> {
    match statement {
        DFStatement::Statement(s) => match s.visit(&mut Rewriter) {
            ControlFlow::Break(message) => Err(EngineError::plan(message)),
            ControlFlow::Continue(()) => Ok(()),
        },
        DFStatement::Explain(explain) => rewrite(&mut explain.statement),
        _ => Ok(()),
    }
}

struct Rewriter;

impl VisitorMut for Rewriter {
    type Break = String;

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<String> {
        let TableFactor::Table { name, version, .. } = factor else {
            return ControlFlow::Continue(());
        };
        let Some(v) = version.take() else {
            return ControlFlow::Continue(());
        };
        let suffix = match &v {
            TableVersion::VersionAsOf(e) => match e.to_string().parse::<u64>() {
                Ok(n) => format!("v{n}"),
                _ => {
                    return ControlFlow::Break(format!(
                        "VERSION AS OF needs a non-negative version number, found `{e}`"
                    ))
                }
            },
            TableVersion::TimestampAsOf(e) | TableVersion::ForSystemTimeAsOf(e) => {
                let text = e.to_string();
                match text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
                    Some(ts) if !ts.is_empty() && !ts.contains('@') => format!("t{ts}"),
                    _ => {
                        return ControlFlow::Break(format!(
                            "TIMESTAMP AS OF needs a timestamp string such as '2025-06-01T00:00:00Z', found `{text}`"
                        ))
                    }
                }
            }
            other => {
                return ControlFlow::Break(format!(
                "unsupported table version `{other}`; use VERSION AS OF n or TIMESTAMP AS OF '...'"
            ))
            }
        };
        match name.0.last_mut() {
            Some(ObjectNamePart::Identifier(ident)) => {
                *ident = Ident::with_quote('"', format!("{}@{suffix}", ident.value));
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Break(format!("cannot apply a version to `{name}`")),
        }
    }
}

/// DataFusion's generic dialect, plus `VERSION AS OF` / `TIMESTAMP AS OF` on tables. It reports
/// itself as the generic dialect so that the parser's dialect-specific paths are unchanged.
#[derive(Debug)]
pub(crate) struct MeshDialect(GenericDialect);

impl Dialect for MeshDialect {
    fn dialect(&self) -> TypeId {
        TypeId::of::<GenericDialect>()
    }

    fn supports_table_versioning(&self) -> bool {
        true
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.0.is_delimited_identifier_start(ch)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        self.0.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        self.0.is_identifier_part(ch)
    }

    fn supports_unicode_string_literal(&self) -> bool {
        self.0.supports_unicode_string_literal()
    }

    fn supports_partition_by_after_order_by(&self) -> bool {
        self.0.supports_partition_by_after_order_by()
    }

    fn supports_array_join_syntax(&self) -> bool {
        self.0.supports_array_join_syntax()
    }

    fn supports_group_by_expr(&self) -> bool {
        self.0.supports_group_by_expr()
    }

    fn supports_group_by_with_modifier(&self) -> bool {
        self.0.supports_group_by_with_modifier()
    }

    fn supports_left_associative_joins_without_parens(&self) -> bool {
        self.0.supports_left_associative_joins_without_parens()
    }

    fn supports_connect_by(&self) -> bool {
        self.0.supports_connect_by()
    }

    fn supports_match_recognize(&self) -> bool {
        self.0.supports_match_recognize()
    }

    fn supports_pipe_operator(&self) -> bool {
        self.0.supports_pipe_operator()
    }

    fn supports_start_transaction_modifier(&self) -> bool {
        self.0.supports_start_transaction_modifier()
    }

    fn supports_window_function_null_treatment_arg(&self) -> bool {
        self.0.supports_window_function_null_treatment_arg()
    }

    fn supports_dictionary_syntax(&self) -> bool {
        self.0.supports_dictionary_syntax()
    }

    fn supports_window_clause_named_window_reference(&self) -> bool {
        self.0.supports_window_clause_named_window_reference()
    }

    fn supports_parenthesized_set_variables(&self) -> bool {
        self.0.supports_parenthesized_set_variables()
    }

    fn supports_select_wildcard_except(&self) -> bool {
        self.0.supports_select_wildcard_except()
    }

    fn support_map_literal_syntax(&self) -> bool {
        self.0.support_map_literal_syntax()
    }

    fn allow_extract_custom(&self) -> bool {
        self.0.allow_extract_custom()
    }

    fn allow_extract_single_quotes(&self) -> bool {
        self.0.allow_extract_single_quotes()
    }

    fn supports_extract_comma_syntax(&self) -> bool {
        self.0.supports_extract_comma_syntax()
    }

    fn supports_create_view_comment_syntax(&self) -> bool {
        self.0.supports_create_view_comment_syntax()
    }

    fn supports_parens_around_table_factor(&self) -> bool {
        self.0.supports_parens_around_table_factor()
    }

    fn supports_values_as_table_factor(&self) -> bool {
        self.0.supports_values_as_table_factor()
    }

    fn supports_create_index_with_clause(&self) -> bool {
        self.0.supports_create_index_with_clause()
    }

    fn supports_explain_with_utility_options(&self) -> bool {
        self.0.supports_explain_with_utility_options()
    }

    fn supports_limit_comma(&self) -> bool {
        self.0.supports_limit_comma()
    }

    fn supports_update_order_by(&self) -> bool {
        self.0.supports_update_order_by()
    }

    fn supports_from_first_select(&self) -> bool {
        self.0.supports_from_first_select()
    }

    fn supports_projection_trailing_commas(&self) -> bool {
        self.0.supports_projection_trailing_commas()
    }

    fn supports_asc_desc_in_column_definition(&self) -> bool {
        self.0.supports_asc_desc_in_column_definition()
    }

    fn supports_try_convert(&self) -> bool {
        self.0.supports_try_convert()
    }

    fn supports_bitwise_shift_operators(&self) -> bool {
        self.0.supports_bitwise_shift_operators()
    }

    fn supports_comment_on(&self) -> bool {
        self.0.supports_comment_on()
    }

    fn supports_load_extension(&self) -> bool {
        self.0.supports_load_extension()
    }

    fn supports_named_fn_args_with_assignment_operator(&self) -> bool {
        self.0.supports_named_fn_args_with_assignment_operator()
    }

    fn supports_struct_literal(&self) -> bool {
        self.0.supports_struct_literal()
    }

    fn supports_empty_projections(&self) -> bool {
        self.0.supports_empty_projections()
    }

    fn supports_nested_comments(&self) -> bool {
        self.0.supports_nested_comments()
    }

    fn supports_multiline_comment_hints(&self) -> bool {
        self.0.supports_multiline_comment_hints()
    }

    fn supports_user_host_grantee(&self) -> bool {
        self.0.supports_user_host_grantee()
    }

    fn supports_string_escape_constant(&self) -> bool {
        self.0.supports_string_escape_constant()
    }

    fn supports_array_typedef_with_brackets(&self) -> bool {
        self.0.supports_array_typedef_with_brackets()
    }

    fn supports_match_against(&self) -> bool {
        self.0.supports_match_against()
    }

    fn supports_set_names(&self) -> bool {
        self.0.supports_set_names()
    }

    fn supports_comma_separated_set_assignments(&self) -> bool {
        self.0.supports_comma_separated_set_assignments()
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        self.0.supports_filter_during_aggregation()
    }

    fn supports_select_wildcard_exclude(&self) -> bool {
        self.0.supports_select_wildcard_exclude()
    }

    fn supports_data_type_signed_suffix(&self) -> bool {
        self.0.supports_data_type_signed_suffix()
    }

    fn supports_interval_options(&self) -> bool {
        self.0.supports_interval_options()
    }

    fn supports_quote_delimited_string(&self) -> bool {
        self.0.supports_quote_delimited_string()
    }

    fn supports_select_wildcard_replace(&self) -> bool {
        self.0.supports_select_wildcard_replace()
    }

    fn supports_select_wildcard_ilike(&self) -> bool {
        self.0.supports_select_wildcard_ilike()
    }

    fn supports_select_wildcard_rename(&self) -> bool {
        self.0.supports_select_wildcard_rename()
    }

    fn supports_optimize_table(&self) -> bool {
        self.0.supports_optimize_table()
    }

    fn supports_install(&self) -> bool {
        self.0.supports_install()
    }

    fn supports_detach(&self) -> bool {
        self.0.supports_detach()
    }

    fn supports_prewhere(&self) -> bool {
        self.0.supports_prewhere()
    }

    fn supports_with_fill(&self) -> bool {
        self.0.supports_with_fill()
    }

    fn supports_limit_by(&self) -> bool {
        self.0.supports_limit_by()
    }

    fn supports_interpolate(&self) -> bool {
        self.0.supports_interpolate()
    }

    fn supports_settings(&self) -> bool {
        self.0.supports_settings()
    }

    fn supports_select_format(&self) -> bool {
        self.0.supports_select_format()
    }

    fn supports_comment_optimizer_hint(&self) -> bool {
        self.0.supports_comment_optimizer_hint()
    }

    fn supports_constraint_keyword_without_name(&self) -> bool {
        self.0.supports_constraint_keyword_without_name()
    }

    fn supports_key_column_option(&self) -> bool {
        self.0.supports_key_column_option()
    }

    fn supports_comma_separated_trim(&self) -> bool {
        self.0.supports_comma_separated_trim()
    }

    fn supports_cte_without_as(&self) -> bool {
        self.0.supports_cte_without_as()
    }

    fn supports_select_item_multi_column_alias(&self) -> bool {
        self.0.supports_select_item_multi_column_alias()
    }

    fn supports_xml_expressions(&self) -> bool {
        self.0.supports_xml_expressions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_versions_to_internal_names() {
        let s = parse("SELECT * FROM sales.orders VERSION AS OF 3 o JOIN x.y ON true").unwrap();
        assert!(s.to_string().contains("sales.\"orders@v3\""), "{s}");
        let s = parse("SELECT * FROM sales.orders TIMESTAMP AS OF '2025-01-02T00:00:00Z'").unwrap();
        assert!(
            s.to_string().contains("\"orders@t2025-01-02T00:00:00Z\""),
            "{s}"
        );
        let s = parse("EXPLAIN SELECT * FROM sales.orders VERSION AS OF 0").unwrap();
        assert!(s.to_string().contains("orders@v0"), "{s}");
        assert!(parse("SELECT 1; SELECT 2").is_err());
        assert_eq!(
            split_versioned("orders@v2"),
            ("orders", Some(AsOf::Version(2)))
        );
        assert_eq!(split_versioned("orders"), ("orders", None));
        // Generic-dialect behaviour is kept: placeholders, double-quoted identifiers.
        parse("SELECT \"a b\" FROM t WHERE x = $1").unwrap();
    }
}
