//! `RuntimeFilterRowFilters`: decides, scan by scan, whether a Parquet scan evaluates its
//! predicate while decoding (DataFusion's "filter pushdown" / late materialization).
//!
//! Evaluating a predicate inside the Parquet reader (a `RowFilter`) decodes the predicate's
//! columns first and the other columns only for the rows that pass. That pays when few rows pass
//! and the other columns are wide; it costs when most rows pass or the predicate's columns are
//! most of what is read: the reader then decodes in two passes, builds selections row group by
//! row group, and the `FilterExec` above evaluates the same predicate again. Measured on TPC-H
//! SF1 with 2 cores, turning it on for every scan made the lineitem scan-and-filter queries
//! (Q4, Q6, Q12, Q15) 1.5–3× slower than without it, while the queries whose big scans are cut
//! down by a join's *runtime* filter (Q18: a few hundred of 1.5M orders survive) were 2× faster
//! with it.
//!
//! So meshql turns it off by default (`execution.parquet.pushdown_filters = false`: static
//! predicates still prune files, row groups and pages from statistics, and run in the
//! `FilterExec` above the scan) and this rule, which runs after DataFusion's filter pushdown,
//! turns it back on for exactly the scans whose predicate consists only of runtime filters
//! (`DynamicFilterPhysicalExpr`, pushed in by a hash join or a TopK). A runtime filter is
//! selective by construction (it keeps the rows that can still match) and is not evaluated
//! again above the scan, so decoding only the matching rows gains, except for the hash-table
//! lookups below. A scan that also carries a static predicate is left alone: the static part
//! would be evaluated twice.
//!
//! One kind of runtime filter pays only sometimes: a lookup into a join's hash table, which
//! DataFusion publishes instead of an `IN` list once the build side passes
//! `optimizer.hash_join_inlist_pushdown_max_distinct_values` keys or
//! `hash_join_inlist_pushdown_max_size` bytes. Evaluated while decoding, it costs a hash and a
//! probe per row. When the join is right above the scan, that repeats the join's own probe; what
//! it saves is decoding and repartitioning the rows it drops, which pays when nearly all are
//! dropped and costs when more survive, scattered. When the join is further up, dropping rows
//! early also spares the joins in between, unless the lookup drops few. Measured on TPC-H SF1
//! (in-process, 2 cores, every lookup evaluated while decoding):
//! - Q5's lineitem scan spent 182 ms on a lookup from the join right above to drop 85 % of
//!   6 M rows; Q9's spent 102 ms to drop 95 %.
//! - Q17's lineitem scan keeps 0.1 % of its rows (6 K of 6 M): there it pays.
//! - Q7's orders scan takes a lookup from a join two levels up (customers of two nations):
//!   dropping 92 % of the orders there spares the join in between, a 1.4× gain.
//! - Q9's lineitem scan also takes a lookup from the orders join further up, over all 1.5 M
//!   orders: it drops nothing.
//!
//! So every runtime filter this rule pushes into a reader is wrapped in an
//! [`AdaptiveRuntimeFilter`]. While the filter's current form is an `IN` list or bounds (a small
//! build side: TPC-H Q18's 57 orders) it is evaluated. A lookup is evaluated on the scan's first
//! [`SAMPLE_ROWS`] rows and then only while at most [`KEEP_IF_PASSING`] (from the join right
//! above: only repartitioning, coalescing, projections and meshql's product wrapper in between)
//! or [`KEEP_IF_PASSING_FROM_ABOVE`] (from a join further up) of the rows it has seen passed;
//! once more pass, the reader passes every further row and the joins drop them. Statistics pruning (files, row
//! groups, pages) sees every filter whole, and the joins still probe every row they get, so
//! answers cannot change; only where the work happens does.
//!
//! A scan that carries both kinds (`l_shipdate` in a year, and a runtime filter) does not filter
//! while decoding, so its runtime filters only pruned row groups: every row went on to the
//! operators below the join. The runtime filters from joins further up are now also added to
//! the static filter right above such a scan (wrapped like the reader's, a lookup at the 1 %
//! bar: after decoding it saves only the work of the operators above), where
//! [`crate::conjunctions`] evaluates them after the static conditions, on the rows those kept.
//! TPC-H Q20 aggregated 909 K lineitem rows into 543 K groups for a semi-join that keeps 263.
//! A filter from the join right above is left to that join's probe: evaluated after decoding,
//! it would only repeat the probe.
//!
//! Setting `execution.parquet.pushdown_filters = true` in `[engine.datafusion]` turns it on
//! for every scan, as in plain DataFusion; this rule then has nothing to do.

use std::any::Any;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::datatypes::{DataType, FieldRef, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::ScalarValue;
use datafusion::datasource::physical_plan::FileSource;
use datafusion::datasource::physical_plan::{FileScanConfig, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::logical_expr::ColumnarValue;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::conjunction;
use datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, DynamicFilterPhysicalExpr, InListExpr, Literal,
};
use datafusion::physical_expr::split_conjunction;
use datafusion::physical_expr::utils::reassign_expr_columns;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::joins::{HashExpr, HashJoinExec, HashTableLookupExpr};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::ExecutionPlan;

/// Enables Parquet row filters on the scans whose predicate is only runtime filters.
#[derive(Debug)]
pub(crate) struct RuntimeFilterRowFilters;

/// True when `predicate` is made only of runtime (dynamic) filters.
fn only_runtime_filters(predicate: &Arc<dyn PhysicalExpr>) -> bool {
    let conjuncts = split_conjunction(predicate);
    !conjuncts.is_empty()
        && conjuncts.iter().all(|c| {
            let any: &dyn std::any::Any = c.as_ref();
            any.is::<DynamicFilterPhysicalExpr>()
        })
}

/// Rows of a scan a hash-lookup runtime filter is evaluated on before deciding whether to keep
/// evaluating it.
pub const SAMPLE_ROWS: usize = 32_768;

/// Largest share of the sampled rows passing for which a hash-lookup filter from the join right
/// above keeps being evaluated while decoding (1 %).
pub const KEEP_IF_PASSING: f64 = 0.01;

/// The same for a hash-lookup filter from a join further up (half): dropping rows early spares
/// the joins in between, but a lookup that drops few repeats a probe for little.
pub const KEEP_IF_PASSING_FROM_ABOVE: f64 = 0.5;

/// Nodes between a scan and a join's probe whose work per row a runtime filter evaluated
/// below them saves nothing of but their own: they pass rows through unchanged (a static
/// filter only drops rows).
fn passes_rows_through(node: &dyn ExecutionPlan) -> bool {
    node.is::<RepartitionExec>()
        || node.is::<CoalescePartitionsExec>()
        || node.is::<ProjectionExec>()
        || node.is::<FilterExec>()
        || node.is::<crate::ProductScanExec>()
}

/// `filter` (the static predicate above a Parquet scan) with the scan's runtime filters from
/// joins further up added, when the scan has both: the reader then evaluates neither while
/// decoding, so without this the runtime filters only prune row groups, and every row reaches
/// the operators below the join (TPC-H Q20: 909 K lineitem rows aggregated into 543 K groups
/// for a semi-join that keeps 263). Filters from the join right above are left to its probe.
fn with_runtime_filters_of_its_scan(
    filter: &FilterExec,
    from_the_join_above: &HashSet<u64>,
) -> Result<Option<FilterExec>> {
    let Some(scan) = filter.input().downcast_ref::<DataSourceExec>() else {
        return Ok(None);
    };
    let Some((_, parquet)) = scan.downcast_to_file_source::<ParquetSource>() else {
        return Ok(None);
    };
    let Some(predicate) = parquet.filter() else {
        return Ok(None);
    };
    let conjuncts = split_conjunction(&predicate);
    let is_runtime =
        |c: &Arc<dyn PhysicalExpr>| (c.as_ref() as &dyn Any).is::<DynamicFilterPhysicalExpr>();
    if conjuncts.iter().all(|c| is_runtime(c)) {
        return Ok(None); // only runtime filters: the reader evaluates them (see the rule)
    }
    let schema = filter.input().schema();
    let added: Vec<Arc<dyn PhysicalExpr>> = conjuncts
        .iter()
        .filter(|c| is_runtime(c))
        .filter(|c| {
            !c.expression_id()
                .is_some_and(|id| from_the_join_above.contains(&id))
        })
        // In the scan's predicate, columns are numbered as in the table; above it, as in the
        // scan's output. A filter on a column the scan does not output stays in the scan.
        .filter_map(|c| reassign_expr_columns(Arc::clone(c), &schema).ok())
        // Evaluated after decoding, a lookup saves only the work of the operators it drops
        // rows for, at ~85 ns a row (Q21: 324 ms to keep 48 %): kept only while it drops
        // nearly all (Q20 keeps 0.04 %).
        .map(|c| Arc::new(AdaptiveRuntimeFilter::new(c, KEEP_IF_PASSING)) as Arc<dyn PhysicalExpr>)
        .collect();
    if added.is_empty() {
        return Ok(None);
    }
    let predicate = conjunction(
        split_conjunction(filter.predicate())
            .into_iter()
            .cloned()
            .chain(added),
    );
    FilterExecBuilder::from(filter)
        .with_predicate(predicate)
        .build()
        .map(Some)
}

/// The identities (`PhysicalExpr::expression_id`) of the runtime filters whose producing hash
/// join sits right above the scan that receives them: its probe side reaches a scan through
/// nodes that pass rows through unchanged.
fn filters_from_the_join_above(plan: &Arc<dyn ExecutionPlan>) -> Result<HashSet<u64>> {
    let mut ids = HashSet::new();
    plan.apply(|node| {
        if let Some(join) = node.downcast_ref::<HashJoinExec>() {
            for id in join
                .dynamic_expressions_produced()
                .iter()
                .filter_map(|f| f.expression_id())
            {
                let mut probe = Arc::clone(join.right());
                while passes_rows_through(probe.as_ref()) && probe.children().len() == 1 {
                    probe = Arc::clone(probe.children()[0]);
                }
                if probe.is::<DataSourceExec>() {
                    ids.insert(id);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(ids)
}

impl PhysicalOptimizerRule for RuntimeFilterRowFilters {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if config.execution.parquet.pushdown_filters {
            // Every scan already filters while decoding.
            return Ok(plan);
        }
        let from_the_join_above = filters_from_the_join_above(&plan)?;
        plan.transform_up(|node| {
            if let Some(filter) = node.downcast_ref::<FilterExec>() {
                return Ok(
                    match with_runtime_filters_of_its_scan(filter, &from_the_join_above)? {
                        Some(filter) => {
                            Transformed::yes(Arc::new(filter) as Arc<dyn ExecutionPlan>)
                        }
                        None => Transformed::no(node),
                    },
                );
            }
            let Some(exec) = node.downcast_ref::<DataSourceExec>() else {
                return Ok(Transformed::no(node));
            };
            let Some((scan, parquet)) = exec.downcast_to_file_source::<ParquetSource>() else {
                return Ok(Transformed::no(node));
            };
            let predicate = match parquet.filter() {
                Some(p) if only_runtime_filters(&p) => p,
                _ => return Ok(Transformed::no(node)),
            };
            let predicate = conjunction(split_conjunction(&predicate).into_iter().map(|c| {
                let direct = c
                    .expression_id()
                    .is_some_and(|id| from_the_join_above.contains(&id));
                let keep_if_passing = if direct {
                    KEEP_IF_PASSING
                } else {
                    KEEP_IF_PASSING_FROM_ABOVE
                };
                Arc::new(AdaptiveRuntimeFilter::new(Arc::clone(c), keep_if_passing))
                    as Arc<dyn PhysicalExpr>
            }));
            let source = parquet
                .with_predicate(predicate)
                .with_pushdown_filters(true);
            let mut scan: FileScanConfig = scan.clone();
            scan.file_source = Arc::new(source);
            let exec = exec.clone().with_data_source(Arc::new(scan));
            Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "meshql_runtime_filter_row_filters"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A runtime filter as a scan's Parquet reader evaluates it: the filter's current form while
/// that is an `IN` list or bounds; a hash-table lookup on the scan's first [`SAMPLE_ROWS`] rows
/// and afterwards only while at most its share of the rows seen passed (see the module
/// header); once more pass, every row passes. Everything else (its
/// children, its snapshot for statistics pruning, its display and its wire form) is the
/// wrapped filter's.
#[derive(Debug)]
pub(crate) struct AdaptiveRuntimeFilter {
    /// The runtime filter (a `DynamicFilterPhysicalExpr`), or, once a snapshot was taken, its
    /// form at that moment.
    inner: Arc<dyn PhysicalExpr>,
    /// What the scan's readers have seen of a lookup so far, shared by every copy the scan's
    /// files make of this expression.
    sample: Arc<Sample>,
    /// The form this copy evaluates, and the filter generation + 1 it was made for: the
    /// current form with partition-routed `IN` lists made one (see [`unroute`]). Per copy: a
    /// file's copy may number the columns differently.
    evaluated: Mutex<Option<(u64, Arc<dyn PhysicalExpr>)>>,
}

/// Rows a lookup was evaluated on and rows that passed, and the decision once made.
#[derive(Debug, Default)]
struct Sample {
    /// Largest share of sampled rows passing for which a lookup is kept.
    keep_if_passing: f64,
    seen: AtomicUsize,
    passed: AtomicUsize,
    /// Set once the sample showed the lookup is not worth evaluating.
    skip: AtomicBool,
    /// The filter's generation + 1 that `lookup` was found for (0: none yet).
    form_version: AtomicU64,
    /// Whether the filter's form at `form_version` holds a hash-table lookup.
    lookup: AtomicBool,
}

impl AdaptiveRuntimeFilter {
    fn new(inner: Arc<dyn PhysicalExpr>, keep_if_passing: f64) -> Self {
        Self::with_sample(
            inner,
            Arc::new(Sample {
                keep_if_passing,
                ..Sample::default()
            }),
        )
    }

    fn with_sample(inner: Arc<dyn PhysicalExpr>, sample: Arc<Sample>) -> Self {
        Self {
            inner,
            sample,
            evaluated: Mutex::new(None),
        }
    }

    /// The form to evaluate now, and whether it is a hash-table lookup. Both are found once per
    /// version of the filter: an `IN` list can hold thousands of values, too many to walk for
    /// every batch.
    fn current(&self, schema: &Schema) -> Result<(Arc<dyn PhysicalExpr>, bool)> {
        let any: &dyn Any = self.inner.as_ref();
        let Some(dynamic) = any.downcast_ref::<DynamicFilterPhysicalExpr>() else {
            return Ok((Arc::clone(&self.inner), false));
        };
        // Read before the form: a newer form found under an older generation is only looked at
        // again at the next batch.
        let version = dynamic.snapshot_generation().wrapping_add(1);
        let mut evaluated = self
            .evaluated
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let form = match evaluated.as_ref() {
            Some((made_for, form)) if *made_for == version => Arc::clone(form),
            _ => {
                let form = unroute(dynamic.current()?, schema)?;
                *evaluated = Some((version, Arc::clone(&form)));
                form
            }
        };
        drop(evaluated);
        if self.sample.form_version.load(Ordering::Acquire) == version {
            return Ok((form, self.sample.lookup.load(Ordering::Acquire)));
        }
        let lookup = form.exists(|e| {
            let any: &dyn Any = e.as_ref();
            Ok(any.is::<HashTableLookupExpr>())
        })?;
        self.sample.lookup.store(lookup, Ordering::Release);
        self.sample.form_version.store(version, Ordering::Release);
        Ok((form, lookup))
    }

    /// Counts one evaluated batch of a lookup; from [`SAMPLE_ROWS`] rows seen on, stops the
    /// lookup as soon as more than its share of them passed.
    fn record(&self, rows: usize, passed: usize) {
        let passed = self.sample.passed.fetch_add(passed, Ordering::Relaxed) + passed;
        let seen = self.sample.seen.fetch_add(rows, Ordering::Relaxed) + rows;
        if seen >= SAMPLE_ROWS && passed as f64 > self.sample.keep_if_passing * seen as f64 {
            self.sample.skip.store(true, Ordering::Relaxed);
        }
    }
}

crate::wrapper_expr::stands_for!(AdaptiveRuntimeFilter, inner);

impl PhysicalExpr for AdaptiveRuntimeFilter {
    fn data_type(&self, input_schema: &Schema) -> Result<DataType> {
        self.inner.data_type(input_schema)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        self.inner.nullable(input_schema)
    }

    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        self.inner.return_field(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let every_row = || Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))));
        if self.sample.skip.load(Ordering::Relaxed) {
            return every_row();
        }
        let (current, lookup) = self.current(batch.schema_ref())?;
        let result = current.evaluate(batch)?;
        if lookup {
            let passed = match &result {
                ColumnarValue::Array(array) => {
                    match array.as_any().downcast_ref::<BooleanArray>() {
                        Some(mask) => mask.true_count(),
                        None => batch.num_rows(),
                    }
                }
                ColumnarValue::Scalar(ScalarValue::Boolean(Some(false) | None)) => 0,
                ColumnarValue::Scalar(_) => batch.num_rows(),
            };
            self.record(batch.num_rows(), passed);
        }
        Ok(result)
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.inner]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        match (children.pop(), children.is_empty()) {
            (Some(inner), true) => Ok(Arc::new(Self::with_sample(inner, Arc::clone(&self.sample)))),
            _ => datafusion::common::internal_err!("AdaptiveRuntimeFilter takes one child"),
        }
    }

    /// The wrapped filter's snapshot (taken by the recursion before this is called) is this
    /// node's: statistics pruning sees the whole filter.
    fn snapshot(&self) -> Result<Option<Arc<dyn PhysicalExpr>>> {
        Ok(Some(Arc::clone(&self.inner)))
    }

    // On the wire the wrapper is the filter itself: a worker evaluates it as DataFusion does.
    crate::wrapper_expr::stands_for_in_sql_and_on_the_wire!(inner);
}

/// `form` with every partition-routed `IN` list made one list of every partition's keys.
///
/// A partitioned hash join whose build sides are small publishes, as its runtime filter,
/// `CASE hash_repartition(k) % n WHEN 0 THEN k >= min0 AND k <= max0 AND k IN (keys of
/// partition 0) WHEN 1 THEN ... ELSE false END`: per probe row a hash, a `CASE` that splits the
/// batch by partition and scatters the results back, and a set lookup (TPC-H Q17's second
/// lineitem scan: 201 ms of evaluation for 6 M rows). A key hashed to partition `i` can only be
/// among partition `i`'s keys, which were routed by the same hash, so `k IN (every
/// partition's keys)` keeps exactly the same rows (and were a key routed otherwise, it would
/// keep more, never fewer: the filter stays advisory). The bounds are implied by the list.
/// Any other form (lookups, a partition whose keys are unknown) is left as it is.
fn unroute(form: Arc<dyn PhysicalExpr>, schema: &Schema) -> Result<Arc<dyn PhysicalExpr>> {
    form.transform_down(|e| match one_in_list(&e, schema)? {
        Some(list) => Ok(Transformed::new(list, true, TreeNodeRecursion::Jump)),
        None => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

fn is_false(e: &Arc<dyn PhysicalExpr>) -> bool {
    let any: &dyn Any = e.as_ref();
    any.downcast_ref::<Literal>()
        .is_some_and(|l| l.value() == &ScalarValue::Boolean(Some(false)))
}

/// Whether `e` compares `key` with a literal (a partition's bounds).
fn is_bound(e: &Arc<dyn PhysicalExpr>, key: &Arc<dyn PhysicalExpr>) -> bool {
    let any: &dyn Any = e.as_ref();
    any.downcast_ref::<BinaryExpr>().is_some_and(|b| {
        matches!(
            b.op(),
            Operator::GtEq | Operator::LtEq | Operator::Gt | Operator::Lt | Operator::Eq
        ) && b.left().as_ref() == key.as_ref()
            && (b.right().as_ref() as &dyn Any).is::<Literal>()
    })
}

/// The one `IN` list equivalent to `e`, if `e` is a partition-routed `IN` list (see
/// [`unroute`]).
fn one_in_list(
    e: &Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<Option<Arc<dyn PhysicalExpr>>> {
    let any: &dyn Any = e.as_ref();
    let Some(case) = any.downcast_ref::<CaseExpr>() else {
        return Ok(None);
    };
    let routed_by_hash = case.expr().is_some_and(|routing| {
        let any: &dyn Any = routing.as_ref();
        any.downcast_ref::<BinaryExpr>().is_some_and(|m| {
            m.op() == &Operator::Modulo && (m.left().as_ref() as &dyn Any).is::<HashExpr>()
        })
    });
    if !routed_by_hash || !case.else_expr().is_some_and(is_false) {
        return Ok(None);
    }
    let mut key: Option<Arc<dyn PhysicalExpr>> = None;
    let mut values = Vec::new();
    for (_, then) in case.when_then_expr() {
        if is_false(then) {
            continue; // a partition without keys
        }
        let conjuncts = split_conjunction(then);
        let lists: Vec<&InListExpr> = conjuncts
            .iter()
            .filter_map(|c| (c.as_ref() as &dyn Any).downcast_ref::<InListExpr>())
            .collect();
        let [list] = lists.as_slice() else {
            return Ok(None);
        };
        if list.negated() {
            return Ok(None);
        }
        match &key {
            Some(k) if k.as_ref() != list.expr().as_ref() => return Ok(None),
            Some(_) => {}
            None => key = Some(Arc::clone(list.expr())),
        }
        let others_are_bounds = conjuncts
            .iter()
            .all(|c| (c.as_ref() as &dyn Any).is::<InListExpr>() || is_bound(c, list.expr()));
        if !others_are_bounds {
            return Ok(None);
        }
        values.extend(list.list().iter().cloned());
    }
    let Some(key) = key else {
        return Ok(None);
    };
    Ok(Some(Arc::new(InListExpr::try_new(
        key, values, false, schema,
    )?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{binary, col, lit};

    fn schema() -> Schema {
        Schema::new(vec![Field::new("a", DataType::Int64, false)])
    }

    fn dynamic() -> Arc<dyn PhysicalExpr> {
        let s = schema();
        Arc::new(DynamicFilterPhysicalExpr::new(
            vec![col("a", &s).unwrap()],
            lit(true),
        ))
    }

    fn static_filter() -> Arc<dyn PhysicalExpr> {
        let s = schema();
        binary(col("a", &s).unwrap(), Operator::Gt, lit(5i64), &s).unwrap()
    }

    fn and(l: Arc<dyn PhysicalExpr>, r: Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
        binary(l, Operator::And, r, &schema()).unwrap()
    }

    #[test]
    fn a_lookup_is_kept_only_while_the_sample_passes_few_enough_rows() {
        let decided = |keep_if_passing: f64, batches: &[(usize, usize)]| {
            let filter = AdaptiveRuntimeFilter::new(dynamic(), keep_if_passing);
            for (rows, passed) in batches {
                filter.record(*rows, *passed);
            }
            filter.sample.skip.load(Ordering::Relaxed)
        };
        // Nothing is decided before SAMPLE_ROWS rows were seen.
        assert!(!decided(
            KEEP_IF_PASSING,
            &[(SAMPLE_ROWS - 1, SAMPLE_ROWS - 1)]
        ));
        // From the join right above: kept at 1 % passing, dropped just past it.
        let one_percent = SAMPLE_ROWS / 100;
        assert!(!decided(KEEP_IF_PASSING, &[(SAMPLE_ROWS, one_percent)]));
        assert!(decided(KEEP_IF_PASSING, &[(SAMPLE_ROWS, one_percent + 2)]));
        // From further up: kept at a fifth passing, dropped at nine tenths; counted over batches.
        let half = SAMPLE_ROWS / 2;
        assert!(!decided(
            KEEP_IF_PASSING_FROM_ABOVE,
            &[(half, half / 5), (half, half / 5)]
        ));
        assert!(decided(
            KEEP_IF_PASSING_FROM_ABOVE,
            &[(half, half * 9 / 10), (half, half * 9 / 10)]
        ));
    }

    /// DataFusion's runtime filter for a partitioned join over `a` with small build sides: the
    /// keys `build` split by the same hash as the join's repartitioning, `else_` for the rows
    /// of no partition.
    fn routed_in_lists(build: &[i64], partitions: u64, else_: bool) -> Arc<dyn PhysicalExpr> {
        use datafusion::arrow::array::{Array, Int64Array, UInt64Array};
        use datafusion::physical_plan::joins::SeededRandomState;
        let s = schema();
        let a = col("a", &s).unwrap();
        let routing = binary(
            Arc::new(HashExpr::new(
                vec![Arc::clone(&a)],
                SeededRandomState::with_seed(7),
                "hash_repartition".to_string(),
            )),
            Operator::Modulo,
            lit(ScalarValue::UInt64(Some(partitions))),
            &s,
        )
        .unwrap();
        let keys = RecordBatch::try_new(
            Arc::new(s.clone()),
            vec![Arc::new(Int64Array::from(build.to_vec()))],
        )
        .unwrap();
        let routed = routing
            .evaluate(&keys)
            .unwrap()
            .into_array(build.len())
            .unwrap();
        let routed = routed.as_any().downcast_ref::<UInt64Array>().unwrap();
        let branches = (0..partitions)
            .map(|p| {
                let mine: Vec<i64> = (0..routed.len())
                    .filter(|i| routed.value(*i) == p)
                    .map(|i| build[i])
                    .collect();
                let then = match (mine.iter().min(), mine.iter().max()) {
                    (Some(lo), Some(hi)) => and(
                        and(
                            binary(Arc::clone(&a), Operator::GtEq, lit(*lo), &s).unwrap(),
                            binary(Arc::clone(&a), Operator::LtEq, lit(*hi), &s).unwrap(),
                        ),
                        Arc::new(
                            InListExpr::try_new(
                                Arc::clone(&a),
                                mine.iter().map(|v| lit(*v)).collect(),
                                false,
                                &s,
                            )
                            .unwrap(),
                        ),
                    ),
                    _ => lit(false),
                };
                (lit(ScalarValue::UInt64(Some(p))), then)
            })
            .collect();
        Arc::new(CaseExpr::try_new(Some(routing), branches, Some(lit(else_))).unwrap())
    }

    #[test]
    fn partition_routed_in_lists_are_evaluated_as_one_list_with_the_same_rows() {
        use datafusion::arrow::array::Int64Array;
        let s = schema();
        let build: Vec<i64> = (0..300).map(|i| i * 7 % 1000).collect();
        let probe = RecordBatch::try_new(
            Arc::new(s.clone()),
            vec![Arc::new(Int64Array::from((0..2000).collect::<Vec<i64>>()))],
        )
        .unwrap();
        let rows = |e: &Arc<dyn PhysicalExpr>| {
            let mask = e.evaluate(&probe).unwrap().into_array(2000).unwrap();
            let mask = mask
                .as_any()
                .downcast_ref::<BooleanArray>()
                .unwrap()
                .clone();
            (0..2000).filter(|i| mask.value(*i)).collect::<Vec<_>>()
        };
        for partitions in [1, 2, 4] {
            let routed = routed_in_lists(&build, partitions, false);
            let one = unroute(Arc::clone(&routed), &s).unwrap();
            let any: &dyn Any = one.as_ref();
            assert!(any.is::<InListExpr>(), "{one}");
            assert_eq!(rows(&one), rows(&routed));
            assert_eq!(rows(&one).len(), 300);
        }
        // Rows of a partition whose keys are unknown pass: left as it is.
        let unknown = routed_in_lists(&build, 2, true);
        let kept = unroute(Arc::clone(&unknown), &s).unwrap();
        assert!(Arc::ptr_eq(&kept, &unknown), "{kept}");
        // Inside a larger filter, only the routed part changes.
        let inside = and(routed_in_lists(&build, 2, false), static_filter());
        let changed = unroute(Arc::clone(&inside), &s).unwrap();
        assert!(!changed.to_string().contains("CASE"), "{changed}");
        assert_eq!(rows(&changed), rows(&inside));
    }

    #[test]
    fn only_predicates_made_of_runtime_filters_qualify() {
        assert!(only_runtime_filters(&dynamic()));
        assert!(only_runtime_filters(&and(dynamic(), dynamic())));
        assert!(!only_runtime_filters(&static_filter()));
        assert!(!only_runtime_filters(&and(static_filter(), dynamic())));
        assert!(!only_runtime_filters(&and(dynamic(), static_filter())));
    }
}
