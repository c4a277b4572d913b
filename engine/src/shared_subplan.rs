//! Repeated aggregations computed once per query: a CTE or view read twice, such as TPC-H Q15's
//! `revenue0` (once joined to the suppliers, once under `max(...)`), is planned by DataFusion as
//! two copies of the same sub-plan, and each copy scanned `lineitem` again.
//!
//! [`MeshqlQueryPlanner`] looks at the optimized logical plan of every query before it is
//! planned physically. An aggregation sub-tree that occurs at least twice (`LogicalPlan`
//! equality, which compares every expression, table name, projection and pushed-down filter)
//! and reads at least one table is wrapped, at each occurrence, in a [`SharedSubplanNode`]
//! carrying one id. After physical planning (and DataFusion's physical optimizer) the
//! [`SharedSubplanExec`]s of one id are linked: they read one copy of the input through one
//! [`SharedResult`], which executes it once, keeps every partition's batches (reserved in the
//! query's memory pool), and hands each consumer its partition.
//!
//! What is not shared:
//! - a sub-tree with a volatile expression (`random()`): each use must draw its own values;
//! - a sub-tree that refers to an outer query's columns, and any plan with a recursive CTE (the
//!   recursive term runs again for every iteration, over a new work table);
//! - occurrences whose physical plans came out different (compared by their full display):
//!   each then runs on its own, as before;
//! - a result larger than a quarter of the query's memory share (`query_memory_limit`), or
//!   than what the query's pool still grants: the materialization is given up and every
//!   consumer runs the input itself.
//!
//! A shared node accepts no filter, limit or projection from above, so what one consumer asks
//! (a join's runtime filter) never narrows what another one reads. Sharing is a meshql planner
//! choice: a session whose hook installs another query planner (the cluster coordinator) plans
//! every use on its own, as DataFusion does.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchemaRef, DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryLimit, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    displayable, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::OnceCell;

/// meshql's query planner: DataFusion's, with repeated aggregations shared (see the module).
#[derive(Debug, Default)]
pub(crate) struct MeshqlQueryPlanner;

#[async_trait]
impl QueryPlanner for MeshqlQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let planner =
            DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(SharedSubplanPlanner)]);
        match mark_repeated(logical_plan)? {
            Some(marked) => link(planner.create_physical_plan(&marked, session).await?),
            None => planner.create_physical_plan(logical_plan, session).await,
        }
    }
}

/// Whether `plan` may be computed once for all its occurrences in a query.
fn shareable(plan: &LogicalPlan) -> bool {
    if !matches!(plan, LogicalPlan::Aggregate(_)) {
        return false;
    }
    let mut reads_a_table = false;
    let mut ok = true;
    let _ = plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(_) => reads_a_table = true,
            // (A recursive CTE anywhere in the query turns sharing off: see `mark_repeated`.)
            LogicalPlan::Extension(_) => ok = false,
            _ => {}
        }
        let _ = node.apply_expressions(|e| {
            if e.is_volatile() || e.contains_outer() {
                ok = false;
            }
            Ok(TreeNodeRecursion::Continue)
        });
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    ok && reads_a_table
}

/// The id of a shared sub-plan: a hash of the sub-plan, so that planning the same query twice
/// marks it alike.
fn id_of(plan: &LogicalPlan) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    plan.hash(&mut h);
    h.finish()
}

/// `plan` with every repeated shareable sub-tree wrapped in a [`SharedSubplanNode`], or `None`
/// when nothing repeats.
fn mark_repeated(plan: &LogicalPlan) -> Result<Option<LogicalPlan>> {
    let mut recursive = false;
    let mut counts: HashMap<LogicalPlan, usize> = HashMap::new();
    plan.apply_with_subqueries(|node| {
        if matches!(node, LogicalPlan::RecursiveQuery(_)) {
            recursive = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        if matches!(node, LogicalPlan::Aggregate(_)) {
            *counts.entry(node.clone()).or_default() += 1;
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if recursive {
        return Ok(None);
    }
    let repeated: HashMap<LogicalPlan, u64> = counts
        .into_iter()
        .filter(|(node, n)| *n >= 2 && shareable(node))
        .map(|(node, _)| {
            let id = id_of(&node);
            (node, id)
        })
        .collect();
    if repeated.is_empty() {
        return Ok(None);
    }
    // Outermost first: a repeated sub-tree inside a shared one is computed once already.
    let marked = plan.clone().transform_down_with_subqueries(|node| {
        // Only an aggregation can be a key: other nodes are not hashed.
        let id = match &node {
            LogicalPlan::Aggregate(_) => repeated.get(&node).copied(),
            _ => None,
        };
        match id {
            Some(id) => Ok(Transformed::new(
                LogicalPlan::Extension(Extension {
                    node: Arc::new(SharedSubplanNode { id, input: node }),
                }),
                true,
                TreeNodeRecursion::Jump,
            )),
            None => Ok(Transformed::no(node)),
        }
    })?;
    Ok(marked.transformed.then_some(marked.data))
}

/// A sub-plan that occurs more than once in a query and is computed once (see the module).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Hash)]
pub(crate) struct SharedSubplanNode {
    id: u64,
    input: LogicalPlan,
}

impl UserDefinedLogicalNodeCore for SharedSubplanNode {
    fn name(&self) -> &str {
        "SharedSubplan"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SharedSubplan: id={:016x}", self.id)
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<Self> {
        match <[_; 1]>::try_from(inputs) {
            Ok([input]) => Ok(Self { id: self.id, input }),
            Err(i) => Err(DataFusionError::Internal(format!(
                "SharedSubplan has one input, got {}",
                i.len()
            ))),
        }
    }
}

/// Plans a [`SharedSubplanNode`] as an unlinked [`SharedSubplanExec`].
struct SharedSubplanPlanner;

#[async_trait]
impl ExtensionPlanner for SharedSubplanPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(shared) = node.as_any().downcast_ref::<SharedSubplanNode>() else {
            return Ok(None);
        };
        let [input] = physical_inputs else {
            return Err(DataFusionError::Internal(format!(
                "SharedSubplan has one input, got {}",
                physical_inputs.len()
            )));
        };
        Ok(Some(Arc::new(SharedSubplanExec::new(
            shared.id,
            Arc::clone(input),
            None,
        ))))
    }
}

/// Links the [`SharedSubplanExec`]s of each id: they get the first one's input and one
/// [`SharedResult`]. Occurrences that cannot be linked (one left, or physical plans that came
/// out different) are replaced by their inputs.
fn link(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    let mut groups: HashMap<u64, Vec<Arc<dyn ExecutionPlan>>> = HashMap::new();
    plan.apply(|node| {
        if let Some(shared) = node.downcast_ref::<SharedSubplanExec>() {
            groups
                .entry(shared.id)
                .or_default()
                .push(Arc::clone(&shared.input));
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let linked: HashMap<u64, (Arc<dyn ExecutionPlan>, Arc<SharedResult>)> = groups
        .into_iter()
        .filter_map(|(id, inputs)| {
            let first = Arc::clone(inputs.first()?);
            let shown = displayable(first.as_ref()).indent(true).to_string();
            let alike = inputs.iter().skip(1).all(|other| {
                other.schema() == first.schema()
                    && other.output_partitioning().partition_count()
                        == first.output_partitioning().partition_count()
                    && displayable(other.as_ref()).indent(true).to_string() == shown
            });
            (inputs.len() >= 2 && alike).then(|| {
                let result = Arc::new(SharedResult::new(inputs.len()));
                (id, (first, result))
            })
        })
        .collect();
    plan.transform_down(|node| {
        let Some(shared) = node.downcast_ref::<SharedSubplanExec>() else {
            return Ok(Transformed::no(node));
        };
        let replaced: Arc<dyn ExecutionPlan> = match linked.get(&shared.id) {
            Some((input, result)) => Arc::new(SharedSubplanExec::new(
                shared.id,
                Arc::clone(input),
                Some(Arc::clone(result)),
            )),
            None => Arc::clone(&shared.input),
        };
        // The linked input is walked once, under the first consumer, by whoever walks the plan.
        Ok(Transformed::new(replaced, true, TreeNodeRecursion::Jump))
    })
    .map(|t| t.data)
}

/// A shared result may hold at most the query's memory share divided by this; past it, every
/// use runs the input itself.
const MEMORY_SHARE_DIVISOR: usize = 4;

/// The result of a shared sub-plan, made by the first consumer to ask for it.
#[derive(Debug)]
pub(crate) struct SharedResult {
    consumers: usize,
    /// `None` when the result did not fit the query's memory: every consumer runs the input.
    cell: OnceCell<Option<Materialized>>,
}

#[derive(Debug)]
struct Materialized {
    partitions: Vec<Vec<RecordBatch>>,
    _reservation: MemoryReservation,
}

impl SharedResult {
    fn new(consumers: usize) -> Self {
        Self {
            consumers,
            cell: OnceCell::new(),
        }
    }
}

/// Runs every partition of `input` to the end, keeping the batches while the query's memory
/// pool grants them; `None` when it stops granting.
async fn materialize(
    input: Arc<dyn ExecutionPlan>,
    context: Arc<TaskContext>,
    rows: datafusion::physical_plan::metrics::Count,
) -> Result<Option<Materialized>> {
    let pool = context.memory_pool();
    // At most this share of the query's memory: the operators running beside it need the rest.
    let cap = match pool.memory_limit() {
        MemoryLimit::Finite(limit) => limit / MEMORY_SHARE_DIVISOR,
        MemoryLimit::Infinite | MemoryLimit::Unknown => usize::MAX,
    };
    let reservation = MemoryConsumer::new("SharedSubplan").register(pool);
    let reservation = Arc::new(std::sync::Mutex::new(Some(reservation)));
    let partitions = input.output_partitioning().partition_count();
    let mut tasks = Vec::with_capacity(partitions);
    for partition in 0..partitions {
        let mut stream = input.execute(partition, Arc::clone(&context))?;
        let reservation = Arc::clone(&reservation);
        tasks.push(datafusion::common::runtime::SpawnedTask::spawn(
            async move {
                let mut batches = Vec::new();
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    let fits = match reservation.lock() {
                        Ok(mut guard) => {
                            let fits = guard.as_mut().is_some_and(|r| {
                                let more = batch.get_array_memory_size();
                                r.size().saturating_add(more) <= cap && r.try_grow(more).is_ok()
                            });
                            if !fits {
                                // Give the memory back now, and stop the other partitions at their
                                // next batch.
                                guard.take();
                            }
                            fits
                        }
                        Err(_) => false,
                    };
                    if !fits {
                        return Ok::<_, DataFusionError>(None);
                    }
                    batches.push(batch);
                }
                Ok(Some(batches))
            },
        ));
    }
    // Every task is awaited, also after one gave up (the others stop at their next batch): when
    // this returns, no partition of this run of the input still runs or holds memory.
    let mut out = Vec::with_capacity(partitions);
    let mut gave_up = false;
    for task in tasks {
        match task.join_unwind().await.map_err(|e| {
            DataFusionError::Execution(format!("a shared sub-plan's partition failed: {e}"))
        })?? {
            Some(batches) if !gave_up => out.push(batches),
            Some(_) => {}
            None => {
                gave_up = true;
                out.clear();
            }
        }
    }
    if gave_up {
        // Too big to keep: every consumer runs the input itself.
        return Ok(None);
    }
    rows.add(out.iter().flatten().map(RecordBatch::num_rows).sum());
    let reservation = reservation
        .lock()
        .ok()
        .and_then(|mut g| g.take())
        .ok_or_else(|| {
            DataFusionError::Internal("a shared sub-plan lost its reservation".to_string())
        })?;
    Ok(Some(Materialized {
        partitions: out,
        _reservation: reservation,
    }))
}

/// One use of a sub-plan that occurs more than once in the query. Linked (with a
/// [`SharedResult`]), every use reads the result of one execution of the input; unlinked, it
/// passes its input's batches through.
#[derive(Debug)]
pub(crate) struct SharedSubplanExec {
    id: u64,
    input: Arc<dyn ExecutionPlan>,
    result: Option<Arc<SharedResult>>,
    /// This use's own copy of the input, made when the shared result was given up: a plan
    /// instance runs once (a `RepartitionExec`'s partitions cannot be asked for again).
    own: Arc<OnceLock<Arc<dyn ExecutionPlan>>>,
    metrics: ExecutionPlanMetricsSet,
}

impl SharedSubplanExec {
    fn new(id: u64, input: Arc<dyn ExecutionPlan>, result: Option<Arc<SharedResult>>) -> Self {
        Self {
            id,
            input,
            result,
            own: Arc::new(OnceLock::new()),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for SharedSubplanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            Some(r) => write!(
                f,
                "SharedSubplanExec: id={:016x}, consumers={}",
                self.id, r.consumers
            ),
            None => write!(f, "SharedSubplanExec: id={:016x}, unlinked", self.id),
        }
    }
}

impl ExecutionPlan for SharedSubplanExec {
    fn name(&self) -> &str {
        "SharedSubplanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
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
        Ok(crate::filter_barrier::same_rows_as_child(
            input_stats,
            &self.schema(),
        ))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match <[_; 1]>::try_from(children) {
            // A new input is no longer the one the other consumers read: unlinked.
            Ok([input]) => {
                let result = if Arc::ptr_eq(&input, &self.input) {
                    self.result.clone()
                } else {
                    None
                };
                Ok(Arc::new(Self::new(self.id, input, result)))
            }
            Err(c) => Err(DataFusionError::Internal(format!(
                "SharedSubplanExec has one child, got {}",
                c.len()
            ))),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let Some(result) = self.result.clone() else {
            return self.input.execute(partition, context);
        };
        let input = Arc::clone(&self.input);
        let schema = self.schema();
        let rows = MetricBuilder::new(&self.metrics).global_counter("materialized_rows");
        let reran = MetricBuilder::new(&self.metrics).global_counter("reran_input");
        let own = Arc::clone(&self.own);
        let stream = futures::stream::once(async move {
            let kept = result
                .cell
                .get_or_try_init(|| materialize(Arc::clone(&input), Arc::clone(&context), rows))
                .await?;
            let stream: SendableRecordBatchStream = match kept {
                Some(m) => {
                    let batches = m.partitions.get(partition).cloned().unwrap_or_default();
                    Box::pin(RecordBatchStreamAdapter::new(
                        input.schema(),
                        futures::stream::iter(batches.into_iter().map(Ok)),
                    ))
                }
                None => {
                    let copy = match own.get() {
                        Some(copy) => Arc::clone(copy),
                        None => {
                            let fresh = reset_plan_states(Arc::clone(&input))?;
                            if own.set(Arc::clone(&fresh)).is_ok() {
                                reran.add(1);
                            }
                            own.get().map_or(fresh, Arc::clone)
                        }
                    };
                    copy.execute(partition, context)?
                }
            };
            Ok::<_, DataFusionError>(stream)
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}
