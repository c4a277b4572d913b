//! `RuntimeFilterRowFilters`: decides, scan by scan, whether a Parquet scan evaluates its
//! predicate while decoding (DataFusion's "filter pushdown" / late materialization).
//!
//! Evaluating a predicate inside the Parquet reader (a `RowFilter`) decodes the predicate's
//! columns first and the other columns only for the rows that pass. That pays when few rows pass
//! and the other columns are wide; it costs when most rows pass or the predicate's columns are
//! most of what is read: the reader then decodes in two passes, builds selections row group by
//! row group, and the `FilterExec` above evaluates the same predicate again. Measured on TPC-H
//! SF1 with 2 cores, turning it on for every scan made the lineitem scan-and-filter queries
//! (Q4, Q6, Q12, Q15) 1.5–3× slower than without it, while the queries whose big scans are cut
//! down by a join's *runtime* filter (Q18: a few hundred of 1.5M orders survive) were 2× faster
//! with it.
//!
//! So meshql turns it off by default (`execution.parquet.pushdown_filters = false`: static
//! predicates still prune files, row groups and pages from statistics, and run in the
//! `FilterExec` above the scan) and this rule, which runs after DataFusion's filter pushdown,
//! turns it back on for exactly the scans whose predicate consists only of runtime filters
//! (`DynamicFilterPhysicalExpr`, pushed in by a hash join or a TopK). A runtime filter is
//! selective by construction (it keeps the rows that can still match) and is not evaluated
//! again above the scan, so decoding only the matching rows is pure gain. A scan that also
//! carries a static predicate is left alone: the static part would be evaluated twice.
//!
//! Setting `execution.parquet.pushdown_filters = true` in `[engine.datafusion]` turns it on
//! for every scan, as in plain DataFusion; this rule then has nothing to do.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::physical_plan::FileSource;
use datafusion::datasource::physical_plan::{FileScanConfig, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr::split_conjunction;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

/// Enables Parquet row filters on the scans whose predicate is only runtime filters.
#[derive(Debug)]
pub(crate) struct RuntimeFilterRowFilters;

/// True when `predicate` is made only of runtime (dynamic) filters.
fn only_runtime_filters(predicate: &Arc<dyn PhysicalExpr>) -> bool {
    let conjuncts = split_conjunction(predicate);
    !conjuncts.is_empty()
        && conjuncts.iter().all(|c| {
            let any: &dyn std::any::Any = c.as_ref();
            any.is::<DynamicFilterPhysicalExpr>()
        })
}

impl PhysicalOptimizerRule for RuntimeFilterRowFilters {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if config.execution.parquet.pushdown_filters {
            // Every scan already filters while decoding.
            return Ok(plan);
        }
        plan.transform_up(|node| {
            let Some(exec) = node.downcast_ref::<DataSourceExec>() else {
                return Ok(Transformed::no(node));
            };
            let Some((scan, parquet)) = exec.downcast_to_file_source::<ParquetSource>() else {
                return Ok(Transformed::no(node));
            };
            match parquet.filter() {
                Some(p) if only_runtime_filters(&p) => {}
                _ => return Ok(Transformed::no(node)),
            }
            let source = parquet.clone().with_pushdown_filters(true);
            let mut scan: FileScanConfig = scan.clone();
            scan.file_source = Arc::new(source);
            let exec = exec.clone().with_data_source(Arc::new(scan));
            Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "meshql_runtime_filter_row_filters"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{binary, col, lit};

    fn schema() -> Schema {
        Schema::new(vec![Field::new("a", DataType::Int64, false)])
    }

    fn dynamic() -> Arc<dyn PhysicalExpr> {
        let s = schema();
        Arc::new(DynamicFilterPhysicalExpr::new(
            vec![col("a", &s).unwrap()],
            lit(true),
        ))
    }

    fn static_filter() -> Arc<dyn PhysicalExpr> {
        let s = schema();
        binary(col("a", &s).unwrap(), Operator::Gt, lit(5i64), &s).unwrap()
    }

    fn and(l: Arc<dyn PhysicalExpr>, r: Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
        binary(l, Operator::And, r, &schema()).unwrap()
    }

    #[test]
    fn only_predicates_made_of_runtime_filters_qualify() {
        assert!(only_runtime_filters(&dynamic()));
        assert!(only_runtime_filters(&and(dynamic(), dynamic())));
        assert!(!only_runtime_filters(&static_filter()));
        assert!(!only_runtime_filters(&and(static_filter(), dynamic())));
        assert!(!only_runtime_filters(&and(dynamic(), static_filter())));
    }
}
