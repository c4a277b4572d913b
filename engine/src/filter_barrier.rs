//! `FilterBarrierExec`: keeps filters from crossing plan nodes whose output has two columns of
//! the same name.
//!
//! DataFusion 55's physical filter pushdown moves a parent's filter into a child by looking the
//! filter's columns up *by name* in the child's schema (`FilterRemapper`, and
//! `ProjectionExec`'s alias map). When the child's output has two columns named alike — `t1.name`
//! and `t3.name` of a self-join lose their qualifiers in physical plans — both references become
//! the first (or the last) of them: `WHERE ends_with(t1.name, t3.name)` above such a projection
//! was rewritten to `ends_with(name, name)` on one side of a right join and removed from above it,
//! so the query returned wrong rows (found by the SQL fuzzer: 2,005 rows where 2,000 were right).
//!
//! [`GuardDuplicateNames`] runs before DataFusion's `FilterPushdown` rules and puts a barrier
//! above every node whose output has duplicate column names; the barrier accepts no filter from
//! its parent (the filter stays where the planner put it, above). [`RemoveFilterBarriers`] runs
//! last and takes the barriers out again, so executed plans, EXPLAIN output and distributed
//! execution never see them. Plans without duplicate names (every TPC-H query) are unchanged.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

/// Name of the first DataFusion rule the barriers must be in place for.
const FILTER_PUSHDOWN_RULE: &str = "FilterPushdown";

/// The physical optimizer rules of a session: DataFusion's defaults with the barrier rule
/// before the first filter pushdown, then the per-scan row-filter choice
/// ([`crate::row_filters`]), the evaluation of simple conjunctions ([`crate::conjunctions`]),
/// unchecked decimal arithmetic where it cannot overflow ([`crate::decimal_arith`]) and the
/// removal rule at the end.
pub(crate) fn physical_optimizer_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let mut rules = datafusion::physical_optimizer::optimizer::PhysicalOptimizer::default().rules;
    let at = rules
        .iter()
        .position(|r| r.name() == FILTER_PUSHDOWN_RULE)
        .unwrap_or(0);
    rules.insert(at, Arc::new(GuardDuplicateNames));
    rules.push(Arc::new(crate::row_filters::RuntimeFilterRowFilters));
    rules.push(Arc::new(crate::conjunctions::SimpleConjunctions));
    rules.push(Arc::new(crate::decimal_arith::DecimalArithmetic));
    rules.push(Arc::new(RemoveFilterBarriers));
    rules
}

fn has_duplicate_names(plan: &dyn ExecutionPlan) -> bool {
    let schema = plan.schema();
    let mut seen = HashSet::new();
    schema.fields().iter().any(|f| !seen.insert(f.name()))
}

/// Puts a [`FilterBarrierExec`] above every node whose output has duplicate column names.
#[derive(Debug)]
pub(crate) struct GuardDuplicateNames;

impl PhysicalOptimizerRule for GuardDuplicateNames {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if node.is::<FilterBarrierExec>() {
                return Ok(Transformed::no(node));
            }
            let children = node.children();
            if !children
                .iter()
                .any(|c| has_duplicate_names(c.as_ref()) && !c.is::<FilterBarrierExec>())
            {
                return Ok(Transformed::no(node));
            }
            let guarded: Vec<Arc<dyn ExecutionPlan>> = children
                .into_iter()
                .map(|c| {
                    if has_duplicate_names(c.as_ref()) && !c.is::<FilterBarrierExec>() {
                        Arc::new(FilterBarrierExec {
                            inner: Arc::clone(c),
                        }) as Arc<dyn ExecutionPlan>
                    } else {
                        Arc::clone(c)
                    }
                })
                .collect();
            Ok(Transformed::yes(
                datafusion::physical_plan::execution_plan::replace_children_if_necessary(
                    node, guarded,
                )?,
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "meshql_guard_duplicate_names"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Takes every [`FilterBarrierExec`] out of the plan.
#[derive(Debug)]
pub(crate) struct RemoveFilterBarriers;

impl PhysicalOptimizerRule for RemoveFilterBarriers {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| match node.downcast_ref::<FilterBarrierExec>() {
            Some(b) => Ok(Transformed::yes(Arc::clone(&b.inner))),
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "meshql_remove_filter_barriers"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The statistics of a node that passes its only child's rows through unchanged.
pub(crate) fn same_rows_as_child(
    input_stats: &[Arc<datafusion::common::Statistics>],
    schema: &datafusion::arrow::datatypes::SchemaRef,
) -> Arc<datafusion::common::Statistics> {
    match input_stats.first() {
        Some(s) => Arc::clone(s),
        None => Arc::new(datafusion::common::Statistics::new_unknown(schema)),
    }
}

/// A pass-through node that takes no filter from its parent (the default of
/// `ExecutionPlan::gather_filters_for_pushdown`).
#[derive(Debug)]
pub(crate) struct FilterBarrierExec {
    inner: Arc<dyn ExecutionPlan>,
}

impl DisplayAs for FilterBarrierExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FilterBarrierExec")
    }
}

impl ExecutionPlan for FilterBarrierExec {
    fn name(&self) -> &str {
        "FilterBarrierExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.inner]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn child_stats_requests(
        &self,
        partition: Option<usize>,
    ) -> Vec<datafusion::physical_plan::statistics::ChildStats> {
        vec![datafusion::physical_plan::statistics::ChildStats::At(
            partition,
        )]
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<datafusion::common::Statistics>],
        _args: &datafusion::physical_plan::statistics::StatisticsArgs,
    ) -> Result<Arc<datafusion::common::Statistics>> {
        Ok(same_rows_as_child(input_stats, &self.schema()))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match <[_; 1]>::try_from(children) {
            Ok([inner]) => Ok(Arc::new(Self { inner })),
            Err(c) => Err(DataFusionError::Internal(format!(
                "FilterBarrierExec has one child, got {}",
                c.len()
            ))),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.inner.execute(partition, context)
    }
}
