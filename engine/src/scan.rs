//! `ProductScanExec`: attaches the product to the storage errors of its scan.
//!
//! A product's physical scan (Parquet files, a Delta table) is wrapped in this transparent node:
//! it changes nothing about the plan (properties, statistics, filter and projection pushdown
//! pass through), but a storage error raised while reading (a missing or corrupt file, an
//! unreachable bucket, a refused request) becomes [`EngineError::ProductUnavailable`] naming
//! this product, with the original error as its source. Errors that are not about storage
//! (a failed cast, a division by zero in a pushed-down predicate) pass through unchanged.
//!
//! For a Delta product it also fills in the column statistics its scan leaves unknown, from the
//! Delta log ([`crate::delta_stats`]): inexact bounds that let the planner size joins.

use std::fmt;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::Statistics;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildStats, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, StatisticsArgs,
};
use futures::StreamExt;

use crate::delta_stats::LogStatistics;
use crate::error::{is_storage_error, strip_prefix, EngineError};

/// Turns a storage error into "product X is unavailable"; anything else is returned as is.
pub fn attach_product(product: &str, e: DataFusionError) -> DataFusionError {
    if !is_storage_error(&e) || is_engine_error(&e) {
        return e;
    }
    let message = strip_prefix(&e);
    DataFusionError::External(Box::new(EngineError::ProductUnavailable {
        product: product.to_string(),
        message,
        source: Box::new(e),
    }))
}

fn is_engine_error(e: &DataFusionError) -> bool {
    match e {
        DataFusionError::External(inner) => inner.is::<EngineError>(),
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            is_engine_error(inner)
        }
        DataFusionError::Shared(inner) => is_engine_error(inner),
        _ => false,
    }
}

/// Whether `stats`' total byte size cannot be the size of the columns it describes: no column
/// reports a size of its own. A Delta scan is so: deltalake reports its files' whole size
/// whatever the scan reads (the log knows no column sizes), where a Parquet scan sums the sizes
/// of the columns it reads.
pub(crate) fn whole_file_size(stats: &Statistics) -> bool {
    !stats.column_statistics.is_empty()
        && matches!(
            stats.total_byte_size,
            Precision::Exact(_) | Precision::Inexact(_)
        )
        && stats
            .column_statistics
            .iter()
            .all(|c| matches!(c.byte_size, Precision::Absent))
}

/// Keeps a scan's total byte size only when it is the size of the columns read (see
/// [`whole_file_size`]); otherwise the planner goes without one and compares row counts. A
/// whole-file size made a one-column read of a wide table look bigger than a three-column read
/// of a ten times longer one, and join selection then built its hash table from the longer
/// side (TPC-H Q13 on Delta: 15 M orders instead of 1.5 M customers).
pub(crate) fn size_of_columns_read(stats: &mut Statistics) {
    if whole_file_size(stats) {
        stats.total_byte_size = Precision::Absent;
    }
}

/// The transparent wrapper around one product's scan (shown as `MeshqlProductExec`). Public so
/// that distributed execution (the `meshql-cluster` crate) can ship it to a worker.
#[derive(Debug, Clone)]
pub struct ProductScanExec {
    product: String,
    input: Arc<dyn ExecutionPlan>,
    source: Option<Arc<LogicalPlan>>,
    /// Column statistics from the Delta log, by column name, for columns the scan reports none.
    log_statistics: Option<LogStatistics>,
}

impl ProductScanExec {
    /// Wraps `input`, the scan of `product` (`domain.product`).
    pub fn new(product: String, input: Arc<dyn ExecutionPlan>) -> Self {
        Self {
            product,
            input,
            source: None,
            log_statistics: None,
        }
    }

    /// Column statistics (from a Delta log) to report for columns whose statistics the scan
    /// leaves unknown.
    pub(crate) fn with_column_statistics(mut self, statistics: Option<LogStatistics>) -> Self {
        self.log_statistics = statistics;
        self
    }

    /// Records the logical plan `input` was planned from. Distributed execution plans a Delta
    /// product's scan again from it on a worker (deltalake's scan nodes cannot be serialized).
    pub fn with_source(mut self, source: LogicalPlan) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The logical plan the scan was planned from, if recorded.
    pub fn source(&self) -> Option<&LogicalPlan> {
        self.source.as_deref()
    }

    /// The product this scan reads (`domain.product`).
    pub fn product(&self) -> &str {
        &self.product
    }

    /// The wrapped scan.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }
}

impl DisplayAs for ProductScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeshqlProductExec: product={}", self.product)
    }
}

impl ExecutionPlan for ProductScanExec {
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
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => Ok(Arc::new(Self {
                product: self.product.clone(),
                input,
                source: self.source.clone(),
                log_statistics: self.log_statistics.clone(),
            })),
            _ => Err(DataFusionError::Internal(
                "MeshqlProductExec has exactly one child".to_string(),
            )),
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
            .map_err(|e| attach_product(&product, e))?;
        let schema = stream.schema();
        let mapped = stream.map(move |r| r.map_err(|e| attach_product(&product, e)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, mapped)))
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        // The same rows as the scan it wraps.
        let Some(stats) = input_stats.first() else {
            return Ok(Arc::new(Statistics::new_unknown(&self.schema())));
        };
        let log = self.log_statistics.as_ref().filter(|l| !l.is_empty());
        if log.is_none() && !whole_file_size(stats) {
            return Ok(Arc::clone(stats));
        }
        let mut stats = Statistics::clone(stats);
        size_of_columns_read(&mut stats);
        let Some(log) = log else {
            return Ok(Arc::new(stats));
        };
        let schema = self.schema();
        for (field, column) in schema
            .fields()
            .iter()
            .zip(stats.column_statistics.iter_mut())
        {
            let Some(known) = log.get(field.name()) else {
                continue;
            };
            let same_type = matches!(&known.min_value, Precision::Inexact(v) if &v.data_type() == field.data_type());
            if !same_type {
                continue;
            }
            if matches!(column.min_value, Precision::Absent) {
                column.min_value = known.min_value.clone();
            }
            if matches!(column.max_value, Precision::Absent) {
                column.max_value = known.max_value.clone();
            }
            if matches!(column.null_count, Precision::Absent) {
                column.null_count = known.null_count;
            }
        }
        Ok(Arc::new(stats))
    }

    fn supports_limit_pushdown(&self) -> bool {
        true
    }

    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> Result<FilterDescription> {
        FilterDescription::from_children(parent_filters, &self.children())
    }

    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        Ok(FilterPushdownPropagation::if_all(child_pushdown_result))
    }
}
