//! Delta scans on workers.
//!
//! deltalake 1.1 reads a Delta table through `DeltaScanExec` (or `DeltaScanMetaExec` when no
//! column is read), which hold private planning state (the kernel's scan plan, per-file
//! transforms, deletion vectors) and have neither a codec nor a public constructor: the only way
//! to build one is the table provider's `scan`. So a Delta scan travels as *the call that made
//! it*:
//!
//! 1. On the coordinator, [`prepare`] finds each product read whose subtree holds a Delta scan
//!    (`MeshqlProductExec` records the logical plan it was planned from), optimizes that logical
//!    plan again with the query's session — as the product's planning did — and takes from its
//!    table scan the arguments deltalake's `scan` received: the provider (its snapshot: table
//!    root, version, log segment, file list), projection, filters and limit. The Delta node is
//!    wrapped in a pass-through [`DeltaScanShim`] carrying them, which the codec encodes.
//! 2. Everything DataFusion's optimizer and datafusion-distributed changed *after* `scan`
//!    (filters and limits pushed down, file groups repartitioned or split between tasks) lives in
//!    the Delta node's Parquet child, which travels as an ordinary plan node.
//! 3. On the worker, [`WorkerDeltaScanExec`] calls `scan` with the same arguments when first
//!    executed (the snapshot is not re-read: the same version travels), checks that it planned
//!    the same files under the same file ids as the coordinator, and puts the coordinator's child
//!    under the rebuilt node. Anything that does not match fails the query; nothing is guessed.
//!
//! A read with deletion vectors keeps each file whole in one stream, so its stage runs as a
//! single task (see `scale.rs`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::Statistics;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::source_as_provider;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{
    SendableRecordBatchStream, SessionState, SessionStateBuilder, TaskContext,
};
use datafusion::logical_expr::expr_rewriter::unnormalize_cols;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, CardinalityEffect, EmissionType};
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildStats, ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan,
    ExecutionPlanProperties, PlanProperties, ReplaceChildrenOptions, StatisticsArgs,
};
use datafusion_proto::logical_plan::from_proto::parse_exprs;
use datafusion_proto::logical_plan::to_proto::serialize_exprs;
use datafusion_proto::logical_plan::DefaultLogicalExtensionCodec;
use deltalake::delta_datafusion::{DeltaScanExec, DeltaScanNext};
use futures::{StreamExt, TryStreamExt};
use meshql_engine::{PolicyExec, ProductScanExec};

/// deltalake's scan when no column is read (a crate-private type: known by its name only).
const DELTA_METADATA_SCAN: &str = "DeltaScanMetaExec";

/// The arguments of one `DeltaScan::scan` call, and the session options it ran under.
#[derive(Debug)]
pub(crate) struct DeltaRead {
    provider: Arc<DeltaScanNext>,
    projection: Option<Vec<usize>>,
    filters: Vec<Expr>,
    fetch: Option<usize>,
    /// The coordinator's `datafusion.*` settings (target partitions, Parquet options).
    options: BTreeMap<String, String>,
}

/// A Delta read on the wire.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DeltaReadProto {
    /// The table provider (snapshot at the planned version), as deltalake serializes it.
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) provider: Vec<u8>,
    #[prost(bool, tag = "2")]
    projected: bool,
    #[prost(uint64, repeated, tag = "3")]
    projection: Vec<u64>,
    #[prost(message, repeated, tag = "4")]
    filters: Vec<datafusion_proto::protobuf::LogicalExprNode>,
    #[prost(uint64, optional, tag = "5")]
    fetch: Option<u64>,
    #[prost(btree_map = "string, string", tag = "6")]
    options: BTreeMap<String, String>,
    /// The scan's output schema, as planned on the coordinator.
    #[prost(message, optional, tag = "7")]
    schema: Option<datafusion_proto::protobuf::Schema>,
    /// Output partitions of a metadata-only scan (a data scan has its child's).
    #[prost(uint64, tag = "8")]
    partitions: u64,
    /// True for a metadata-only scan (`DeltaScanMetaExec`, no child).
    #[prost(bool, tag = "9")]
    metadata_only: bool,
}

fn proto_err(what: &str, e: impl fmt::Display) -> DataFusionError {
    DataFusionError::Plan(format!(
        "refusing a plan fragment: a Delta scan's {what}: {e}"
    ))
}

impl DeltaRead {
    fn to_proto(&self, node: &dyn ExecutionPlan) -> Result<DeltaReadProto> {
        let provider = serde_json::to_vec(self.provider.as_ref()).map_err(|e| {
            DataFusionError::NotImplemented(format!("cannot serialize a Delta table: {e}"))
        })?;
        let filters = serialize_exprs(&self.filters, &DefaultLogicalExtensionCodec {})
            .map_err(|e| DataFusionError::NotImplemented(format!("a Delta scan filter: {e}")))?;
        let schema = datafusion_proto::protobuf::Schema::try_from(node.schema().as_ref())
            .map_err(|e| DataFusionError::NotImplemented(format!("a Delta scan schema: {e}")))?;
        Ok(DeltaReadProto {
            provider,
            projected: self.projection.is_some(),
            projection: self
                .projection
                .iter()
                .flatten()
                .map(|i| *i as u64)
                .collect(),
            filters,
            fetch: self.fetch.map(|f| f as u64),
            options: self.options.clone(),
            schema: Some(schema),
            partitions: node.output_partitioning().partition_count() as u64,
            metadata_only: node.children().is_empty(),
        })
    }

    fn from_proto(proto: &DeltaReadProto, ctx: &TaskContext) -> Result<Self> {
        let provider: DeltaScanNext =
            serde_json::from_slice(&proto.provider).map_err(|e| proto_err("table", e))?;
        let filters = parse_exprs(&proto.filters, ctx, &DefaultLogicalExtensionCodec {})
            .map_err(|e| proto_err("filters", e))?;
        let to_usize = |v: u64| usize::try_from(v).map_err(|e| proto_err("numbers", e));
        Ok(Self {
            provider: Arc::new(provider),
            projection: if proto.projected {
                Some(
                    proto
                        .projection
                        .iter()
                        .map(|i| to_usize(*i))
                        .collect::<Result<_>>()?,
                )
            } else {
                None
            },
            filters,
            fetch: proto.fetch.map(to_usize).transpose()?,
            options: proto.options.clone(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Coordinator

/// `plan` with every Delta scan inside a product read wrapped in a [`DeltaScanShim`] (inside
/// policy barriers too), or `plan` itself when there is none or the session is not a
/// `SessionState`. A product read whose Delta scan cannot be matched to its logical plan is
/// left as is: it has no codec, so the query stays on the coordinator.
pub(crate) fn prepare(
    plan: Arc<dyn ExecutionPlan>,
    session: &dyn Session,
) -> Result<Arc<dyn ExecutionPlan>> {
    let Some(state) = session.as_any().downcast_ref::<SessionState>() else {
        return Ok(plan);
    };
    prepare_with(plan, state).map(|t| t.data)
}

fn prepare_with(
    plan: Arc<dyn ExecutionPlan>,
    state: &SessionState,
) -> Result<Transformed<Arc<dyn ExecutionPlan>>> {
    plan.transform_up(|node| {
        if let Some(policy) = node.downcast_ref::<PolicyExec>() {
            let inner = prepare_with(Arc::clone(policy.inner()), state)?;
            return Ok(if inner.transformed {
                Transformed::yes(Arc::new(PolicyExec::new(
                    policy.product().to_string(),
                    inner.data,
                )) as Arc<dyn ExecutionPlan>)
            } else {
                Transformed::no(node)
            });
        }
        let Some(product) = node.downcast_ref::<ProductScanExec>() else {
            return Ok(Transformed::no(node));
        };
        let Some(source) = product.source() else {
            return Ok(Transformed::no(node));
        };
        if !has_delta_scan(&node) {
            return Ok(Transformed::no(node));
        }
        match delta_read(source, state) {
            Ok(Some(read)) => {
                let read = Arc::new(read);
                let mut wrapped = 0;
                let shimmed = Arc::clone(&node).transform_up(|n| {
                    Ok(if is_delta_scan(&n) {
                        wrapped += 1;
                        Transformed::yes(Arc::new(DeltaScanShim {
                            inner: n,
                            read: Arc::clone(&read),
                        }) as Arc<dyn ExecutionPlan>)
                    } else {
                        Transformed::no(n)
                    })
                })?;
                Ok(if wrapped == 1 {
                    shimmed
                } else {
                    Transformed::no(node)
                })
            }
            Ok(None) => Ok(Transformed::no(node)),
            Err(e) => {
                tracing::debug!(product = product.product(), error = %e, "a Delta read stays on the coordinator");
                Ok(Transformed::no(node))
            }
        }
    })
}

fn is_delta_scan(node: &Arc<dyn ExecutionPlan>) -> bool {
    node.downcast_ref::<DeltaScanExec>().is_some() || node.name() == DELTA_METADATA_SCAN
}

fn has_delta_scan(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut found = false;
    let _ = plan.apply(|n| {
        found |= is_delta_scan(n);
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// The arguments the product's planning gave deltalake's `scan`: its logical plan optimized the
/// same way, then the one Delta table scan in it, as DataFusion's physical planner reads it.
fn delta_read(source: &LogicalPlan, state: &SessionState) -> Result<Option<DeltaRead>> {
    let optimized = state.optimize(source)?;
    let mut scans = Vec::new();
    optimized.apply(|p| {
        if let LogicalPlan::TableScan(scan) = p {
            scans.push(scan.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let [scan] = scans.as_slice() else {
        return Ok(None);
    };
    let provider = source_as_provider(&scan.source)?;
    let Some(delta) = provider.downcast_ref::<DeltaScanNext>() else {
        return Ok(None);
    };
    let options = state
        .config_options()
        .entries()
        .into_iter()
        .filter(|e| e.key.starts_with("datafusion."))
        .filter_map(|e| e.value.map(|v| (e.key, v)))
        .collect();
    Ok(Some(DeltaRead {
        provider: Arc::new(delta.clone()),
        projection: scan.projection.clone(),
        filters: unnormalize_cols(scan.filters.iter().cloned()),
        fetch: scan.fetch,
        options,
    }))
}

/// A Delta scan on the coordinator with what is needed to plan it again on a worker. Everything
/// else is the wrapped node's.
#[derive(Debug)]
pub(crate) struct DeltaScanShim {
    inner: Arc<dyn ExecutionPlan>,
    read: Arc<DeltaRead>,
}

impl DeltaScanShim {
    pub(crate) fn to_proto(&self) -> Result<DeltaReadProto> {
        self.read.to_proto(self.inner.as_ref())
    }

    /// True when the scan applies deletion vectors (deltalake then reports fewer rows out than
    /// in): each file must stay whole in one stream.
    pub(crate) fn has_deletion_vectors(&self) -> bool {
        matches!(
            self.inner.cardinality_effect(),
            CardinalityEffect::LowerEqual
        )
    }
}

impl DisplayAs for DeltaScanShim {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_as(t, f)
    }
}

impl ExecutionPlan for DeltaScanShim {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.inner.children()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.inner.apply_expressions(f)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        self.inner.maintains_input_order()
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        self.inner.benefits_from_input_partitioning()
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self {
            inner: Arc::clone(&self.inner).replace_children(children, options)?,
            read: Arc::clone(&self.read),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.inner.execute(partition, context)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        self.inner.metrics()
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        self.inner.child_stats_requests(partition)
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        self.inner.statistics_from_inputs(input_stats, args)
    }

    fn supports_limit_pushdown(&self) -> bool {
        self.inner.supports_limit_pushdown()
    }

    fn fetch(&self) -> Option<usize> {
        self.inner.fetch()
    }

    fn cardinality_effect(&self) -> CardinalityEffect {
        self.inner.cardinality_effect()
    }
}

// ---------------------------------------------------------------------------------------------
// Worker

/// A Delta scan on a worker: planned again from the coordinator's `scan` arguments when first
/// executed, over the coordinator's Parquet child.
#[derive(Debug)]
pub(crate) struct WorkerDeltaScanExec {
    read: Arc<DeltaRead>,
    child: Option<Arc<dyn ExecutionPlan>>,
    properties: Arc<PlanProperties>,
    planned: Arc<tokio::sync::OnceCell<Arc<dyn ExecutionPlan>>>,
}

impl WorkerDeltaScanExec {
    pub(crate) fn try_new(
        proto: &DeltaReadProto,
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
    ) -> Result<Self> {
        let read = DeltaRead::from_proto(proto, ctx)?;
        let schema: SchemaRef = Arc::new(
            proto
                .schema
                .as_ref()
                .ok_or_else(|| proto_err("schema", "missing"))
                .and_then(|s| Schema::try_from(s).map_err(|e| proto_err("schema", e)))?,
        );
        let child = match (proto.metadata_only, inputs) {
            (true, []) => None,
            (false, [child]) => Some(Arc::clone(child)),
            _ => {
                return Err(proto_err(
                    "children",
                    format!(
                        "{} for a metadata-only scan: {}",
                        inputs.len(),
                        proto.metadata_only
                    ),
                ))
            }
        };
        let partitions =
            usize::try_from(proto.partitions).map_err(|e| proto_err("partitions", e))?;
        Ok(Self {
            read: Arc::new(read),
            properties: properties(schema, child.as_ref(), partitions),
            child,
            planned: Arc::new(tokio::sync::OnceCell::new()),
        })
    }
}

/// A scan's properties as deltalake computes them: a data scan has its Parquet child's
/// partitioning, a metadata-only scan its own partition count.
fn properties(
    schema: SchemaRef,
    child: Option<&Arc<dyn ExecutionPlan>>,
    partitions: usize,
) -> Arc<PlanProperties> {
    Arc::new(match child {
        Some(c) => PlanProperties::new(
            EquivalenceProperties::new(schema),
            c.output_partitioning().clone(),
            c.pipeline_behavior(),
            c.boundedness(),
        ),
        None => PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ),
    })
}

impl DisplayAs for WorkerDeltaScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (planned on this worker)", self.name())
    }
}

impl ExecutionPlan for WorkerDeltaScanExec {
    fn name(&self) -> &str {
        if self.child.is_some() {
            "DeltaScanExec"
        } else {
            DELTA_METADATA_SCAN
        }
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.child.iter().collect()
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
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let child = match (&self.child, <[_; 1]>::try_from(children)) {
            (None, Err(c)) if c.is_empty() => None,
            (Some(_), Ok([c])) => Some(c),
            _ => {
                return Err(DataFusionError::Internal(format!(
                    "{} got the wrong number of children",
                    self.name()
                )))
            }
        };
        Ok(Arc::new(Self {
            read: Arc::clone(&self.read),
            properties: properties(
                self.schema(),
                child.as_ref(),
                self.properties.partitioning.partition_count(),
            ),
            child,
            planned: Arc::new(tokio::sync::OnceCell::new()),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let read = Arc::clone(&self.read);
        let child = self.child.clone();
        let planned = Arc::clone(&self.planned);
        let properties = Arc::clone(&self.properties);
        let schema = self.schema();
        let stream = futures::stream::once(async move {
            let plan = planned
                .get_or_try_init(|| replan(&read, child, &properties, &context))
                .await?;
            plan.execute(partition, context)
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream.boxed(),
        )))
    }
}

/// deltalake's scan node, planned on this worker with the coordinator's arguments.
async fn replan(
    read: &DeltaRead,
    child: Option<Arc<dyn ExecutionPlan>>,
    properties: &PlanProperties,
    ctx: &TaskContext,
) -> Result<Arc<dyn ExecutionPlan>> {
    let mut config = ctx.session_config().clone();
    for (key, value) in &read.options {
        // Settings this DataFusion does not know are left at their defaults.
        let _ = config.options_mut().set(key, value);
    }
    let target_partitions = config.target_partitions();
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(ctx.runtime_env())
        .with_default_features()
        .build();
    let plan = read
        .provider
        .scan(&state, read.projection.as_ref(), &read.filters, read.fetch)
        .await?;
    let differs = |what: String| {
        DataFusionError::Internal(format!(
            "a Delta scan was planned differently on this worker: {what}"
        ))
    };
    let plan = match child {
        Some(child) => {
            if plan.downcast_ref::<DeltaScanExec>().is_none() || plan.children().len() != 1 {
                return Err(differs(format!("got {}", plan.name())));
            }
            same_files(plan.children()[0], &child).map_err(differs)?;
            plan.replace_children(
                vec![child],
                ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
            )?
        }
        None => {
            if plan.name() != DELTA_METADATA_SCAN {
                return Err(differs(format!("got {}", plan.name())));
            }
            let wanted = properties.partitioning.partition_count();
            if plan.output_partitioning().partition_count() == wanted {
                plan
            } else {
                plan.repartitioned(target_partitions, state.config_options())?
                    .filter(|p| p.output_partitioning().partition_count() == wanted)
                    .ok_or_else(|| differs(format!("not {wanted} partitions")))?
            }
        }
    };
    if plan.schema().fields() != properties.eq_properties.schema().fields() {
        return Err(differs("another schema".to_string()));
    }
    Ok(plan)
}

/// The files of the Parquet scans under `plan`, with the file id deltalake gave each.
fn file_ids(plan: &Arc<dyn ExecutionPlan>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let _ = plan.apply(|n| {
        if let Some(config) = n
            .downcast_ref::<DataSourceExec>()
            .and_then(|d| d.data_source().downcast_ref::<FileScanConfig>())
        {
            for file in config.file_groups.iter().flat_map(|g| g.files()) {
                let id = file
                    .partition_values
                    .first()
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                out.push((file.object_meta.location.to_string(), id));
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

/// Every file the coordinator's child reads is one this worker planned, under the same file id
/// (deltalake maps each file's batches to its transforms by that id).
fn same_files(
    planned: &Arc<dyn ExecutionPlan>,
    received: &Arc<dyn ExecutionPlan>,
) -> std::result::Result<(), String> {
    let here: HashMap<String, String> = file_ids(planned).into_iter().collect();
    for (path, id) in file_ids(received) {
        match here.get(&path) {
            Some(ours) if *ours == id => {}
            Some(ours) => return Err(format!("file {path} is {ours} here, {id} there")),
            None => return Err(format!("file {path} is not in the scan here")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::datasource::listing::PartitionedFile;
    use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
    use datafusion::execution::object_store::ObjectStoreUrl;
    use datafusion::scalar::ScalarValue;

    /// A Parquet scan of `files` as deltalake plans it: each file carries its file id.
    fn scan(files: &[(&str, &str)]) -> Arc<dyn ExecutionPlan> {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let group = files
            .iter()
            .map(|(path, id)| {
                PartitionedFile::new(*path, 10)
                    .with_partition_values(vec![ScalarValue::Utf8(Some(id.to_string()))])
            })
            .collect::<Vec<_>>();
        let config = FileScanConfigBuilder::new(
            ObjectStoreUrl::local_filesystem(),
            Arc::new(ParquetSource::new(schema)),
        )
        .with_file_group(FileGroup::new(group))
        .build();
        DataSourceExec::from_data_source(config)
    }

    #[test]
    fn the_coordinators_files_must_be_planned_here_under_the_same_ids() {
        let here = scan(&[
            ("t/a.parquet", "f0"),
            ("t/b.parquet", "f1"),
            ("t/c.parquet", "f2"),
        ]);
        // A task's share, the same file split in two byte ranges included.
        assert_eq!(
            same_files(
                &here,
                &scan(&[("t/b.parquet", "f1"), ("t/b.parquet", "f1")])
            ),
            Ok(())
        );
        let swapped = same_files(&here, &scan(&[("t/a.parquet", "f1")])).unwrap_err();
        assert!(
            swapped.contains("t/a.parquet is f0 here, f1 there"),
            "{swapped}"
        );
        let unknown = same_files(&here, &scan(&[("t/d.parquet", "f3")])).unwrap_err();
        assert!(unknown.contains("not in the scan here"), "{unknown}");
    }
}
