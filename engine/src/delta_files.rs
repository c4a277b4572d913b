//! Plain Delta versions read as Parquet: a Delta version whose files need no per-file
//! transformation is scanned as a Parquet scan of exactly that version's files.
//!
//! deltalake's scan replays the version's add actions through the Delta kernel on every scan
//! (parsing each file's statistics JSON for data skipping) and splits its output batches by
//! file; on short queries that was most of the gap between a Delta product and the same data as
//! Parquet. Most versions need nothing of what that machinery is for, so a version is read here
//! when it is *plain*:
//!
//! - the protocol asks no more of a reader than version 1, or version 3 with only reader
//!   features that do not change how a file's rows are read (`timestampNtz`, `v2Checkpoint`,
//!   `vacuumProtocolCheck`, and `deletionVectors` while no file has one);
//! - no column mapping (`delta.columnMapping.mode` absent or `none`);
//! - only flat columns (nested fields' nullability may differ between the log and the files);
//! - every file path is relative to the table root (no shallow-clone absolute paths).
//!
//! Partition columns are read as DataFusion reads Hive partitions: their values come from the
//! log (each file's `partitionValues`), are attached to the file, and filters on them skip
//! files. Anything else is read by deltalake as before. The file list, sizes and row counts come from
//! the version's log once per version (the [`crate::delta_cache`] keeps them beside the log
//! statistics), so a scan does no listing and no `HEAD`: a file the log names but the store
//! no longer has fails the query with the store's "not found" (a vacuumed version is an error,
//! never silently fewer rows). Each file carries the log's per-file minimum, maximum and null
//! count for the types [`crate::delta_stats`] trusts (floats excepted: a file's NaNs are not in
//! its bounds), so a filter skips files before their footers are read, as deltalake's data
//! skipping did. For planning, the scan reports what a Parquet product's scan reports: the
//! statistics of the files' footers (row counts, bounds, null counts and the sizes of the
//! columns read), read once per version on its first scan, so a Delta product is planned as the
//! same data in Parquet is. (deltalake's scan reports the files' whole size and no column
//! bounds; joins were then chosen by row counts, and TPC-H Q7 built its hash table from
//! 1.8 M `lineitem` rows instead of 120 K orders.) When a footer cannot be read, or the version
//! has more than [`FOOTER_STATISTICS_MAX_FILES`] files, it reports the log's row counts and file
//! sizes, as deltalake did; beyond [`FILE_BOUNDS_MAX_CELLS`] files × columns the files carry no
//! bounds (memory), and filters prune by footers only.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, FieldRef, Int64Type, Schema, SchemaRef};
use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::DFSchema;
use datafusion::common::{ColumnStatistics, ScalarValue, Statistics};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use deltalake::DeltaTable;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectMeta;
use tokio::sync::OnceCell;
use url::Url;

use crate::delta_stats::LogStatistics;

/// Reader features that do not change how a plain file's rows are read.
const HARMLESS_READER_FEATURES: [&str; 4] = [
    "timestampNtz",
    "v2Checkpoint",
    "vacuumProtocolCheck",
    // Only while no file has a deletion vector (checked per file).
    "deletionVectors",
];

/// Up to this many files × columns, each file carries the log's bounds (a vector of column
/// statistics per file; beyond it a file carries its row count and size only, and filters skip
/// row groups by the footers, not whole files by the log).
const FILE_BOUNDS_MAX_CELLS: usize = 250_000;

/// Up to this many files, the version's first scan reads every footer for the planner's
/// statistics; beyond it (a table of many small files, where that would be a request per file
/// before the first query runs) the scan reports the log's row counts and sizes, as deltalake's
/// did.
const FOOTER_STATISTICS_MAX_FILES: usize = 1_000;

/// How much of a version the reader keeps and reads (the constants above; smaller in tests).
#[derive(Debug, Clone, Copy)]
struct Limits {
    bounds_cells: usize,
    footer_files: usize,
}

const LIMITS: Limits = Limits {
    bounds_cells: FILE_BOUNDS_MAX_CELLS,
    footer_files: FOOTER_STATISTICS_MAX_FILES,
};

/// The files of a plain Delta version (see the module docs).
#[derive(Debug)]
pub(crate) struct PlainFiles {
    limits: Limits,
    store: ObjectStoreUrl,
    /// The columns the files hold (the table's, partition columns left out) and the partition
    /// columns, whose values each file carries: the Parquet scan's schema is the two, in turn.
    file_schema: SchemaRef,
    partition_fields: Vec<FieldRef>,
    /// For each column of the table, its index in the Parquet scan's schema.
    scan_index: Vec<usize>,
    files: Vec<PartitionedFile>,
    num_rows: Precision<usize>,
    bytes: usize,
    /// The table's statistics from the files' footers, read on the version's first scan; None
    /// when a footer could not be read.
    footers: OnceCell<Option<Statistics>>,
}

impl PlainFiles {
    /// The files whose partition values can pass `filters` (those that read partition columns
    /// only; as a Hive-partitioned listing prunes its directories). A filter that cannot be
    /// evaluated on the values prunes nothing: the query's own filter reports its error.
    fn by_partition_values(&self, state: &dyn Session, filters: &[Expr]) -> Vec<PartitionedFile> {
        let names: Vec<&str> = self
            .partition_fields
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let on_partitions: Vec<&Expr> = filters
            .iter()
            .filter(|f| {
                let columns = f.column_refs();
                !f.is_volatile()
                    && !columns.is_empty()
                    && columns.iter().all(|c| names.contains(&c.name.as_str()))
            })
            .collect();
        if on_partitions.is_empty() || self.files.is_empty() {
            return self.files.clone();
        }
        match self.passing(state, &on_partitions) {
            Ok(keep) => self
                .files
                .iter()
                .zip(keep)
                .filter(|(_, keep)| *keep)
                .map(|(f, _)| f.clone())
                .collect(),
            Err(e) => {
                tracing::debug!("partition filter not evaluated on the log's values: {e}");
                self.files.clone()
            }
        }
    }

    /// Per file, whether its partition values pass every filter of `on_partitions`.
    fn passing(&self, state: &dyn Session, on_partitions: &[&Expr]) -> DfResult<Vec<bool>> {
        let schema = Arc::new(Schema::new(self.partition_fields.clone()));
        let columns = (0..self.partition_fields.len())
            .map(|k| {
                ScalarValue::iter_to_array(self.files.iter().map(|f| f.partition_values[k].clone()))
            })
            .collect::<DfResult<Vec<_>>>()?;
        let values = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        let df_schema = DFSchema::try_from(Arc::unwrap_or_clone(schema))?;
        let mut keep = vec![true; self.files.len()];
        for filter in on_partitions {
            let unqualified = unnormalize_col((*filter).clone());
            let result = state
                .create_physical_expr(unqualified, &df_schema)?
                .evaluate(&values)?
                .into_array(values.num_rows())?;
            let result = result.as_boolean_opt().ok_or_else(|| {
                DataFusionError::Plan("a partition filter is not a condition".to_string())
            })?;
            for (i, keep) in keep.iter_mut().enumerate() {
                *keep &= result.is_valid(i) && result.value(i);
            }
        }
        Ok(keep)
    }
}

/// What is kept per Delta version: the log's column statistics, and the version's files when
/// it is plain.
#[derive(Debug, Clone)]
pub(crate) struct VersionFacts {
    pub(crate) statistics: LogStatistics,
    pub(crate) plain: Option<Arc<PlainFiles>>,
}

/// The facts of `table`'s version for the columns of `schema` (one pass over its add actions).
pub(crate) fn version_facts(table: &DeltaTable, schema: &Schema) -> VersionFacts {
    let Some(actions) = crate::delta_stats::add_actions(table) else {
        return VersionFacts {
            statistics: LogStatistics::default(),
            plain: None,
        };
    };
    let plain = match plain_files(table, schema, &actions, LIMITS) {
        Ok(files) => Some(files),
        Err(why) => {
            tracing::debug!(table = %table.log_store().root_url(), "read by deltalake: {why}");
            None
        }
    };
    VersionFacts {
        statistics: crate::delta_stats::from_add_actions(&actions, schema),
        plain,
    }
}

/// The files of `table`'s version when it is plain, from its add actions (`actions`, as
/// `add_actions_table(true)` flattens them); otherwise why not, for the log.
fn plain_files(
    table: &DeltaTable,
    schema: &Schema,
    actions: &RecordBatch,
    limits: Limits,
) -> Result<Arc<PlainFiles>, String> {
    let state = table.snapshot().map_err(|e| e.to_string())?;
    let protocol = state.protocol();
    match protocol.min_reader_version() {
        1 => {}
        3 => {
            for feature in protocol.reader_features().unwrap_or_default() {
                let name: &str = feature.as_ref();
                if !HARMLESS_READER_FEATURES.contains(&name) {
                    return Err(format!("reader feature {name}"));
                }
            }
        }
        v => return Err(format!("reader version {v}")),
    }
    let metadata = state.metadata();
    let partition_columns = metadata.partition_columns();
    if let Some(mode) = metadata.configuration().get("delta.columnMapping.mode") {
        if !mode.eq_ignore_ascii_case("none") {
            return Err(format!("column mapping mode {mode}"));
        }
    }
    if let Some(field) = schema.fields().iter().find(|f| f.data_type().is_nested()) {
        return Err(format!("nested column {}", field.name()));
    }
    let deletion_vectors = actions
        .schema()
        .fields()
        .iter()
        .zip(actions.columns())
        .any(|(f, c)| f.name().starts_with("deletion_vector") && c.null_count() < c.len());
    if deletion_vectors {
        return Err("deletion vectors".to_string());
    }

    let mut root = table.log_store().root_url().clone();
    if !root.path().ends_with('/') {
        let path = format!("{}/", root.path());
        root.set_path(&path);
    }
    let store = ObjectStoreUrl::parse(&root[..url::Position::BeforePath])
        .map_err(|e| format!("table root: {e}"))?;
    let column = |name: &str, to: &DataType| {
        let c = actions
            .column_by_name(name)
            .ok_or_else(|| format!("no {name} in the add actions"))?;
        arrow::compute::cast(c, to).map_err(|e| format!("{name}: {e}"))
    };
    let paths = column("path", &DataType::Utf8)?;
    let paths = paths.as_string::<i32>();
    let sizes = column("size_bytes", &DataType::Int64)?;
    let sizes = sizes.as_primitive::<Int64Type>();
    let records = column("num_records", &DataType::Int64)?;
    let records = records.as_primitive::<Int64Type>();
    let (file_fields, partition_fields): (Vec<FieldRef>, Vec<FieldRef>) = schema
        .fields()
        .iter()
        .cloned()
        .partition(|f| !partition_columns.contains(f.name()));
    if partition_fields.len() != partition_columns.len() {
        return Err("a partition column is not in the schema".to_string());
    }
    let file_schema = Arc::new(Schema::new(file_fields));
    let scan_index = schema
        .fields()
        .iter()
        .map(|f| {
            file_schema.index_of(f.name()).unwrap_or_else(|_| {
                let at = partition_fields.iter().position(|p| p.name() == f.name());
                file_schema.fields().len() + at.unwrap_or_default()
            })
        })
        .collect();
    let partition_values = partition_fields
        .iter()
        .map(|f| {
            actions
                .column_by_name(&format!("partition.{}", f.name()))
                .cloned()
                .ok_or_else(|| format!("no partition values for {}", f.name()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bounds = (actions
        .num_rows()
        .saturating_mul(file_schema.fields().len())
        <= limits.bounds_cells)
        .then(|| FileBounds::new(&file_schema, actions));

    let mut files = Vec::with_capacity(actions.num_rows());
    let mut num_rows = Some(0usize);
    let mut bytes = 0usize;
    for i in 0..actions.num_rows() {
        let raw = paths.value(i);
        if Url::parse(raw).is_ok() {
            return Err("absolute file paths".to_string());
        }
        let url = root
            .join(raw)
            .map_err(|e| format!("file path {raw}: {e}"))?;
        let location =
            Path::from_url_path(url.path()).map_err(|e| format!("file path {raw}: {e}"))?;
        let size = u64::try_from(sizes.value(i)).map_err(|_| format!("size of {raw}"))?;
        let rows = (records.is_valid(i))
            .then(|| usize::try_from(records.value(i)).ok())
            .flatten();
        num_rows = num_rows.zip(rows).map(|(a, b)| a + b);
        let size_usize = usize::try_from(size).unwrap_or(usize::MAX);
        bytes = bytes.saturating_add(size_usize);
        let meta = ObjectMeta {
            location,
            // As deltalake's scan does: the footer cache then serves both readers of a file
            // (Delta files are never rewritten in place).
            last_modified: Utc.timestamp_nanos(0),
            size,
            e_tag: None,
            version: None,
        };
        let mut file = PartitionedFile::from(meta);
        for (field, values) in partition_fields.iter().zip(&partition_values) {
            let value = ScalarValue::try_from_array(values, i)
                .and_then(|v| v.cast_to(field.data_type()))
                .map_err(|e| format!("partition value of {} for {raw}: {e}", field.name()))?;
            file.partition_values.push(value);
        }
        let statistics = |column_statistics| Statistics {
            num_rows: rows.map_or(Precision::Absent, Precision::Exact),
            total_byte_size: Precision::Exact(size_usize),
            column_statistics,
        };
        file = match &bounds {
            // With the file's columns' bounds; DataFusion appends the partition values' own.
            Some(b) => file.with_statistics(Arc::new(statistics(b.of_file(i)))),
            // Without bounds, no per-file column vector at all (as deltalake's scan does).
            None => {
                file.statistics = Some(Arc::new(statistics(Vec::new())));
                file
            }
        };
        files.push(file);
    }
    Ok(Arc::new(PlainFiles {
        limits,
        store,
        file_schema,
        partition_fields,
        scan_index,
        files,
        num_rows: num_rows.map_or(Precision::Absent, Precision::Exact),
        bytes,
        footers: OnceCell::new(),
    }))
}

/// Per-file column statistics from the flattened add actions, as exact figures: the log
/// records each file's own minimum, maximum and null count, and DataFusion prunes a file only
/// by exact ones. (The table's statistics stay inexact, see [`crate::delta_stats`].)
struct FileBounds {
    /// Per column of the schema: its `min.`, `max.` and `null_count.` columns when its type is
    /// trusted for pruning.
    columns: Vec<Option<[Arc<dyn Array>; 3]>>,
    types: Vec<DataType>,
}

impl FileBounds {
    fn new(schema: &Schema, actions: &RecordBatch) -> Self {
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                if f.data_type().is_floating() || !crate::delta_stats::bounded(f.data_type()) {
                    return None;
                }
                crate::delta_stats::stats_columns(actions, f.name())
            })
            .collect();
        let types = schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        Self { columns, types }
    }

    fn of_file(&self, row: usize) -> Vec<ColumnStatistics> {
        self.columns
            .iter()
            .zip(&self.types)
            .map(|(column, to)| {
                let Some([min, max, nulls]) = column else {
                    return ColumnStatistics::new_unknown();
                };
                let value = |a: &Arc<dyn Array>| {
                    if a.is_null(row) {
                        return Precision::Absent;
                    }
                    ScalarValue::try_from_array(a, row)
                        .and_then(|v| v.cast_to(to))
                        .map_or(Precision::Absent, Precision::Exact)
                };
                let null_count = match value(nulls) {
                    Precision::Exact(v) => match v.cast_to(&DataType::UInt64) {
                        Ok(ScalarValue::UInt64(Some(n))) => {
                            usize::try_from(n).map_or(Precision::Absent, Precision::Exact)
                        }
                        _ => Precision::Absent,
                    },
                    _ => Precision::Absent,
                };
                ColumnStatistics {
                    min_value: value(min),
                    max_value: value(max),
                    null_count,
                    ..ColumnStatistics::new_unknown()
                }
            })
            .collect()
    }
}

/// A plain Delta version as a table: a Parquet scan of exactly its files.
#[derive(Debug)]
pub(crate) struct PlainDeltaTable {
    schema: SchemaRef,
    files: Arc<PlainFiles>,
}

impl PlainDeltaTable {
    /// `schema` is the table's schema as deltalake reads it, so both readers return the same
    /// types.
    pub(crate) fn new(schema: SchemaRef, files: Arc<PlainFiles>) -> Self {
        Self { schema, files }
    }
}

#[async_trait]
impl TableProvider for PlainDeltaTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Filters prune (files by the log's bounds, row groups by the footers) and are applied
        // again above the scan, as for a Parquet product.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // No file in the version, or none whose partition values pass: no rows.
        let read = self.files.by_partition_values(state, filters);
        if read.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => Arc::clone(&self.schema),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let files = &self.files;
        let source = format.file_source(
            TableSchema::builder(Arc::clone(&files.file_schema))
                .with_table_partition_cols(files.partition_fields.clone())
                .build(),
        );
        let projection = match projection {
            Some(p) => p.iter().map(|&i| files.scan_index[i]).collect(),
            None => files.scan_index.clone(),
        };
        let width = files.file_schema.fields().len() + files.partition_fields.len();
        let footers = self
            .files
            .footers
            .get_or_init(|| footer_statistics(state, &format, &self.files))
            .await;
        let mut statistics = footers.clone().unwrap_or_else(|| Statistics {
            num_rows: self.files.num_rows,
            total_byte_size: Precision::Exact(self.files.bytes),
            column_statistics: Vec::new(),
        });
        // The partition columns (and, from the log's figures, every column) without bounds.
        statistics
            .column_statistics
            .resize(width, ColumnStatistics::new_unknown());
        if read.len() < files.files.len() {
            statistics = of_part(statistics, &read, &files.files);
        }
        let groups = FileGroup::new(read).split_files(state.config().target_partitions().max(1));
        let config = FileScanConfigBuilder::new(self.files.store.clone(), source)
            .with_file_groups(groups)
            .with_statistics(statistics)
            .with_projection_indices(Some(projection))?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }
}

/// The statistics of `files` taken from their footers, merged as a Parquet product's listing
/// merges them (the footers land in the engine's footer cache, where the scan finds them);
/// None when a footer cannot be read (the scan then reports the log's figures, and reading the
/// file fails the query) or the version has more than [`FOOTER_STATISTICS_MAX_FILES`] files.
async fn footer_statistics(
    state: &dyn Session,
    format: &ParquetFormat,
    files: &PlainFiles,
) -> Option<Statistics> {
    let schema = &files.file_schema;
    if files.files.len() > files.limits.footer_files {
        return None;
    }
    let store = state.runtime_env().object_store(&files.store).ok()?;
    let concurrency = state
        .config_options()
        .execution
        .meta_fetch_concurrency
        .get();
    let metas: Vec<ObjectMeta> = files.files.iter().map(|f| f.object_meta.clone()).collect();
    let read: DfResult<Vec<Statistics>> = futures::stream::iter(metas)
        .map(|meta| {
            let (store, schema) = (Arc::clone(&store), Arc::clone(schema));
            async move { format.infer_stats(state, &store, schema, &meta).await }
        })
        .buffered(concurrency)
        .try_collect()
        .await;
    match read {
        Ok(each) => Statistics::try_merge_iter(each.iter(), schema).ok(),
        Err(e) => {
            tracing::debug!(store = %files.store, "footer statistics of a Delta version: {e}");
            None
        }
    }
}

/// The statistics of the whole version (`all` files) scaled to the files `read`: their row
/// count (from the log) and a proportional share of the sizes, as estimates; bounds stay those
/// of the whole version, which hold for any part of it.
fn of_part(whole: Statistics, read: &[PartitionedFile], all: &[PartitionedFile]) -> Statistics {
    let rows = |files: &[PartitionedFile]| -> Option<usize> {
        files
            .iter()
            .map(|f| f.statistics.as_ref()?.num_rows.get_value().copied())
            .sum()
    };
    let mut part = whole.to_inexact();
    let (Some(read_rows), Some(all_rows)) = (rows(read), rows(all)) else {
        part.num_rows = Precision::Absent;
        part.total_byte_size = Precision::Absent;
        return part;
    };
    let share = |n: usize| {
        let scaled = n as f64 * read_rows as f64 / all_rows.max(1) as f64;
        scaled as usize
    };
    part.num_rows = Precision::Exact(read_rows);
    part.total_byte_size = part.total_byte_size.map(share);
    for column in &mut part.column_statistics {
        column.byte_size = column.byte_size.map(share);
        column.null_count = column.null_count.map(|n| n.min(read_rows));
    }
    part
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::Field;
    use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
    use datafusion::prelude::SessionContext;

    /// A Delta table of two commits (ids 1..=3, then 10..=12) and what `plain_files` sees of it.
    async fn two_commits(dir: &std::path::Path) -> (DeltaTable, SchemaRef, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let url = Url::from_directory_path(dir).unwrap();
        let mut table = DeltaTable::try_from_url(url).await.unwrap();
        for ids in [[1, 2, 3], [10, 11, 12]] {
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from(ids.to_vec()))],
            )
            .unwrap();
            table = table
                .write(vec![batch])
                .with_save_mode(deltalake::protocol::SaveMode::Append)
                .await
                .unwrap();
        }
        let actions = crate::delta_stats::add_actions(&table).unwrap();
        (table, schema, actions)
    }

    async fn scan_statistics(schema: &SchemaRef, files: Arc<PlainFiles>) -> Statistics {
        let state = SessionContext::new().state();
        let plan = PlainDeltaTable::new(Arc::clone(schema), files)
            .scan(&state, None, &[], None)
            .await
            .unwrap();
        let stats = StatisticsContext::new()
            .compute(plan.as_ref(), &StatisticsArgs::new())
            .unwrap();
        Arc::unwrap_or_clone(stats)
    }

    #[tokio::test]
    async fn files_carry_the_logs_bounds_within_the_cell_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (table, schema, actions) = two_commits(dir.path()).await;
        let files = plain_files(&table, &schema, &actions, LIMITS).unwrap();
        let mut bounds: Vec<_> = files
            .files
            .iter()
            .map(|f| {
                let s = f.statistics.as_ref().unwrap();
                assert_eq!(s.num_rows, Precision::Exact(3));
                let id = &s.column_statistics[0];
                (id.min_value.clone(), id.max_value.clone(), id.null_count)
            })
            .collect();
        bounds.sort_by_key(|(min, _, _)| format!("{min:?}"));
        let exact = |v: i64| Precision::Exact(ScalarValue::Int64(Some(v)));
        assert_eq!(
            bounds,
            [
                (exact(1), exact(3), Precision::Exact(0)),
                (exact(10), exact(12), Precision::Exact(0))
            ]
        );

        let no_room = Limits {
            bounds_cells: 1,
            ..LIMITS
        };
        let files = plain_files(&table, &schema, &actions, no_room).unwrap();
        for f in &files.files {
            let s = f.statistics.as_ref().unwrap();
            assert_eq!(s.num_rows, Precision::Exact(3));
            assert!(s.column_statistics.is_empty());
        }
    }

    #[tokio::test]
    async fn the_planner_gets_the_footers_figures_within_the_file_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (table, schema, actions) = two_commits(dir.path()).await;

        let files = plain_files(&table, &schema, &actions, LIMITS).unwrap();
        let from_footers = scan_statistics(&schema, files).await;
        assert_eq!(from_footers.num_rows, Precision::Exact(6));
        let id = &from_footers.column_statistics[0];
        assert_eq!(id.min_value.get_value(), Some(&ScalarValue::Int64(Some(1))));
        assert_eq!(
            id.max_value.get_value(),
            Some(&ScalarValue::Int64(Some(12)))
        );

        let few = Limits {
            footer_files: 1,
            ..LIMITS
        };
        let files = plain_files(&table, &schema, &actions, few).unwrap();
        let from_log = scan_statistics(&schema, files).await;
        assert_eq!(from_log.num_rows, Precision::Exact(6));
        assert_eq!(from_log.column_statistics[0].min_value, Precision::Absent);
    }
}
