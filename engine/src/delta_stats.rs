//! Column statistics of a Delta product from its log, for join planning.
//!
//! deltalake's scan reports column statistics (min, max, null count) only for the columns of
//! the scan's predicate; a Delta product read without a filter has row counts but no column
//! statistics, so DataFusion cannot estimate the size of a join on it (it guessed the
//! `customer ⋈ orders` of TPC-H Q18 at a tenth of its size, built the semi-join's hash table
//! from the 6 M-row side, and ran out of memory at SF10). The log records every file's min, max
//! and null count; they are folded here once per resolution (per table version) and reported
//! by the product's scan ([`crate::scan::ProductScanExec`]) as inexact figures.
//!
//! Only types whose log statistics are exact bounds are used: integers, floats, decimals and
//! dates. Strings (the log truncates them), timestamps (kept to the millisecond), binary and
//! nested types are left unknown, as are columns some file has no statistics for.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, Schema};
use datafusion::common::stats::Precision;
use datafusion::common::{ColumnStatistics, ScalarValue};
use deltalake::DeltaTable;

/// Log statistics by column name.
pub(crate) type LogStatistics = Arc<HashMap<String, ColumnStatistics>>;

/// The statistics the log of `table` has for the columns of `schema` (see the module docs);
/// empty when the log has none or cannot be read as a table of files.
/// The version's add actions, flattened (`min.<column>`, `max.<column>`, ...); None when the
/// log cannot be read as a table of files.
pub(crate) fn add_actions(table: &DeltaTable) -> Option<RecordBatch> {
    table.snapshot().ok()?.add_actions_table(true).ok()
}

/// The per-file minimum, maximum and null count of column `name` in `files` (a version's
/// flattened add actions); None when the log records not all three.
pub(crate) fn stats_columns(files: &RecordBatch, name: &str) -> Option<[ArrayRef; 3]> {
    let column = |prefix: &str| files.column_by_name(&format!("{prefix}.{name}")).cloned();
    Some([column("min")?, column("max")?, column("null_count")?])
}

/// The statistics of `files` (a version's flattened add actions) for the columns of `schema`.
pub(crate) fn from_add_actions(files: &RecordBatch, schema: &Schema) -> LogStatistics {
    let mut out = HashMap::new();
    if files.num_rows() == 0 {
        return Arc::new(out);
    }
    for field in schema.fields() {
        if !bounded(field.data_type()) {
            continue;
        }
        let name = field.name();
        let Some([min, max, nulls]) = stats_columns(files, name) else {
            continue;
        };
        let (Some(lo), Some(hi), Some(nulls)) = (
            fold(&min, Ordering::Less, field.data_type()),
            fold(&max, Ordering::Greater, field.data_type()),
            total(&nulls),
        ) else {
            continue;
        };
        out.insert(
            name.clone(),
            ColumnStatistics {
                null_count: Precision::Inexact(nulls),
                min_value: Precision::Inexact(lo),
                max_value: Precision::Inexact(hi),
                ..ColumnStatistics::new_unknown()
            },
        );
    }
    Arc::new(out)
}

/// Types whose log statistics bound the values exactly.
pub(crate) fn bounded(t: &DataType) -> bool {
    t.is_integer()
        || t.is_floating()
        || matches!(
            t,
            DataType::Decimal128(..)
                | DataType::Decimal256(..)
                | DataType::Date32
                | DataType::Date64
        )
}

/// The smallest (`Less`) or largest (`Greater`) value of `values` as `to`; None when a file has
/// no value or the values do not compare.
fn fold(values: &ArrayRef, keep: Ordering, to: &DataType) -> Option<ScalarValue> {
    if values.null_count() > 0 {
        return None;
    }
    let mut best: Option<ScalarValue> = None;
    for i in 0..values.len() {
        let v = ScalarValue::try_from_array(values, i).ok()?;
        best = match best {
            Some(b) if v.partial_cmp(&b)? != keep => Some(b),
            _ => Some(v),
        };
    }
    let best = best?;
    if &best.data_type() == to {
        Some(best)
    } else {
        best.cast_to(to).ok()
    }
}

/// The sum of every file's null count; None when a file has none recorded.
fn total(counts: &ArrayRef) -> Option<usize> {
    if counts.null_count() > 0 {
        return None;
    }
    let counts = arrow::compute::cast(counts, &DataType::Int64).ok()?;
    let sum: i64 = counts.as_primitive::<Int64Type>().values().iter().sum();
    usize::try_from(sum).ok()
}
