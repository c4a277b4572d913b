//! `PolicyExec`: the physical barrier around a product read under policies.
//!
//! It wraps the product's already-optimized inner plan (scan → row filter → masks) as a leaf:
//! optimizer rules outside cannot push user predicates into it, so a user expression never sees
//! a row a policy hides; of the statistics only the *estimated* row count and size of what the
//! product reads before its row filter cross it (marked inexact, and no column statistics), so
//! that join planning picks sensible build sides while answers such as `count(*)` or `min(x)`
//! can never come from file metadata; and EXPLAIN
//! shows only the product's name, never the policy predicates or mask expressions inside. Of the
//! inner plan's properties only its partitioning and output ordering cross the barrier: the
//! constants and equivalences a policy creates (a row filter's `region = 'EU'`, a mask's
//! literal) stay inside.
//!
//! One kind of filter does cross it: the *runtime filters* a hash join builds from its other
//! side (`DynamicFilterPhysicalExpr`: bounds and a hash-set probe of the join keys, no user
//! expression), when every column they read is one the policies pass through unmasked. They are
//! evaluated on the inner plan's output, above the policy's row filter, so the policy still
//! decides first which rows exist (they do not reach the Parquet scan below the product's own
//! plan node). A join key that is masked never gets one (the filter would compare against the
//! real values, not the masked ones the query joins on). `apply_expressions` shows plan
//! traversals those filters and nothing else: a hash join fills its runtime filter only when it
//! finds a consumer on its probe side.
//!
//! It is public so that distributed execution (the `meshql-cluster` crate) can ship it to a
//! worker with its inner plan: the barrier and the policies travel together or not at all.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::Statistics;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{conjunction, EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::filter_pushdown::FilterPushdown;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterPushdownPhase, FilterPushdownPropagation, PushedDown,
};
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

/// The barrier around one product read under policies (shown as `MeshqlPolicyExec`).
#[derive(Debug)]
pub struct PolicyExec {
    product: String,
    inner: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
    /// Output columns (by index) the policies pass through unmasked: runtime filters on these
    /// alone may enter the inner plan.
    clear: Vec<usize>,
    /// The runtime filters let into the inner plan. They are the only expressions this node
    /// shows to plan traversals (`apply_expressions`): a hash join fills its runtime filter only
    /// when it finds a consumer of it on its probe side, and would otherwise leave it empty.
    runtime: Vec<Arc<dyn PhysicalExpr>>,
}

impl PolicyExec {
    /// Wraps `inner`, the product's secured plan (scan, row filter, masks).
    pub fn new(product: String, inner: Arc<dyn ExecutionPlan>) -> Self {
        // Not the inner equivalence properties: besides describing the policies, a constant
        // advertised by this leaf (a masked column) let EnforceSorting skip a sort that
        // SanityCheckPlan then required above a join, so an ordered aggregate over a masked
        // column after a join failed to plan.
        let ordering = inner.properties().output_ordering().cloned();
        let equivalence = EquivalenceProperties::new_with_orderings(inner.schema(), ordering);
        let properties = Arc::new(
            inner
                .properties()
                .as_ref()
                .clone()
                .with_eq_properties(equivalence),
        );
        Self {
            product,
            inner,
            properties,
            clear: Vec::new(),
            runtime: Vec::new(),
        }
    }

    /// Declares which output columns (by index) the policies pass through unmasked.
    pub fn with_clear_columns(mut self, clear: Vec<usize>) -> Self {
        self.clear = clear;
        self
    }

    /// The runtime filters among `filters` that may enter the inner plan.
    fn runtime_filters_on_clear_columns(
        &self,
        filters: impl Iterator<Item = Arc<dyn PhysicalExpr>>,
    ) -> Vec<Arc<dyn PhysicalExpr>> {
        filters
            .filter(|f| {
                let any: &dyn std::any::Any = f.as_ref();
                any.is::<DynamicFilterPhysicalExpr>()
                    && collect_columns(f)
                        .iter()
                        .all(|c| self.clear.contains(&c.index()))
            })
            .collect()
    }

    /// The product this barrier protects (`domain.product`).
    pub fn product(&self) -> &str {
        &self.product
    }

    /// The secured plan inside the barrier. Never shown to clients.
    pub fn inner(&self) -> &Arc<dyn ExecutionPlan> {
        &self.inner
    }
}

impl DisplayAs for PolicyExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MeshqlPolicyExec: product={} (access policies applied)",
            self.product
        )
    }
}

impl ExecutionPlan for PolicyExec {
    fn name(&self) -> &str {
        "MeshqlPolicyExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        // A leaf on purpose: nothing outside may rewrite or look into the secured plan.
        vec![]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        // Only the runtime filters (built by the engine from a join's other side): never a
        // policy predicate or a mask.
        for filter in &self.runtime {
            if f(filter)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.inner.execute(partition, context)
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        // A leaf to the planner: the inner plan's statistics are computed here, in their own
        // context, and only what `policed_statistics` lets through leaves. The size is the
        // one read *before* the row filter (see `unfiltered`).
        let source = unfiltered(&self.inner);
        // Per-partition figures only where the partitions are the same ones (a repartition
        // above the row filter would number them differently): else the whole product's.
        let same_partitions = source.properties().partitioning.partition_count()
            == self.properties.partitioning.partition_count();
        let args =
            StatisticsArgs::new().with_partition(args.partition().filter(|_| same_partitions));
        // An estimate is advice: if it cannot be had, the planner goes without it.
        Ok(
            match StatisticsContext::new().compute(source.as_ref(), &args) {
                Ok(inner) => policed_statistics(&inner, &self.schema()),
                Err(_) => Arc::new(Statistics::new_unknown(&self.schema())),
            },
        )
    }

    fn handle_child_pushdown_result(
        &self,
        phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        // Every parent filter stays where it is (nothing is absorbed here).
        let kept = FilterPushdownPropagation::with_parent_pushdown_result(vec![
            PushedDown::No;
            child_pushdown_result.parent_filters.len()
        ]);
        if phase != FilterPushdownPhase::Post {
            return Ok(kept);
        }
        let runtime = self.runtime_filters_on_clear_columns(
            child_pushdown_result
                .parent_filters
                .iter()
                .map(|f| Arc::clone(&f.filter)),
        );
        if runtime.is_empty() {
            return Ok(kept);
        }
        // Above the inner plan (the policies' output has the same columns). DataFusion's own
        // rule then pushes it as far as it goes; in practice it stays above the product's plan
        // node, so it is evaluated after the row filter and not inside the Parquet scan.
        let filtered = Arc::new(FilterExec::try_new(
            conjunction(runtime.iter().cloned()),
            Arc::clone(&self.inner),
        )?);
        let inner = FilterPushdown::new_post_optimization().optimize(filtered, config)?;
        Ok(kept.with_updated_node(Arc::new(Self {
            product: self.product.clone(),
            inner,
            properties: Arc::clone(&self.properties),
            clear: self.clear.clone(),
            runtime: self.runtime.iter().cloned().chain(runtime).collect(),
        })))
    }
}

/// The part of a secured plan under its row filter (the input of its first `FilterExec`), or
/// the plan itself when it has none. The barrier estimates its size from there, as if the
/// policy passed every row: DataFusion cannot know a policy's selectivity (it would guess a
/// fixed fraction, or derive one from the hidden rows' statistics), so the plan's shape then
/// depends on the product's size alone, the same for every principal, and never on how many
/// rows a policy hides. Masks and projections do not change the number of rows.
fn unfiltered(plan: &Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    let mut node = Arc::clone(plan);
    loop {
        let child = match node.children().as_slice() {
            [only] => Arc::clone(only),
            _ => return Arc::clone(plan),
        };
        let any: &dyn std::any::Any = node.as_ref();
        if any.is::<FilterExec>() {
            return child;
        }
        node = child;
    }
}

/// What a policy barrier tells the planner of `inner`'s statistics: the estimated row count and
/// size, always inexact (an exact count would let an aggregate answer from metadata, which
/// knows nothing of the row filter), and nothing about columns (a masked column's bounds are
/// real values; a row filter's are the hidden rows' too).
fn policed_statistics(inner: &Statistics, schema: &SchemaRef) -> Arc<Statistics> {
    let mut stats = Statistics::new_unknown(schema);
    stats.num_rows = inner.num_rows.to_inexact();
    // A Delta scan's size is its files' whole size, not the columns read (see `scan`).
    if !crate::scan::whole_file_size(inner) {
        stats.total_byte_size = inner.total_byte_size.to_inexact();
    }
    Arc::new(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::stats::Precision;
    use datafusion::common::{ColumnStatistics, ScalarValue};

    #[test]
    fn only_inexact_sizes_cross_the_barrier() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "salary",
            DataType::Int64,
            true,
        )]));
        let inner = Statistics {
            num_rows: Precision::Exact(1000),
            total_byte_size: Precision::Exact(8000),
            column_statistics: vec![ColumnStatistics {
                null_count: Precision::Exact(3),
                max_value: Precision::Exact(ScalarValue::Int64(Some(250_000))),
                min_value: Precision::Exact(ScalarValue::Int64(Some(12_000))),
                sum_value: Precision::Exact(ScalarValue::Int64(Some(9_000_000))),
                distinct_count: Precision::Exact(900),
                byte_size: Precision::Exact(8000),
            }],
        };
        let seen = policed_statistics(&inner, &schema);
        assert_eq!(seen.num_rows, Precision::Inexact(1000));
        assert_eq!(seen.total_byte_size, Precision::Inexact(8000));
        assert_eq!(
            seen.column_statistics,
            vec![ColumnStatistics::new_unknown()]
        );
        // Unknown stays unknown.
        let unknown = policed_statistics(&Statistics::new_unknown(&schema), &schema);
        assert_eq!(unknown.num_rows, Precision::Absent);
        // A size no column accounts for (a Delta scan's: its files' whole size) does not
        // cross; the row count does.
        let whole_files = Statistics {
            num_rows: Precision::Exact(1000),
            total_byte_size: Precision::Exact(1_000_000),
            column_statistics: vec![ColumnStatistics::new_unknown()],
        };
        let seen = policed_statistics(&whole_files, &schema);
        assert_eq!(seen.num_rows, Precision::Inexact(1000));
        assert_eq!(seen.total_byte_size, Precision::Absent);
    }

    #[test]
    fn the_size_is_the_one_under_the_row_filter() {
        use datafusion::arrow::array::Int64Array;
        use datafusion::arrow::record_batch::RecordBatch;
        use datafusion::datasource::memory::MemorySourceConfig;
        use datafusion::logical_expr::Operator;
        use datafusion::physical_expr::expressions::{binary, col, lit};

        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from_iter_values(0..1000))],
        )
        .unwrap();
        let source =
            MemorySourceConfig::try_new_exec(&[vec![batch]], Arc::clone(&schema), None).unwrap();
        // A row filter keeping 1% of the rows.
        let predicate = binary(
            col("x", &schema).unwrap(),
            Operator::Lt,
            lit(10i64),
            &schema,
        )
        .unwrap();
        let filtered: Arc<dyn ExecutionPlan> =
            Arc::new(FilterExec::try_new(predicate, source).unwrap());
        let barrier = PolicyExec::new("a.b".into(), filtered);
        let seen = StatisticsContext::new()
            .compute(&barrier, &StatisticsArgs::default())
            .unwrap();
        assert_eq!(seen.num_rows, Precision::Inexact(1000));
        assert_eq!(
            seen.column_statistics,
            vec![ColumnStatistics::new_unknown()]
        );

        // Repartitioned above the row filter: a partition of the barrier is not one of the
        // scan's, so each gets the whole product's estimate (and planning does not fail).
        let repartitioned: Arc<dyn ExecutionPlan> = Arc::new(
            datafusion::physical_plan::repartition::RepartitionExec::try_new(
                Arc::clone(barrier.inner()),
                datafusion::physical_plan::Partitioning::RoundRobinBatch(4),
            )
            .unwrap(),
        );
        let barrier = PolicyExec::new("a.b".into(), repartitioned);
        for partition in 0..4 {
            let seen = StatisticsContext::new()
                .compute(
                    &barrier,
                    &StatisticsArgs::new().with_partition(Some(partition)),
                )
                .unwrap();
            assert_eq!(seen.num_rows, Precision::Inexact(1000));
        }
    }
}
