//! Filters made of simple comparisons (`l_shipdate >= DATE '1994-01-01' AND l_discount <= 0.07
//! AND l_quantity < 24`) evaluated conjunct by conjunct over whole batches.
//!
//! DataFusion evaluates `a AND b` by evaluating `a`, and when at most a fifth of its rows are
//! true, copying those rows of the batch, evaluating `b` on the copy and scattering the result
//! back, row by row (`pre_selection_scatter`). That pays when `b` is expensive (a string
//! function); for a chain of cheap comparisons it copies and scatters again at every `AND`.
//! TPC-H Q6's filter (five comparisons, 2 % of 6 M rows pass) spent 99 ms there; a profile put
//! `pre_selection_scatter`, `BooleanArray::slice` and the batch copies at ~18 % of the query.
//!
//! [`SimpleConjunctions`] runs last among the physical optimizer rules and gives every
//! `FilterExec` whose predicate has two or more conjuncts, some of them simple (a comparison of
//! columns and literals, an `IN` list of literals over a column, a null test of a column, or an
//! `AND` / `OR` of those, evaluated by DataFusion within the conjunct), an [`AllOf`] predicate:
//! the simple conjuncts are evaluated over the whole batch (vectorized comparisons) and the
//! results intersected as bitmaps; the others (casts, arithmetic, functions, runtime filters)
//! then run in their order on the rows still passing only. A `FilterExec` keeps the rows whose
//! predicate is true, so `AllOf` returns true exactly where every conjunct is true (a null
//! counts as not true, as it does for the filter). A simple conjunct cannot fail on a row, so
//! evaluating it on rows another conjunct rejects cannot turn an answer into an error; the
//! others see a subset of the rows DataFusion's `AND` would give them.
//!
//! The filter's display, its wire form (the original predicate: a cluster worker evaluates it
//! as DataFusion does) and everything planned before this rule are unchanged.

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::BooleanBufferBuilder;
use datafusion::arrow::array::{Array, AsArray, BooleanArray};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, FieldRef, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::expressions::{
    BinaryExpr, Column, InListExpr, IsNotNullExpr, IsNullExpr, Literal,
};
use datafusion::physical_expr::split_conjunction;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::ExecutionPlan;

/// Gives filters made of simple comparisons an [`AllOf`] predicate.
#[derive(Debug)]
pub(crate) struct SimpleConjunctions;

fn is_column_or_literal(e: &Arc<dyn PhysicalExpr>) -> bool {
    let any: &dyn Any = e.as_ref();
    any.is::<Column>() || any.is::<Literal>()
}

/// Whether `e` is a conjunct that cannot fail on any row (see the module header).
fn is_simple(e: &Arc<dyn PhysicalExpr>) -> bool {
    let any: &dyn Any = e.as_ref();
    if let Some(b) = any.downcast_ref::<BinaryExpr>() {
        return match b.op() {
            // `l_shipmode = 'MAIL' OR l_shipmode = 'SHIP'` (an `IN` list the planner expanded)
            Operator::And | Operator::Or => is_simple(b.left()) && is_simple(b.right()),
            Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom => {
                is_column_or_literal(b.left()) && is_column_or_literal(b.right())
            }
            _ => false,
        };
    }
    if let Some(list) = any.downcast_ref::<InListExpr>() {
        let key: &dyn Any = list.expr().as_ref();
        return key.is::<Column>()
            && list
                .list()
                .iter()
                .all(|v| (v.as_ref() as &dyn Any).is::<Literal>());
    }
    if let Some(test) = any.downcast_ref::<IsNullExpr>() {
        return (test.arg().as_ref() as &dyn Any).is::<Column>();
    }
    if let Some(test) = any.downcast_ref::<IsNotNullExpr>() {
        return (test.arg().as_ref() as &dyn Any).is::<Column>();
    }
    false
}

impl PhysicalOptimizerRule for SimpleConjunctions {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(filter) = node.downcast_ref::<FilterExec>() else {
                return Ok(Transformed::no(node));
            };
            let predicate = filter.predicate();
            if (predicate.as_ref() as &dyn Any).is::<AllOf>() {
                return Ok(Transformed::no(node));
            }
            let (simple, rest): (Vec<_>, Vec<_>) = split_conjunction(predicate)
                .into_iter()
                .cloned()
                .partition(is_simple);
            if simple.is_empty() || simple.len() + rest.len() < 2 {
                return Ok(Transformed::no(node));
            }
            let all_of = Arc::new(AllOf {
                simple,
                rest,
                original: Arc::clone(predicate),
            });
            let rebuilt = FilterExecBuilder::from(filter)
                .with_predicate(all_of)
                .build()?;
            Ok(Transformed::yes(Arc::new(rebuilt) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "meshql_simple_conjunctions"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A `FilterExec` predicate: true where every conjunct is true, false elsewhere (null
/// included), each conjunct evaluated over the whole batch. Displayed, compared and encoded as
/// the predicate it replaces.
#[derive(Debug)]
pub(crate) struct AllOf {
    /// Evaluated over the whole batch, first.
    simple: Vec<Arc<dyn PhysicalExpr>>,
    /// Evaluated, in their order, only on the rows every conjunct before passed.
    rest: Vec<Arc<dyn PhysicalExpr>>,
    original: Arc<dyn PhysicalExpr>,
}

crate::wrapper_expr::stands_for!(AllOf, original);

fn none_true(rows: usize) -> ColumnarValue {
    ColumnarValue::Array(Arc::new(BooleanArray::new(
        BooleanBuffer::new_unset(rows),
        None,
    )))
}

/// The rows a conjunct's value is true for (null is not), or `None` when it is true for all.
fn true_rows(value: ColumnarValue, rows: usize) -> Option<BooleanBuffer> {
    match value {
        ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))) => None,
        ColumnarValue::Scalar(_) => Some(BooleanBuffer::new_unset(rows)),
        ColumnarValue::Array(array) => {
            let mask = array.as_boolean();
            Some(match mask.nulls() {
                Some(nulls) => mask.values() & nulls.inner(),
                None => mask.values().clone(),
            })
        }
    }
}

impl PhysicalExpr for AllOf {
    fn data_type(&self, _input_schema: &Schema) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, _input_schema: &Schema) -> Result<bool> {
        Ok(false)
    }

    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        Ok(Arc::new(
            self.original
                .return_field(input_schema)?
                .as_ref()
                .clone()
                .with_nullable(false),
        ))
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let rows = batch.num_rows();
        let mut all: Option<BooleanBuffer> = None;
        for conjunct in &self.simple {
            let Some(true_here) = true_rows(conjunct.evaluate(batch)?, rows) else {
                continue;
            };
            let so_far = match all {
                Some(before) => &before & &true_here,
                None => true_here,
            };
            if so_far.count_set_bits() == 0 {
                return Ok(none_true(rows));
            }
            all = Some(so_far);
        }
        for conjunct in &self.rest {
            // Only on the rows still passing, as DataFusion's `AND` does when few pass.
            let Some(passing) = all.take() else {
                all = true_rows(conjunct.evaluate(batch)?, rows);
                continue;
            };
            let kept = filter_record_batch(batch, &BooleanArray::new(passing.clone(), None))?;
            let Some(true_there) = true_rows(conjunct.evaluate(&kept)?, kept.num_rows()) else {
                all = Some(passing);
                continue;
            };
            let mut so_far = BooleanBufferBuilder::new(rows);
            so_far.append_n(rows, false);
            for (at, row) in passing.set_indices().enumerate() {
                if true_there.value(at) {
                    so_far.set_bit(row, true);
                }
            }
            let so_far = so_far.finish();
            if so_far.count_set_bits() == 0 {
                return Ok(none_true(rows));
            }
            all = Some(so_far);
        }
        Ok(match all {
            Some(mask) => ColumnarValue::Array(Arc::new(BooleanArray::new(mask, None))),
            None => ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))),
        })
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        self.simple.iter().chain(&self.rest).collect()
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let count = self.simple.len() + self.rest.len();
        if children.len() != count {
            return datafusion::common::internal_err!(
                "AllOf has {count} conjuncts, got {}",
                children.len()
            );
        }
        let original = children
            .iter()
            .cloned()
            .reduce(|l, r| Arc::new(BinaryExpr::new(l, Operator::And, r)))
            .unwrap_or_else(|| Arc::clone(&self.original));
        let rest = children.split_off(self.simple.len());
        Ok(Arc::new(Self {
            simple: children,
            rest,
            original,
        }))
    }

    // On the wire, the expression it replaces.
    crate::wrapper_expr::stands_for_in_sql_and_on_the_wire!(original);
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::Field;
    use datafusion::physical_expr::expressions::{binary, col, in_list, is_null, lit};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ])
    }

    #[test]
    fn all_of_is_true_exactly_where_the_conjunction_is() {
        let s = schema();
        let batch = RecordBatch::try_new(
            Arc::new(s.clone()),
            vec![
                Arc::new(Int64Array::from(
                    (0..1000)
                        .map(|i| (i % 7 != 0).then_some(i))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    (0..1000)
                        .map(|i| (i % 5 != 0).then(|| ["x", "y", "z"][i % 3]))
                        .collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        let a = col("a", &s).unwrap();
        let c = col("s", &s).unwrap();
        let conjuncts = vec![
            binary(Arc::clone(&a), Operator::GtEq, lit(100i64), &s).unwrap(),
            binary(Arc::clone(&a), Operator::Lt, lit(900i64), &s).unwrap(),
            in_list(Arc::clone(&c), vec![lit("x"), lit("z")], &false, &s).unwrap(),
            binary(Arc::clone(&a), Operator::NotEq, lit(500i64), &s).unwrap(),
        ];
        let and = conjuncts
            .iter()
            .cloned()
            .reduce(|l, r| binary(l, Operator::And, r, &s).unwrap())
            .unwrap();
        assert!(conjuncts.iter().all(is_simple));
        let all_of = AllOf {
            simple: conjuncts.clone(),
            rest: Vec::new(),
            original: Arc::clone(&and),
        };
        let kept = |v: ColumnarValue| {
            let mask = v.into_array(1000).unwrap();
            let mask = mask.as_boolean();
            (0..1000)
                .filter(|i| mask.is_valid(*i) && mask.value(*i))
                .collect::<Vec<_>>()
        };
        let expected = kept(and.evaluate(&batch).unwrap());
        assert!(
            expected.len() > 100 && expected.len() < 600,
            "{}",
            expected.len()
        );
        assert_eq!(kept(all_of.evaluate(&batch).unwrap()), expected);
        assert_eq!(all_of.to_string(), and.to_string());

        // A conjunct that is not simple runs after the simple ones, on their rows only: here
        // `1000 / (a - 50) > 0` fails at a = 50, a row `a >= 100` rejects.
        let minus = binary(Arc::clone(&a), Operator::Minus, lit(50i64), &s).unwrap();
        let risky = binary(
            binary(lit(1000i64), Operator::Divide, minus, &s).unwrap(),
            Operator::Gt,
            lit(0i64),
            &s,
        )
        .unwrap();
        assert!(!is_simple(&risky));
        assert!(risky.evaluate(&batch).is_err());
        let with_risky = AllOf {
            simple: conjuncts,
            rest: vec![risky],
            original: Arc::clone(&and),
        };
        assert_eq!(kept(with_risky.evaluate(&batch).unwrap()), expected);

        // Nothing qualifies that could fail or is not made of comparisons of columns and
        // literals.
        let plus = binary(Arc::clone(&a), Operator::Plus, lit(1i64), &s).unwrap();
        assert!(!is_simple(
            &binary(plus, Operator::Gt, lit(3i64), &s).unwrap()
        ));
        assert!(is_simple(&is_null(Arc::clone(&a)).unwrap()));
        let either = binary(
            binary(Arc::clone(&a), Operator::Gt, lit(3i64), &s).unwrap(),
            Operator::Or,
            binary(Arc::clone(&a), Operator::Lt, lit(1i64), &s).unwrap(),
            &s,
        )
        .unwrap();
        assert!(is_simple(&either));
        let with_arithmetic = binary(
            binary(Arc::clone(&a), Operator::Gt, lit(3i64), &s).unwrap(),
            Operator::Or,
            binary(
                binary(Arc::clone(&a), Operator::Divide, lit(0i64), &s).unwrap(),
                Operator::Lt,
                lit(1i64),
                &s,
            )
            .unwrap(),
            &s,
        )
        .unwrap();
        assert!(!is_simple(&with_arithmetic));
    }
}
