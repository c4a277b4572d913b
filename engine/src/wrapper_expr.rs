//! Wrapper physical expressions: evaluated differently from the expression they stand for
//! (`AllOf`, `AdaptiveRuntimeFilter`, `FastDecimal`), but displayed (also as SQL), compared,
//! hashed and encoded for the wire as it, so `EXPLAIN`, plan equality, everything keyed by an
//! expression and the cluster's workers do not see the wrapper.

/// Implements `Display`, `PartialEq`, `Eq` and `Hash` of `$wrapper` as those of the expression
/// (an `Arc<dyn PhysicalExpr>`) in its field `$field`.
macro_rules! stands_for {
    ($wrapper:ty, $field:ident) => {
        impl std::fmt::Display for $wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&self.$field, f)
            }
        }

        impl PartialEq for $wrapper {
            fn eq(&self, other: &Self) -> bool {
                self.$field.as_ref() == other.$field.as_ref()
            }
        }

        impl Eq for $wrapper {}

        impl std::hash::Hash for $wrapper {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                std::hash::Hash::hash(self.$field.as_ref(), state);
            }
        }
    };
}

/// The `PhysicalExpr` methods of a wrapper that stand for the expression in its field `$field`:
/// `fmt_sql` and `try_to_proto` (on the wire the wrapper is that expression; a worker evaluates
/// it as DataFusion does). Used inside the wrapper's `impl PhysicalExpr`.
macro_rules! stands_for_in_sql_and_on_the_wire {
    ($field:ident) => {
        fn fmt_sql(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.$field.fmt_sql(f)
        }

        fn try_to_proto(
            &self,
            ctx: &datafusion::physical_expr_common::physical_expr::proto_encode::PhysicalExprEncodeCtx<'_>,
        ) -> datafusion::error::Result<Option<datafusion_proto::protobuf::PhysicalExprNode>> {
            ctx.encode_child(&self.$field).map(Some)
        }
    };
}

pub(crate) use stands_for;
pub(crate) use stands_for_in_sql_and_on_the_wire;
