//! `LimitBarrierExec`: keeps a `LIMIT` above Delta's metadata-only scan.
//!
//! deltalake 1.1's `DeltaScanMetaExec` (what a Delta scan becomes when no column is read, e.g.
//! `SELECT 1 FROM sales.orders LIMIT 3`) says it supports limit pushdown but cannot take a
//! fetch; DataFusion's `LimitPushdown` then pushes the limit into it and the limit disappears,
//! so every row came back. The barrier is a pass-through parent that does not support limit
//! pushdown, so the limit stays above it.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

/// The name of the deltalake node that loses limits.
const DELTA_METADATA_SCAN: &str = "DeltaScanMetaExec";

/// Puts a [`LimitBarrierExec`] above every Delta metadata-only scan in `plan`.
pub(crate) fn protect_limits(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        if node.name() == DELTA_METADATA_SCAN {
            Ok(Transformed::yes(
                Arc::new(LimitBarrierExec::new(node)) as Arc<dyn ExecutionPlan>
            ))
        } else {
            Ok(Transformed::no(node))
        }
    })
    .map(|t| t.data)
}

/// The pass-through parent that keeps a `LIMIT` above it. Public so that distributed execution
/// (the `meshql-cluster` crate) can ship it to a worker.
#[derive(Debug)]
pub struct LimitBarrierExec {
    inner: Arc<dyn ExecutionPlan>,
}

impl LimitBarrierExec {
    /// A barrier above `inner`.
    pub fn new(inner: Arc<dyn ExecutionPlan>) -> Self {
        Self { inner }
    }

    /// The node below the barrier.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.inner
    }
}

impl DisplayAs for LimitBarrierExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LimitBarrierExec")
    }
}

impl ExecutionPlan for LimitBarrierExec {
    fn name(&self) -> &str {
        "LimitBarrierExec"
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

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match <[_; 1]>::try_from(children) {
            Ok([inner]) => Ok(Arc::new(Self { inner })),
            Err(c) => Err(DataFusionError::Internal(format!(
                "LimitBarrierExec has one child, got {}",
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
