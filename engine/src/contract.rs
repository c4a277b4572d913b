//! Contracts meet data: mapping contract types to Arrow and checking a product's physical
//! schema against its contract.
//!
//! A product exposes exactly its contract's columns, in contract order. A contract column
//! missing from the data, or stored with an incompatible type, is an error naming the product
//! and the column. Physical columns not in the contract are never exposed.

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use meshql_catalog::{ColumnType, ProductManifest};

/// The Arrow type a contract type is exposed as (before the output boundary).
pub fn arrow_type(t: ColumnType) -> DataType {
    match t {
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::TinyInt => DataType::Int8,
        ColumnType::SmallInt => DataType::Int16,
        ColumnType::Int => DataType::Int32,
        ColumnType::BigInt => DataType::Int64,
        ColumnType::Float => DataType::Float32,
        ColumnType::Double => DataType::Float64,
        ColumnType::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
        ColumnType::String => DataType::Utf8,
        ColumnType::Binary => DataType::Binary,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ColumnType::TimestampNtz => DataType::Timestamp(TimeUnit::Microsecond, None),
    }
}

/// The client-facing schema of a product, from its contract alone (no I/O).
pub fn contract_schema(manifest: &ProductManifest) -> Schema {
    Schema::new(
        manifest
            .columns
            .iter()
            .map(|c| Field::new(&c.name, arrow_type(c.ty), c.nullable))
            .collect::<Vec<_>>(),
    )
}

/// How one contract column is read from the physical data.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ColumnBinding {
    pub(crate) name: String,
    /// The type the product exposes; when it differs from the physical type the engine casts.
    pub(crate) exposed: DataType,
    pub(crate) physical: DataType,
}

/// Checks `physical` against the contract. Returns the bindings of the contract columns, or
/// every mismatch as `(column, message)`.
pub(crate) fn bind_columns(
    manifest: &ProductManifest,
    physical: &Schema,
) -> Result<Vec<ColumnBinding>, Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for col in &manifest.columns {
        match physical.field_with_name(&col.name) {
            Err(_) => errors.push((
                col.name.clone(),
                "is in the contract but missing from the data".to_string(),
            )),
            Ok(f) => match exposed_type(col.ty, f.data_type()) {
                Some(exposed) => out.push(ColumnBinding {
                    name: col.name.clone(),
                    exposed,
                    physical: f.data_type().clone(),
                }),
                None => errors.push((
                    col.name.clone(),
                    format!(
                        "has type {} in the data, incompatible with contract type `{}`",
                        f.data_type(),
                        col.ty
                    ),
                )),
            },
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The type to expose for contract type `t` stored physically as `p`, or None when the data
/// cannot honour the contract. Strings and binaries keep their physical representation (the
/// output boundary normalises them); numbers may be widened; timestamps are normalised to
/// microseconds.
fn exposed_type(t: ColumnType, p: &DataType) -> Option<DataType> {
    use DataType as D;
    let target = arrow_type(t);
    let ok = match (t, p) {
        (ColumnType::String, D::Utf8 | D::LargeUtf8 | D::Utf8View) => return Some(p.clone()),
        (ColumnType::String, D::Dictionary(_, v))
            if matches!(v.as_ref(), D::Utf8 | D::LargeUtf8 | D::Utf8View) =>
        {
            return Some(p.clone())
        }
        (ColumnType::Binary, D::Binary | D::LargeBinary | D::BinaryView) => return Some(p.clone()),
        (ColumnType::Boolean, D::Boolean) => true,
        (ColumnType::TinyInt, D::Int8) => true,
        (ColumnType::SmallInt, D::Int8 | D::Int16) => true,
        (ColumnType::Int, D::Int8 | D::Int16 | D::Int32) => true,
        (ColumnType::BigInt, D::Int8 | D::Int16 | D::Int32 | D::Int64) => true,
        (ColumnType::Float, D::Float16 | D::Float32) => true,
        (ColumnType::Double, D::Float16 | D::Float32 | D::Float64) => true,
        (
            ColumnType::Decimal { precision, scale },
            D::Decimal32(pp, ps) | D::Decimal64(pp, ps) | D::Decimal128(pp, ps),
        ) => {
            // Exact scale; the physical precision may be smaller.
            *ps == scale && *pp <= precision
        }
        (ColumnType::Date, D::Date32 | D::Date64) => true,
        (ColumnType::Timestamp, D::Timestamp(_, Some(_))) => true,
        (ColumnType::TimestampNtz, D::Timestamp(_, None)) => true,
        _ => false,
    };
    ok.then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest() -> ProductManifest {
        ProductManifest::parse(
            Path::new("t.toml"),
            r#"
            name = "t"
            domain = "d"
            version = "1.0.0"
            owner = "o"
            format = "parquet"
            location = "t"
            [[schema]]
            name = "id"
            type = "bigint"
            primary_key = true
            [[schema]]
            name = "name"
            type = "string"
            [[schema]]
            name = "ts"
            type = "timestamp"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn binds_compatible_columns_and_ignores_extra_ones() {
        let physical = Schema::new(vec![
            Field::new("extra", DataType::Int32, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())),
                true,
            ),
            Field::new("name", DataType::Utf8View, true),
            Field::new("id", DataType::Int32, false),
        ]);
        let b = bind_columns(&manifest(), &physical).unwrap();
        let names: Vec<_> = b.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "name", "ts"]);
        assert_eq!(b[0].exposed, DataType::Int64);
        assert_eq!(b[1].exposed, DataType::Utf8View);
        assert_eq!(
            b[2].exposed,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
    }

    #[test]
    fn reports_missing_and_retyped_columns() {
        let physical = Schema::new(vec![Field::new("id", DataType::Utf8, false)]);
        let errs = bind_columns(&manifest(), &physical).unwrap_err();
        let cols: Vec<_> = errs.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(cols, ["id", "name", "ts"]);
        assert!(errs[0]
            .1
            .contains("incompatible with contract type `bigint`"));
        assert!(errs[1].1.contains("missing from the data"));
    }
}
