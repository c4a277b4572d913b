//! Wrapper physical expressions: evaluated differently from the expression they stand for
//! (`AllOf`, `AdaptiveRuntimeFilter`, `FastDecimal`), but displayed, compared and hashed as it,
//! so `EXPLAIN`, plan equality and everything keyed by an expression do not see the wrapper.

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

pub(crate) use stands_for;
