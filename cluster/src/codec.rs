//! What meshql plan nodes look like on the wire.
//!
//! [`MeshqlCodec`] encodes meshql's own plan nodes:
//!
//! - the policy barrier (`MeshqlPolicyExec`) together with its secured inner plan (the
//!   product's scan wrapper, scan, row filter, masks, contract casts as ordinary DataFusion
//!   nodes and expressions), so a worker runs exactly what the coordinator planned for the
//!   caller: the barrier and its policies travel together or not at all. Decoding refuses
//!   anything incomplete (no inner plan, unknown node kind, unexpected children): a query whose
//!   barrier cannot be rebuilt fails instead of running without its policy;
//! - the transparent product scan wrapper (`MeshqlProductExec`): its product travels, its child
//!   is an ordinary input. On a worker it becomes [`WorkerProductExec`], which reports storage
//!   errors naming the product (see [`crate::product_exec`]);
//! - the `LIMIT` barrier above Delta's metadata-only scan (`LimitBarrierExec`): no payload;
//! - Delta scans, as the arguments of the deltalake `scan` call that made them (see
//!   [`crate::delta`]): on a worker they become [`WorkerDeltaScanExec`].
//!
//! Nodes without a codec never leave the coordinator: the planner keeps any query containing one
//! on the coordinator.

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::PhysicalPlanNode;
use meshql_engine::{LimitBarrierExec, PolicyExec, ProductScanExec};
use prost::Message;

use crate::delta::{DeltaReadProto, DeltaScanShim, WorkerDeltaScanExec};
use crate::product_exec::WorkerProductExec;

/// Kind tag of an encoded policy barrier (versioned: a worker of another version refuses it).
const POLICY_KIND: &str = "meshql.policy.v1";
/// Kind tag of an encoded product scan wrapper.
const PRODUCT_KIND: &str = "meshql.product.v1";
/// Kind tag of an encoded `LIMIT` barrier.
const LIMIT_BARRIER_KIND: &str = "meshql.limit_barrier.v1";
/// Kind tag of an encoded Delta scan (the arguments of deltalake's `scan`).
const DELTA_KIND: &str = "meshql.delta.v1";

#[derive(Clone, PartialEq, prost::Message)]
struct MeshqlNodeProto {
    #[prost(string, tag = "1")]
    kind: String,
    #[prost(string, tag = "2")]
    product: String,
    #[prost(message, optional, tag = "3")]
    inner: Option<PhysicalPlanNode>,
    #[prost(message, optional, tag = "4")]
    delta: Option<DeltaReadProto>,
}

/// The physical extension codec of meshql's own plan nodes.
#[derive(Debug, Default, Clone, Copy)]
pub struct MeshqlCodec;

impl PhysicalExtensionCodec for MeshqlCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let node = MeshqlNodeProto::decode(buf)
            .map_err(|e| refuse(format!("not a meshql plan node ({e})")))?;
        match node.kind.as_str() {
            POLICY_KIND => decode_policy(node, inputs, ctx, self, proto_converter),
            PRODUCT_KIND => {
                let input = single_input(inputs, "a product scan")?;
                if node.product.is_empty() || node.inner.is_some() || node.delta.is_some() {
                    return Err(refuse("a malformed product scan".to_string()));
                }
                Ok(Arc::new(WorkerProductExec::new(node.product, input)))
            }
            LIMIT_BARRIER_KIND => {
                let input = single_input(inputs, "a limit barrier")?;
                if !node.product.is_empty() || node.inner.is_some() || node.delta.is_some() {
                    return Err(refuse("a malformed limit barrier".to_string()));
                }
                Ok(Arc::new(LimitBarrierExec::new(input)))
            }
            DELTA_KIND => {
                let Some(read) = &node.delta else {
                    return Err(refuse("a Delta scan without its read".to_string()));
                };
                Ok(Arc::new(WorkerDeltaScanExec::try_new(read, inputs, ctx)?))
            }
            other => Err(refuse(format!("unknown meshql plan node `{other}`"))),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let proto = if let Some(policy) = node.downcast_ref::<PolicyExec>() {
            let inner = proto_converter.execution_plan_to_proto(policy.inner(), self)?;
            MeshqlNodeProto {
                kind: POLICY_KIND.to_string(),
                product: policy.product().to_string(),
                inner: Some(inner),
                delta: None,
            }
        } else if let Some(product) = node.downcast_ref::<ProductScanExec>() {
            product_proto(product.product())
        } else if let Some(product) = node.downcast_ref::<WorkerProductExec>() {
            product_proto(product.product())
        } else if node.downcast_ref::<LimitBarrierExec>().is_some() {
            MeshqlNodeProto {
                kind: LIMIT_BARRIER_KIND.to_string(),
                product: String::new(),
                inner: None,
                delta: None,
            }
        } else if let Some(delta) = node.downcast_ref::<DeltaScanShim>() {
            MeshqlNodeProto {
                kind: DELTA_KIND.to_string(),
                product: String::new(),
                inner: None,
                delta: Some(delta.to_proto()?),
            }
        } else {
            return Err(DataFusionError::NotImplemented(format!(
                "{} cannot be sent to a cluster worker",
                node.name()
            )));
        };
        proto
            .encode(buf)
            .map_err(|e| DataFusionError::Internal(format!("encoding {}: {e}", node.name())))
    }
}

fn product_proto(product: &str) -> MeshqlNodeProto {
    MeshqlNodeProto {
        kind: PRODUCT_KIND.to_string(),
        product: product.to_string(),
        inner: None,
        delta: None,
    }
}

fn decode_policy(
    node: MeshqlNodeProto,
    inputs: &[Arc<dyn ExecutionPlan>],
    ctx: &TaskContext,
    codec: &MeshqlCodec,
    proto_converter: &dyn PhysicalProtoConverterExtension,
) -> Result<Arc<dyn ExecutionPlan>> {
    if !inputs.is_empty() {
        return Err(refuse("a policy barrier has no children".to_string()));
    }
    let Some(inner) = node.inner else {
        return Err(refuse(format!(
            "the policy barrier of `{}` arrived without its secured plan",
            node.product
        )));
    };
    if node.product.is_empty() {
        return Err(refuse("a policy barrier without its product".to_string()));
    }
    let decode_ctx = PhysicalPlanDecodeContext::new(ctx, codec);
    let inner = proto_converter.proto_to_execution_plan(&inner, &decode_ctx)?;
    Ok(Arc::new(PolicyExec::new(node.product, inner)))
}

fn single_input(inputs: &[Arc<dyn ExecutionPlan>], what: &str) -> Result<Arc<dyn ExecutionPlan>> {
    match inputs {
        [input] => Ok(Arc::clone(input)),
        _ => Err(refuse(format!(
            "{what} has one child, got {}",
            inputs.len()
        ))),
    }
}

fn refuse(message: String) -> DataFusionError {
    DataFusionError::Plan(format!("refusing a plan fragment: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion::prelude::SessionContext;
    use datafusion_proto::physical_plan::DefaultPhysicalProtoConverter;

    fn decode(
        node: MeshqlNodeProto,
        inputs: &[Arc<dyn ExecutionPlan>],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let ctx = SessionContext::new().task_ctx();
        MeshqlCodec.try_decode(
            &node.encode_to_vec(),
            inputs,
            &ctx,
            &DefaultPhysicalProtoConverter {},
        )
    }

    fn node(kind: &str, product: &str) -> MeshqlNodeProto {
        MeshqlNodeProto {
            kind: kind.to_string(),
            product: product.to_string(),
            inner: None,
            delta: None,
        }
    }

    #[test]
    fn malformed_nodes_are_refused_not_guessed() {
        let child: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(Arc::new(
            datafusion::arrow::datatypes::Schema::empty(),
        )));
        let two = [Arc::clone(&child), Arc::clone(&child)];
        let mut garbage = DeltaReadProto::default();
        garbage.provider = b"{not a table".to_vec();
        let cases: Vec<(MeshqlNodeProto, &[Arc<dyn ExecutionPlan>])> = vec![
            (node("meshql.policy.v0", "sales.orders"), &[]),
            (node(POLICY_KIND, "sales.orders"), &[]),
            (
                node(POLICY_KIND, "sales.orders"),
                std::slice::from_ref(&child),
            ),
            (node(PRODUCT_KIND, ""), std::slice::from_ref(&child)),
            (node(PRODUCT_KIND, "sales.orders"), &[]),
            (node(PRODUCT_KIND, "sales.orders"), &two),
            (node(LIMIT_BARRIER_KIND, ""), &[]),
            (node(DELTA_KIND, ""), &[]),
            (
                MeshqlNodeProto {
                    delta: Some(garbage),
                    ..node(DELTA_KIND, "")
                },
                &[],
            ),
        ];
        for (n, inputs) in cases {
            let what = format!("{n:?} with {} inputs", inputs.len());
            match decode(n, inputs) {
                Err(DataFusionError::Plan(m)) => {
                    assert!(m.starts_with("refusing a plan fragment"), "{what}: {m}")
                }
                other => panic!("{what}: {other:?}"),
            }
        }
        // Bytes that are not a meshql node at all.
        let ctx = SessionContext::new().task_ctx();
        let err = MeshqlCodec
            .try_decode(
                &[0xff, 0xff, 0xff],
                &[],
                &ctx,
                &DefaultPhysicalProtoConverter {},
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("refusing a plan fragment"),
            "{err}"
        );
    }
}
