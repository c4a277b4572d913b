//! The output boundary: the Arrow types meshql hands to clients.
//!
//! DataFusion produces `Utf8View`/`BinaryView` (Parquet strings) and may produce dictionaries;
//! many Flight SQL clients cannot read them (JDBC ≤ 18, flightsql-dbapi, Grafana). Everything
//! leaving the engine is converted: views to `Utf8`/`Binary`, dictionaries to their values,
//! smaller decimals to `Decimal128`, recursively through nested types. The same mapping is used
//! for result schemas, every batch, and the schemas returned by metadata calls.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, RecordBatch, RecordBatchOptions, StringArray, StringViewArray,
};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;

/// The client-facing type for an engine type.
pub fn output_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::Dictionary(_, value) => output_type(value),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) => DataType::Decimal128(*p, *s),
        DataType::List(f) => DataType::List(output_field(f)),
        DataType::ListView(f) => DataType::List(output_field(f)),
        DataType::LargeList(f) => DataType::LargeList(output_field(f)),
        DataType::LargeListView(f) => DataType::LargeList(output_field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(output_field(f), *n),
        DataType::Struct(fields) => DataType::Struct(output_fields(fields)),
        DataType::Map(f, sorted) => DataType::Map(output_field(f), *sorted),
        DataType::RunEndEncoded(_, values) => output_type(values.data_type()),
        other => other.clone(),
    }
}

fn output_field(f: &FieldRef) -> FieldRef {
    Arc::new(
        f.as_ref()
            .clone()
            .with_data_type(output_type(f.data_type())),
    )
}

fn output_fields(fields: &Fields) -> Fields {
    fields.iter().map(output_field).collect()
}

/// The client-facing schema for an engine schema (metadata kept).
pub fn output_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        output_fields(schema.fields()),
        schema.metadata().clone(),
    ))
}

/// Converts a batch to `schema` (which must be `output_schema` of the batch's schema, possibly
/// with different nullability or metadata).
pub fn to_output_batch(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(col, field)| {
            if col.data_type() == field.data_type() {
                Ok(Arc::clone(col))
            } else if let (Some(views), DataType::Utf8) = (
                col.as_any().downcast_ref::<StringViewArray>(),
                field.data_type(),
            ) {
                match views_to_utf8(views) {
                    Some(strings) => Ok(Arc::new(strings) as ArrayRef),
                    None => cast(col, field.data_type()),
                }
            } else {
                cast(col, field.data_type())
            }
        })
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
}

/// `Utf8View` → `Utf8` in one pass: sizes the value buffer once from the views' lengths and
/// copies each string (inline or from its data buffer), null slots as empty strings. Every
/// string of a result column crosses this on its way to the client, so it is kept to a plain
/// copy (arrow's generic `cast` builds through a growing builder), and a short string, which
/// lives in its view, is written as the view's 16 bytes at once rather than through a
/// variable-length copy. None when the strings do not fit 32-bit offsets (the caller's `cast`
/// then reports it).
fn views_to_utf8(array: &StringViewArray) -> Option<StringArray> {
    const MAX_INLINE: usize = 12;
    /// Room after the last string for writing a short string as 16 bytes.
    const SLACK: usize = 16;
    let views = array.views();
    let nulls = array.nulls();
    let len_of = |i: usize, v: u128| -> usize {
        if nulls.is_some_and(|n| n.is_null(i)) {
            0
        } else {
            (v as u32) as usize
        }
    };
    let total: usize = views.iter().enumerate().map(|(i, v)| len_of(i, *v)).sum();
    if total > i32::MAX as usize {
        return None;
    }
    let buffers = array.data_buffers();
    let mut values: Vec<u8> = Vec::with_capacity(total + SLACK);
    let dst = values.as_mut_ptr();
    let mut end = 0usize;
    let mut offsets: Vec<i32> = Vec::with_capacity(views.len() + 1);
    offsets.push(0);
    for (i, v) in views.iter().enumerate() {
        let len = len_of(i, *v);
        // `end + len <= total` before each copy (the lengths sum to `total`), so a copy of `len`
        // bytes, or of 16 bytes when `len <= 12`, stays within the capacity of
        // `total + SLACK`.
        if len <= MAX_INLINE {
            // A short string is bytes 4..16 of its view (little-endian): shifted down, they are
            // the first 12 of 16 bytes.
            let inline = (*v >> 32).to_le_bytes();
            // SAFETY: `end + 16 <= total + SLACK`, within `values`' allocation (see above);
            // source and destination do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(inline.as_ptr(), dst.add(end), 16) };
        } else {
            let buffer = &buffers[(*v >> 64) as u32 as usize];
            let start = (*v >> 96) as u32 as usize;
            let string = &buffer[start..start + len];
            // SAFETY: `end + len <= total`, within `values`' allocation (see above); the
            // source is a bounds-checked slice of another buffer.
            unsafe { std::ptr::copy_nonoverlapping(string.as_ptr(), dst.add(end), len) };
        }
        end += len;
        // Cannot overflow: the total was checked above.
        offsets.push(end as i32);
    }
    // SAFETY: every byte of `0..end` was written by the copies above (each wrote at least its
    // string's `len` bytes at `end`), and `end == total <= capacity`.
    unsafe { values.set_len(end) };
    // SAFETY: offsets start at 0, never decrease and end at `values.len()`; `values` is the
    // concatenation of the valid UTF-8 strings of a `StringViewArray` (null slots add nothing),
    // so every slice between two offsets is valid UTF-8.
    let strings = unsafe {
        StringArray::new_unchecked(
            OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)),
            Buffer::from_vec(values),
            nulls.cloned(),
        )
    };
    Some(strings)
}

/// A field for `schema` built from the contract, shared with metadata responses.
pub fn nullable_field(name: &str, dt: DataType, nullable: bool) -> Field {
    Field::new(name, output_type(&dt), nullable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, StringViewArray};
    use arrow::datatypes::Int32Type;

    #[test]
    fn views_and_dictionaries_become_plain_types_recursively() {
        let nested = DataType::Struct(Fields::from(vec![
            Field::new("s", DataType::Utf8View, true),
            Field::new_list("l", Field::new_list_field(DataType::BinaryView, true), true),
        ]));
        let expected = DataType::Struct(Fields::from(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new_list("l", Field::new_list_field(DataType::Binary, true), true),
        ]));
        assert_eq!(output_type(&nested), expected);
        assert_eq!(
            output_type(&DataType::Dictionary(
                Box::new(DataType::Int32),
                Box::new(DataType::Utf8View)
            )),
            DataType::Utf8
        );
        assert_eq!(
            output_type(&DataType::Decimal64(10, 2)),
            DataType::Decimal128(10, 2)
        );
    }

    #[test]
    fn views_become_the_same_strings() {
        let long = "a string longer than twelve bytes, ünïcode too";
        let values: Vec<Option<&str>> = vec![
            Some("short"),
            None,
            Some(long),
            Some(""),
            Some("exactly12byt"),
            Some("thirteen byte"),
            None,
        ];
        let views = StringViewArray::from(values.clone());
        // A sliced array keeps views into shared buffers.
        let sliced = views.slice(1, 5);
        for (array, expected) in [
            (views.clone(), values.clone()),
            (sliced, values[1..6].to_vec()),
        ] {
            let strings = views_to_utf8(&array).expect("fits 32-bit offsets");
            assert_eq!(strings, StringArray::from(expected));
        }
    }

    #[test]
    fn views_of_every_length_become_what_arrow_casts_them_to() {
        // Lengths 0..=40 around the 12-byte inline limit, every fifth slot null, several
        // data buffers (built in chunks) and a slice that starts mid-array.
        let text: String = ('a'..='z').cycle().take(64).collect();
        let values: Vec<Option<String>> = (0..500)
            .map(|i| (i % 5 != 3).then(|| text[i % 7..i % 7 + i % 41].to_string()))
            .collect();
        let mut builder = arrow::array::StringViewBuilder::new().with_fixed_block_size(256);
        for v in &values {
            builder.append_option(v.as_deref());
        }
        let views = builder.finish();
        assert!(views.data_buffers().len() > 1);
        for array in [views.clone(), views.slice(7, 400)] {
            let expected = cast(&array, &DataType::Utf8).unwrap();
            let strings = views_to_utf8(&array).expect("fits 32-bit offsets");
            assert_eq!(
                &strings,
                expected.as_any().downcast_ref::<StringArray>().unwrap()
            );
        }
    }

    #[test]
    fn a_null_slot_adds_nothing_whatever_its_view_holds() {
        // Null slots' views are undefined in Arrow; here one claims 5 inline bytes and one 20
        // bytes of a buffer.
        let data = Buffer::from(b"twenty bytes of text".to_vec());
        let inline_garbage = 5u128 | (u128::from(u32::from_le_bytes(*b"junk")) << 32);
        let long_garbage = 20u128 | (u128::from(u32::from_le_bytes(*b"twen")) << 32);
        let views = ScalarBuffer::from(vec![
            inline_garbage,
            StringViewArray::from(vec!["ok"]).views()[0],
            long_garbage,
        ]);
        let nulls = arrow::buffer::NullBuffer::from(vec![false, true, false]);
        // SAFETY: the valid view is a well-formed inline view; null slots are not read as
        // strings.
        let array = unsafe { StringViewArray::new_unchecked(views, vec![data], Some(nulls)) };
        let strings = views_to_utf8(&array).expect("fits 32-bit offsets");
        assert_eq!(strings, StringArray::from(vec![None, Some("ok"), None]));
        assert_eq!(strings.values().len(), 2);
    }

    #[test]
    fn converts_batches() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8View, true),
            Field::new(
                "d",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
        ]));
        let dict: DictionaryArray<Int32Type> = vec!["x", "y", "x"].into_iter().collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringViewArray::from(vec!["p", "q", "r"])),
                Arc::new(dict),
            ],
        )
        .unwrap();
        let out_schema = output_schema(&schema);
        let out = to_output_batch(&batch, &out_schema).unwrap();
        assert_eq!(out.schema().field(0).data_type(), &DataType::Utf8);
        assert_eq!(out.schema().field(1).data_type(), &DataType::Utf8);
        assert_eq!(out.num_rows(), 3);
    }
}
