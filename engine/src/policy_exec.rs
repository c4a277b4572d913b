//! `PolicyExec`: the physical barrier around a product read under policies.
//!
//! It wraps the product's already-optimized inner plan (scan → row filter → masks) as a leaf:
//! optimizer rules outside cannot push user predicates (or join dynamic filters) into it, so a
//! user expression never sees a row a policy hides; statistics are unknown, so answers such as
//! `count(*)` cannot come from file metadata; and EXPLAIN shows only the product's name, never
//! the policy predicates or mask expressions inside. Of the inner plan's properties only its
//! partitioning and output ordering cross the barrier: the constants and equivalences a policy
//! creates (a row filter's `region = 'EU'`, a mask's literal) stay inside.
//!
//! It is public so that distributed execution (the `meshql-cluster` crate) can ship it to a
//! worker with its inner plan: the barrier and the policies travel together or not at all.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::Statistics;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

/// The barrier around one product read under policies (shown as `MeshqlPolicyExec`).
#[derive(Debug)]
pub struct PolicyExec {
    product: String,
    inner: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
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
        }
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
}
