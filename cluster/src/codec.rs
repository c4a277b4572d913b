//! What meshql plan nodes look like on the wire.
//!
//! [`MeshqlCodec`] encodes the policy barrier (`MeshqlPolicyExec`) together with its secured
//! inner plan (scan, row filter, masks, contract casts as ordinary DataFusion nodes and
//! expressions), so a worker runs exactly what the coordinator planned for the caller: the
//! barrier and its policies travel together or not at all. Decoding refuses anything
//! incomplete (no inner plan, unknown node kind, unexpected children): a query whose barrier
//! cannot be rebuilt fails instead of running without its policy.
//!
//! Nodes without a codec (deltalake 1.1's `DeltaScanExec` has none; see docs/cluster.md) never
//! leave the coordinator: the planner keeps any query containing one on the coordinator.

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::PhysicalPlanNode;
use meshql_engine::PolicyExec;
use prost::Message;

/// Kind tag of an encoded policy barrier (versioned: a worker of another version refuses it).
const POLICY_KIND: &str = "meshql.policy.v1";

#[derive(Clone, PartialEq, prost::Message)]
struct MeshqlNodeProto {
    #[prost(string, tag = "1")]
    kind: String,
    #[prost(string, tag = "2")]
    product: String,
    #[prost(message, optional, tag = "3")]
    inner: Option<PhysicalPlanNode>,
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
        if node.kind != POLICY_KIND {
            return Err(refuse(format!("unknown meshql plan node `{}`", node.kind)));
        }
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
        let decode_ctx = PhysicalPlanDecodeContext::new(ctx, self);
        let inner = proto_converter.proto_to_execution_plan(&inner, &decode_ctx)?;
        Ok(Arc::new(PolicyExec::new(node.product, inner)))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let Some(policy) = node.downcast_ref::<PolicyExec>() else {
            return Err(DataFusionError::NotImplemented(format!(
                "{} cannot be sent to a cluster worker",
                node.name()
            )));
        };
        let inner = proto_converter.execution_plan_to_proto(policy.inner(), self)?;
        MeshqlNodeProto {
            kind: POLICY_KIND.to_string(),
            product: policy.product().to_string(),
            inner: Some(inner),
        }
        .encode(buf)
        .map_err(|e| DataFusionError::Internal(format!("encoding a policy barrier: {e}")))
    }
}

fn refuse(message: String) -> DataFusionError {
    DataFusionError::Plan(format!("refusing a plan fragment: {message}"))
}
