//! A product's scan wrapper as it runs on a worker, and how its errors cross the wire.
//!
//! On a single node, `MeshqlProductExec` (the engine's `ProductScanExec`) turns a storage error
//! into `EngineError::ProductUnavailable` naming the product. Errors leave a worker through
//! datafusion-distributed's error encoding, which keeps DataFusion's own error kinds but turns
//! any other error (such as an `EngineError`) into plain text, so the product and the error's
//! kind would be lost. On a worker the wrapper is therefore decoded as [`WorkerProductExec`],
//! which attaches the product in a form that survives the trip — a `DataFusionError::Context`
//! whose context is [`PRODUCT_UNAVAILABLE`] followed by the product, around the caller-facing
//! message — and the coordinator's [`restore`] turns it back into `ProductUnavailable`, so the
//! client sees the same error as on a single node.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;
use meshql_engine::{attach_product, EngineError};

/// Context of a product's storage error on its way from a worker to the coordinator.
pub(crate) const PRODUCT_UNAVAILABLE: &str = "meshql.product_unavailable:";

/// `MeshqlProductExec` on a worker: the same pass-through node, whose storage errors travel
/// back to the coordinator naming the product.
#[derive(Debug)]
pub(crate) struct WorkerProductExec {
    product: String,
    input: Arc<dyn ExecutionPlan>,
}

impl WorkerProductExec {
    pub(crate) fn new(product: String, input: Arc<dyn ExecutionPlan>) -> Self {
        Self { product, input }
    }

    pub(crate) fn product(&self) -> &str {
        &self.product
    }
}

impl DisplayAs for WorkerProductExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeshqlProductExec: product={}", self.product)
    }
}

impl ExecutionPlan for WorkerProductExec {
    fn name(&self) -> &str {
        "MeshqlProductExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match <[_; 1]>::try_from(children) {
            Ok([input]) => Ok(Arc::new(Self {
                product: self.product.clone(),
                input,
            })),
            Err(c) => Err(DataFusionError::Internal(format!(
                "MeshqlProductExec has one child, got {}",
                c.len()
            ))),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let product = self.product.clone();
        let stream = self
            .input
            .execute(partition, context)
            .map_err(|e| to_wire(&product, e))?;
        let schema = stream.schema();
        let mapped = stream.map(move |r| r.map_err(|e| to_wire(&product, e)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, mapped)))
    }
}

/// A storage error of `product`, as the worker sends it; anything else unchanged.
fn to_wire(product: &str, e: DataFusionError) -> DataFusionError {
    match attach_product(product, e) {
        DataFusionError::External(inner) => match inner.downcast::<EngineError>() {
            Ok(engine) => match *engine {
                EngineError::ProductUnavailable {
                    product,
                    message,
                    source,
                } => {
                    // The full cause stays in the worker's log; the coordinator gets the
                    // caller-facing message.
                    tracing::warn!(%product, error = %source, "a product's storage failed on this worker");
                    DataFusionError::Context(
                        format!("{PRODUCT_UNAVAILABLE}{product}"),
                        Box::new(DataFusionError::Execution(message)),
                    )
                }
                other => DataFusionError::External(Box::new(other)),
            },
            Err(inner) => DataFusionError::External(inner),
        },
        other => other,
    }
}

/// On the coordinator: a product's storage error reported by a worker becomes
/// `ProductUnavailable` again (with the received error as its source); anything else unchanged.
pub(crate) fn restore(e: DataFusionError) -> DataFusionError {
    match product_unavailable(&e) {
        Some((product, message)) => {
            DataFusionError::External(Box::new(EngineError::ProductUnavailable {
                product,
                message,
                source: Box::new(e),
            }))
        }
        None => e,
    }
}

/// The product and message of a worker's product storage error inside `e`, if any.
fn product_unavailable(e: &DataFusionError) -> Option<(String, String)> {
    match e {
        DataFusionError::Context(ctx, inner) => match ctx.strip_prefix(PRODUCT_UNAVAILABLE) {
            Some(product) => Some((
                product.to_string(),
                match inner.as_ref() {
                    DataFusionError::Execution(message) => message.clone(),
                    other => other.to_string(),
                },
            )),
            None => product_unavailable(inner),
        },
        DataFusionError::Diagnostic(_, inner) => product_unavailable(inner),
        DataFusionError::Shared(inner) => product_unavailable(inner),
        DataFusionError::Collection(errors) => errors.first().and_then(product_unavailable),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_error_crosses_the_wire_naming_its_product() {
        let storage = DataFusionError::IoError(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "orders/part-0.parquet: no such file",
        ));
        let wire = to_wire("sales.orders", storage);
        assert!(
            matches!(&wire, DataFusionError::Context(ctx, _) if ctx == "meshql.product_unavailable:sales.orders"),
            "{wire:?}"
        );
        // What datafusion-distributed may wrap it in on the coordinator.
        let received = DataFusionError::Shared(Arc::new(wire));
        let restored = EngineError::from_datafusion(restore(received));
        match restored {
            EngineError::ProductUnavailable {
                product, message, ..
            } => {
                assert_eq!(product, "sales.orders");
                assert!(message.contains("part-0.parquet"), "{message}");
                assert!(!message.starts_with("IO error"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_errors_pass_unchanged() {
        let e = to_wire(
            "sales.orders",
            DataFusionError::Execution("division by zero".to_string()),
        );
        assert!(matches!(&e, DataFusionError::Execution(m) if m == "division by zero"));
        let e = restore(e);
        assert!(matches!(&e, DataFusionError::Execution(m) if m == "division by zero"));
        // A context of someone else's is not ours.
        let e = restore(DataFusionError::Context(
            "meshql.other:x".to_string(),
            Box::new(DataFusionError::Execution("boom".to_string())),
        ));
        assert!(matches!(e, DataFusionError::Context(..)));
    }
}
