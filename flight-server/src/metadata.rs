//! Catalog metadata answers: GetTables (with table-type aliases and column metadata),
//! GetTableTypes, GetPrimaryKeys and the (always empty) foreign-key calls.
//!
//! Result schemas are exactly the Flight SQL spec's (ADBC compares them strictly). Everything
//! is computed from `QuerySession::tables()`, so per-principal filtering applies.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow_flight::sql::metadata::GetTablesBuilder;
use arrow_flight::sql::{CommandGetPrimaryKeys, CommandGetTables};
use meshql_engine::TableInfo;
use tonic::Status;

/// The table types meshql has, in GetTableTypes order.
pub(crate) const TABLE_TYPES: &[&str] = &["SYSTEM TABLE", "TABLE"];

/// Whether a table of type `actual` answers a request for `requested`. Matching is
/// case-insensitive, and `TABLE` also answers `BASE TABLE` (Grafana, Power BI, the SQL
/// standard's `information_schema` name).
pub(crate) fn table_type_matches(actual: &str, requested: &str) -> bool {
    let requested = requested.trim();
    if actual.eq_ignore_ascii_case(requested) {
        return true;
    }
    actual == "TABLE" && requested.eq_ignore_ascii_case("BASE TABLE")
}

fn arrow_status(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("building a metadata result: {e}"))
}

/// Metadata keys of the Flight SQL spec for result and `table_schema` fields.
pub(crate) mod keys {
    pub(crate) const CATALOG_NAME: &str = "ARROW:FLIGHT:SQL:CATALOG_NAME";
    pub(crate) const DB_SCHEMA_NAME: &str = "ARROW:FLIGHT:SQL:DB_SCHEMA_NAME";
    /// The name arrow-java and arrow-go use for the same thing.
    pub(crate) const SCHEMA_NAME: &str = "ARROW:FLIGHT:SQL:SCHEMA_NAME";
    pub(crate) const TABLE_NAME: &str = "ARROW:FLIGHT:SQL:TABLE_NAME";
    pub(crate) const TYPE_NAME: &str = "ARROW:FLIGHT:SQL:TYPE_NAME";
    pub(crate) const PRECISION: &str = "ARROW:FLIGHT:SQL:PRECISION";
    pub(crate) const SCALE: &str = "ARROW:FLIGHT:SQL:SCALE";
    pub(crate) const IS_AUTO_INCREMENT: &str = "ARROW:FLIGHT:SQL:IS_AUTO_INCREMENT";
    pub(crate) const IS_CASE_SENSITIVE: &str = "ARROW:FLIGHT:SQL:IS_CASE_SENSITIVE";
    pub(crate) const IS_READ_ONLY: &str = "ARROW:FLIGHT:SQL:IS_READ_ONLY";
    pub(crate) const IS_SEARCHABLE: &str = "ARROW:FLIGHT:SQL:IS_SEARCHABLE";
    pub(crate) const REMARKS: &str = "ARROW:FLIGHT:SQL:REMARKS";
}

/// Schema-level metadata keys of `table_schema` describing the data product.
pub(crate) mod product_keys {
    pub(crate) const DESCRIPTION: &str = "meshql:description";
    pub(crate) const OWNER: &str = "meshql:owner";
    pub(crate) const VERSION: &str = "meshql:version";
    pub(crate) const PRIMARY_KEY: &str = "meshql:primary_key";
    /// The product's last known status (`healthy`, `failing: ...`; see docs/quality.md).
    pub(crate) const STATUS: &str = "meshql:status";
}

/// The SQL name, precision and scale a client should show for an Arrow type.
pub(crate) fn sql_type(dt: &DataType) -> (String, Option<i32>, Option<i32>) {
    let unit_digits = |u: &TimeUnit| match u {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond => 6,
        TimeUnit::Nanosecond => 9,
    };
    match dt {
        DataType::Boolean => ("BOOLEAN".into(), Some(1), None),
        DataType::Int8 => ("TINYINT".into(), Some(3), Some(0)),
        DataType::Int16 => ("SMALLINT".into(), Some(5), Some(0)),
        DataType::Int32 => ("INTEGER".into(), Some(10), Some(0)),
        DataType::Int64 => ("BIGINT".into(), Some(19), Some(0)),
        DataType::UInt8 => ("TINYINT UNSIGNED".into(), Some(3), Some(0)),
        DataType::UInt16 => ("SMALLINT UNSIGNED".into(), Some(5), Some(0)),
        DataType::UInt32 => ("INTEGER UNSIGNED".into(), Some(10), Some(0)),
        DataType::UInt64 => ("BIGINT UNSIGNED".into(), Some(20), Some(0)),
        DataType::Float16 | DataType::Float32 => ("REAL".into(), Some(7), None),
        DataType::Float64 => ("DOUBLE".into(), Some(15), None),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) => {
            ("DECIMAL".into(), Some(*p as i32), Some(*s as i32))
        }
        DataType::Decimal256(p, s) => ("DECIMAL".into(), Some(*p as i32), Some(*s as i32)),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ("VARCHAR".into(), None, None),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            ("VARBINARY".into(), None, None)
        }
        DataType::FixedSizeBinary(n) => ("BINARY".into(), Some(*n), None),
        DataType::Date32 | DataType::Date64 => ("DATE".into(), Some(10), None),
        DataType::Time32(u) | DataType::Time64(u) => {
            let d = unit_digits(u);
            (
                "TIME".into(),
                Some(8 + if d > 0 { d + 1 } else { 0 }),
                Some(d),
            )
        }
        DataType::Timestamp(u, tz) => {
            let d = unit_digits(u);
            let name = if tz.is_some() {
                "TIMESTAMP WITH TIME ZONE"
            } else {
                "TIMESTAMP"
            };
            (
                name.into(),
                Some(19 + if d > 0 { d + 1 } else { 0 }),
                Some(d),
            )
        }
        DataType::Interval(_) | DataType::Duration(_) => ("INTERVAL".into(), None, None),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
            ("ARRAY".into(), None, None)
        }
        DataType::Struct(_) => ("STRUCT".into(), None, None),
        DataType::Map(_, _) => ("MAP".into(), None, None),
        DataType::Dictionary(_, v) => sql_type(v),
        DataType::Null => ("NULL".into(), None, None),
        other => (other.to_string().to_uppercase(), None, None),
    }
}

/// A field with the `ARROW:FLIGHT:SQL:*` column metadata clients read (JDBC `getColumns`).
pub(crate) fn described_field(
    field: &Field,
    table: Option<(&str, &str, &str)>,
    remarks: &str,
) -> Field {
    let (type_name, precision, scale) = sql_type(field.data_type());
    let mut md: HashMap<String, String> = field.metadata().clone();
    if let Some((catalog, schema, name)) = table {
        md.insert(keys::CATALOG_NAME.into(), catalog.into());
        md.insert(keys::DB_SCHEMA_NAME.into(), schema.into());
        md.insert(keys::SCHEMA_NAME.into(), schema.into());
        md.insert(keys::TABLE_NAME.into(), name.into());
    }
    md.insert(keys::TYPE_NAME.into(), type_name);
    if let Some(p) = precision {
        md.insert(keys::PRECISION.into(), p.to_string());
    }
    if let Some(s) = scale {
        md.insert(keys::SCALE.into(), s.to_string());
    }
    let text = matches!(
        field.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    md.insert(keys::IS_AUTO_INCREMENT.into(), "0".into());
    md.insert(
        keys::IS_CASE_SENSITIVE.into(),
        if text { "1" } else { "0" }.into(),
    );
    md.insert(keys::IS_READ_ONLY.into(), "1".into());
    md.insert(keys::IS_SEARCHABLE.into(), "1".into());
    if !remarks.is_empty() {
        md.insert(keys::REMARKS.into(), remarks.into());
    }
    field.clone().with_metadata(md)
}

/// The `table_schema` of a table in GetTables: its client-facing schema with column metadata
/// and the product's description, owner, contract version and key as schema metadata.
pub(crate) fn table_schema(t: &TableInfo) -> Schema {
    let fields: Vec<Field> = t
        .arrow_schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let remarks = t
                .column_descriptions
                .get(i)
                .map(String::as_str)
                .unwrap_or("");
            described_field(f, Some((&t.catalog, &t.schema, &t.name)), remarks)
        })
        .collect();
    let mut md = t.arrow_schema.metadata().clone();
    for (k, v) in [
        (product_keys::DESCRIPTION, t.description.clone()),
        (product_keys::OWNER, t.owner.clone()),
        (product_keys::VERSION, t.version.clone()),
        (product_keys::PRIMARY_KEY, t.primary_key.join(",")),
        (product_keys::STATUS, t.status.clone().unwrap_or_default()),
    ] {
        if !v.is_empty() {
            md.insert(k.to_string(), v);
        }
    }
    Schema::new_with_metadata(fields, md)
}

/// GetTables: catalog exact, schema/table LIKE patterns, table types case-insensitively with
/// aliases, `table_schema` only when asked.
pub(crate) fn tables_batch(
    cmd: CommandGetTables,
    tables: &[TableInfo],
) -> Result<RecordBatch, Status> {
    let requested_types = cmd.table_types.clone();
    let mut b = GetTablesBuilder::new(
        cmd.catalog,
        cmd.db_schema_filter_pattern,
        cmd.table_name_filter_pattern,
        Vec::<String>::new(),
        cmd.include_schema,
    );
    for t in tables {
        if !requested_types.is_empty()
            && !requested_types
                .iter()
                .any(|r| table_type_matches(t.table_type, r))
        {
            continue;
        }
        b.append(
            &t.catalog,
            &t.schema,
            &t.name,
            t.table_type,
            &table_schema(t),
        )
        .map_err(arrow_status)?;
    }
    b.build().map_err(arrow_status)
}

/// Schema of GetTableTypes.
pub(crate) fn table_types_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "table_type",
        DataType::Utf8,
        false,
    )]))
}

pub(crate) fn table_types_batch() -> Result<RecordBatch, Status> {
    let mut b = StringBuilder::new();
    for t in TABLE_TYPES {
        b.append_value(t);
    }
    RecordBatch::try_new(table_types_schema(), vec![Arc::new(b.finish()) as ArrayRef])
        .map_err(arrow_status)
}

/// Schema of GetPrimaryKeys.
pub(crate) fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// GetPrimaryKeys: the contract's key columns of the named table (catalog and schema, when
/// given, must match exactly).
pub(crate) fn primary_keys_batch(
    cmd: &CommandGetPrimaryKeys,
    tables: &[TableInfo],
) -> Result<RecordBatch, Status> {
    let mut catalog = StringBuilder::new();
    let mut schema = StringBuilder::new();
    let mut table = StringBuilder::new();
    let mut column = StringBuilder::new();
    let mut key_name = StringBuilder::new();
    let mut seq = Int32Builder::new();
    for t in tables {
        if t.name != cmd.table
            || cmd.catalog.as_ref().is_some_and(|c| c != &t.catalog)
            || cmd.db_schema.as_ref().is_some_and(|s| s != &t.schema)
        {
            continue;
        }
        for (i, c) in t.primary_key.iter().enumerate() {
            catalog.append_value(&t.catalog);
            schema.append_value(&t.schema);
            table.append_value(&t.name);
            column.append_value(c);
            key_name.append_value(format!("{}_pkey", t.name));
            seq.append_value(i as i32 + 1);
        }
    }
    RecordBatch::try_new(
        primary_keys_schema(),
        vec![
            Arc::new(catalog.finish()) as ArrayRef,
            Arc::new(schema.finish()),
            Arc::new(table.finish()),
            Arc::new(column.finish()),
            Arc::new(key_name.finish()),
            Arc::new(seq.finish()),
        ],
    )
    .map_err(arrow_status)
}

/// Schema of GetImportedKeys, GetExportedKeys and GetCrossReference.
pub(crate) fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

/// Data products declare no foreign keys: an empty result with the spec's schema.
pub(crate) fn foreign_keys_batch() -> RecordBatch {
    RecordBatch::new_empty(foreign_keys_schema())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_type_aliases() {
        assert!(table_type_matches("TABLE", "TABLE"));
        assert!(table_type_matches("TABLE", "table"));
        assert!(table_type_matches("TABLE", "BASE TABLE"));
        assert!(table_type_matches("TABLE", "base table"));
        assert!(!table_type_matches("TABLE", "VIEW"));
        assert!(!table_type_matches("TABLE", "SYSTEM TABLE"));
        assert!(table_type_matches("SYSTEM TABLE", "system table"));
        assert!(!table_type_matches("SYSTEM TABLE", "BASE TABLE"));
    }

    #[test]
    fn sql_types() {
        assert_eq!(
            sql_type(&DataType::Decimal128(12, 2)),
            ("DECIMAL".to_string(), Some(12), Some(2))
        );
        assert_eq!(
            sql_type(&DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("UTC".into())
            ))
            .0,
            "TIMESTAMP WITH TIME ZONE"
        );
        assert_eq!(
            sql_type(&DataType::Timestamp(TimeUnit::Microsecond, None)),
            ("TIMESTAMP".to_string(), Some(26), Some(6))
        );
    }
}
