//! `PolicyExec`: the physical barrier around a product read under policies.
//!
//! It wraps the product's already-optimized inner plan (scan → row filter → masks) as a leaf:
//! optimizer rules outside cannot push user predicates into it, so a user expression never sees
//! a row a policy hides; statistics are unknown, so answers such as
//! `count(*)` cannot come from file metadata; and EXPLAIN shows only the product's name, never
//! the policy predicates or mask expressions inside. Of the inner plan's properties only its
//! partitioning and output ordering cross the barrier: the constants and equivalences a policy
//! creates (a row filter's `region = 'EU'`, a mask's literal) stay inside.
//!
//! One kind of filter does cross it: the *runtime filters* a hash join builds from its other
//! side (`DynamicFilterPhysicalExpr`: bounds and a hash-set probe of the join keys, no user
//! expression), when every column they read is one the policies pass through unmasked. They go
//! into the inner plan under the policies: the scan uses them to skip files, row groups and pages
//! by statistics, and they are evaluated on rows only above the policy's row filter, so the
//! policy still decides first which rows exist. A join key that is masked never gets one (the
//! filter would compare against the real values, not the masked ones the query joins on).
//!
//! It is public so that distributed execution (the `meshql-cluster` crate) can ship it to a
//! worker with its inner plan: the barrier and the policies travel together or not at all.

use std::fmt;
use std::sync::Arc;

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
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
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

    fn partition_statistics(&self, _partition: Option<usize>) -> Result<Arc<Statistics>> {
        Ok(Arc::new(Statistics::new_unknown(&self.schema())))
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
        // Above the inner plan (the policies' output has the same columns), then pushed down
        // through the masks and the row filter into the scan by DataFusion's own rule.
        let filtered = Arc::new(FilterExec::try_new(
            conjunction(runtime),
            Arc::clone(&self.inner),
        )?);
        let inner = FilterPushdown::new_post_optimization().optimize(filtered, config)?;
        Ok(kept.with_updated_node(Arc::new(Self {
            product: self.product.clone(),
            inner,
            properties: Arc::clone(&self.properties),
            clear: self.clear.clone(),
        })))
    }
}
