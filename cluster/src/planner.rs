//! Planning on the coordinator: meshql plans the query for the caller exactly as on a single
//! node (policies compiled, `MeshqlPolicyExec` barriers in place), then datafusion-distributed
//! splits the physical plan into stages for the workers.
//!
//! - Only the query's top-level plan is distributed. Product reads plan their own inner plans
//!   while the query is planned (a secured read's scan, filter and masks sit inside its barrier);
//!   those nested plannings stay local, so a barrier never hides a distributed sub-query.
//! - Delta scans are prepared to travel (see [`crate::delta`]). A plan that still cannot travel
//!   (a node without a codec) runs entirely on the coordinator, as do all queries while fewer
//!   than two workers are up.
//! - A distributed query is wrapped in [`ClusterExec`], which names the worker behind a failure
//!   (`EngineError::WorkerUnavailable`).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::analyze::AnalyzeExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::SessionConfig;
use datafusion_distributed::DistributedCodec;
use datafusion_proto::bytes::physical_plan_to_bytes_with_proto_converter;
use datafusion_proto::physical_plan::DeduplicatingProtoConverter;
use futures::StreamExt;
use meshql_engine::WorkersUsed;

use crate::pool::WorkerPool;

tokio::task_local! {
    /// Set while a query's top-level plan is being planned: nested plannings stay local.
    static PLANNING: ();
    /// The local plan handed to datafusion-distributed's planner (see [`Precomputed`]).
    static LOCAL_PLAN: Arc<dyn ExecutionPlan>;
}

/// The query planner of a coordinator's sessions.
#[derive(Debug)]
pub(crate) struct MeshqlQueryPlanner {
    /// datafusion-distributed's planner, whose inner planner is [`Precomputed`].
    pub(crate) distributed: Arc<dyn QueryPlanner + Send + Sync>,
    pub(crate) pool: Arc<WorkerPool>,
}

#[async_trait]
impl QueryPlanner for MeshqlQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let local_planner = DefaultPhysicalPlanner::default();
        if PLANNING.try_with(|_| ()).is_ok() {
            return local_planner
                .create_physical_plan(logical_plan, session)
                .await;
        }
        let local = PLANNING
            .scope(
                (),
                local_planner.create_physical_plan(logical_plan, session),
            )
            .await?;
        if self.pool.up().len() < 2 {
            // datafusion-distributed gives every stage at most one task per worker, and a stage
            // of one task under a one-task consumer is not worth a network hop: with fewer than
            // two workers up it would keep the plan local anyway.
            tracing::debug!(
                "fewer than two cluster workers are up: the query runs on the coordinator"
            );
            return Ok(local);
        }
        // Delta scans travel as the arguments of the deltalake call that made them.
        let prepared = crate::delta::prepare(Arc::clone(&local), session)?;
        if let Some(why) = cannot_travel(&prepared, session.config()) {
            tracing::debug!(reason = %why, "the plan cannot travel: the query runs on the coordinator");
            return Ok(local);
        }
        let planned = LOCAL_PLAN
            .scope(
                Arc::clone(&prepared),
                self.distributed.create_physical_plan(logical_plan, session),
            )
            .await?;
        if Arc::ptr_eq(&planned, &prepared) {
            // datafusion-distributed found nothing worth distributing.
            return Ok(local);
        }
        Ok(Arc::new(ClusterExec {
            inner: planned,
            pool: Arc::clone(&self.pool),
        }))
    }
}

/// Why `plan` cannot be sent to workers (a node without a codec), if it cannot.
fn cannot_travel(plan: &Arc<dyn ExecutionPlan>, config: &SessionConfig) -> Option<String> {
    let plan = match plan.downcast_ref::<AnalyzeExec>() {
        Some(analyze) => Arc::clone(analyze.input()),
        None => Arc::clone(plan),
    };
    let codec = DistributedCodec::new_combined_with_user(config);
    physical_plan_to_bytes_with_proto_converter(
        plan,
        &codec,
        &DeduplicatingProtoConverter::default(),
    )
    .err()
    .map(|e| e.to_string())
}

/// The planner datafusion-distributed wraps: it returns the local plan meshql already made.
#[derive(Debug)]
pub(crate) struct Precomputed;

#[async_trait]
impl QueryPlanner for Precomputed {
    async fn create_physical_plan(
        &self,
        _logical_plan: &LogicalPlan,
        _session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        LOCAL_PLAN.try_with(Arc::clone).map_err(|_| {
            DataFusionError::Internal("distributed planning without a local plan".to_string())
        })
    }
}

/// The state of a distributed query's result stream: ends after the first error.
struct Failing {
    inner: Option<SendableRecordBatchStream>,
    pool: Arc<WorkerPool>,
    used: Option<Arc<WorkersUsed>>,
}

/// The root of a distributed query on the coordinator: names the worker behind a failure.
#[derive(Debug)]
pub(crate) struct ClusterExec {
    inner: Arc<dyn ExecutionPlan>,
    pool: Arc<WorkerPool>,
}

impl DisplayAs for ClusterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeshqlClusterExec")
    }
}

impl ExecutionPlan for ClusterExec {
    fn name(&self) -> &str {
        "MeshqlClusterExec"
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

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(inner), true) => Ok(Arc::new(ClusterExec {
                inner,
                pool: Arc::clone(&self.pool),
            })),
            _ => Err(DataFusionError::Internal(
                "MeshqlClusterExec has exactly one child".to_string(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let used = context.session_config().get_extension::<WorkersUsed>();
        let stream = self.inner.execute(partition, context)?;
        let schema = stream.schema();
        let state = Failing {
            inner: Some(stream),
            pool: Arc::clone(&self.pool),
            used,
        };
        let stream = futures::stream::unfold(state, |mut state| async move {
            let inner = state.inner.as_mut()?;
            match inner.next().await {
                None => None,
                Some(Ok(batch)) => Some((Ok(batch), state)),
                Some(Err(e)) => {
                    // Cancel the query everywhere first (dropping the stream ends every task
                    // on every worker), so the workers that are fine answer the health check.
                    state.inner = None;
                    let e = crate::product_exec::restore(e);
                    let e = state.pool.attribute(e, state.used.as_deref()).await;
                    Some((Err(e), state))
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}
