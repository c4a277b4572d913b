//! Result batches as the API sends them: JSON rows for the console and previews (numbers and
//! booleans as JSON values, everything else as its Arrow display text, NULL as `null`), and
//! CSV, Parquet or Arrow IPC chunks for downloads, written batch by batch so that a download
//! is streamed, never collected.

use std::io::Write;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use serde_json::Value;

use crate::error::ApiError;

/// Column names and types, for the first line of a result.
pub(crate) fn columns(schema: &SchemaRef) -> Value {
    Value::Array(
        schema
            .fields()
            .iter()
            .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
            .collect(),
    )
}

/// The rows `offset..offset+len` of a batch as JSON arrays.
pub(crate) fn json_rows(
    batch: &RecordBatch,
    offset: usize,
    len: usize,
) -> Result<Vec<Value>, ApiError> {
    let options = FormatOptions::default();
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::Internal(format!("formatting a result: {e}")))?;
    let mut rows = Vec::with_capacity(len);
    for row in offset..offset + len {
        let mut values = Vec::with_capacity(formatters.len());
        for (col, f) in batch.columns().iter().zip(&formatters) {
            if col.is_null(row) {
                values.push(Value::Null);
                continue;
            }
            let text = f.value(row).to_string();
            values.push(typed(col.data_type(), text));
        }
        rows.push(Value::Array(values));
    }
    Ok(rows)
}

fn typed(dt: &DataType, text: String) -> Value {
    match dt {
        DataType::Boolean => Value::Bool(text == "true"),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => text
            .parse::<serde_json::Number>()
            .map(Value::Number)
            .unwrap_or(Value::String(text)),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::String(text)),
        _ => Value::String(text),
    }
}

/// A download format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Csv,
    Parquet,
    Arrow,
}

impl Format {
    pub(crate) fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "csv" => Ok(Format::Csv),
            "parquet" => Ok(Format::Parquet),
            "arrow" => Ok(Format::Arrow),
            other => Err(ApiError::BadRequest(format!(
                "unknown format `{other}`: use csv, parquet or arrow"
            ))),
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Parquet => "application/vnd.apache.parquet",
            Format::Arrow => "application/vnd.apache.arrow.stream",
        }
    }

    pub(crate) fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Parquet => "parquet",
            Format::Arrow => "arrows",
        }
    }
}

/// A byte buffer shared with a writer, drained after each batch.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Shared {
    fn take(&self) -> Bytes {
        Bytes::from(std::mem::take(
            &mut *self.0.lock().unwrap_or_else(|p| p.into_inner()),
        ))
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Parquet row groups are flushed once this much is buffered, bounding a download's memory.
const PARQUET_ROW_GROUP_BYTES: usize = 16 * 1024 * 1024;

enum Writer {
    Csv { header_written: bool },
    Parquet(Box<ArrowWriter<Shared>>),
    Arrow(Box<arrow::ipc::writer::StreamWriter<Shared>>),
}

/// Encodes a result stream batch by batch into chunks of one format.
pub(crate) struct Encoder {
    buf: Shared,
    writer: Option<Writer>,
}

impl Encoder {
    pub(crate) fn try_new(format: Format, schema: &SchemaRef) -> Result<Self, ApiError> {
        let buf = Shared::default();
        let err = |e: &dyn std::fmt::Display| ApiError::Internal(format!("encoding: {e}"));
        let writer = match format {
            Format::Csv => Writer::Csv {
                header_written: false,
            },
            Format::Parquet => Writer::Parquet(Box::new(
                ArrowWriter::try_new(buf.clone(), Arc::clone(schema), None).map_err(|e| err(&e))?,
            )),
            Format::Arrow => Writer::Arrow(Box::new(
                arrow::ipc::writer::StreamWriter::try_new(buf.clone(), schema)
                    .map_err(|e| err(&e))?,
            )),
        };
        Ok(Self {
            buf,
            writer: Some(writer),
        })
    }

    /// Encodes one batch; returns what is ready to send (possibly nothing yet).
    pub(crate) fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, ApiError> {
        let err = |e: &dyn std::fmt::Display| ApiError::Internal(format!("encoding: {e}"));
        match self.writer.as_mut() {
            Some(Writer::Csv { header_written }) => {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(!*header_written)
                    .build(self.buf.clone());
                w.write(batch).map_err(|e| err(&e))?;
                *header_written = true;
            }
            Some(Writer::Parquet(w)) => {
                w.write(batch).map_err(|e| err(&e))?;
                if w.in_progress_size() >= PARQUET_ROW_GROUP_BYTES {
                    w.flush().map_err(|e| err(&e))?;
                }
            }
            Some(Writer::Arrow(w)) => w.write(batch).map_err(|e| err(&e))?,
            None => {}
        }
        Ok(self.buf.take())
    }

    /// Finishes the file (CSV with no rows still gets its header); returns the last bytes.
    pub(crate) fn finish(&mut self, schema: &SchemaRef) -> Result<Bytes, ApiError> {
        let err = |e: &dyn std::fmt::Display| ApiError::Internal(format!("encoding: {e}"));
        match self.writer.take() {
            Some(Writer::Csv {
                header_written: false,
            }) => {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(self.buf.clone());
                w.write(&RecordBatch::new_empty(Arc::clone(schema)))
                    .map_err(|e| err(&e))?;
            }
            Some(Writer::Csv { .. }) | None => {}
            Some(Writer::Parquet(w)) => {
                w.close().map_err(|e| err(&e))?;
            }
            Some(Writer::Arrow(mut w)) => w.finish().map_err(|e| err(&e))?,
        }
        Ok(self.buf.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![Some("a,b"), Some("c")])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn json_rows_keep_numbers_and_nulls() {
        let rows = json_rows(&batch(), 0, 2).unwrap();
        assert_eq!(
            Value::Array(rows),
            serde_json::json!([[1, "a,b"], [null, "c"]])
        );
    }

    #[test]
    fn csv_has_one_header_across_batches() {
        let b = batch();
        let mut e = Encoder::try_new(Format::Csv, &b.schema()).unwrap();
        let mut out = Vec::new();
        out.extend_from_slice(&e.batch(&b).unwrap());
        out.extend_from_slice(&e.batch(&b).unwrap());
        out.extend_from_slice(&e.finish(&b.schema()).unwrap());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "n,s\n1,\"a,b\"\n,c\n1,\"a,b\"\n,c\n"
        );
    }

    #[test]
    fn parquet_and_arrow_round_trip() {
        let b = batch();
        for format in [Format::Parquet, Format::Arrow] {
            let mut e = Encoder::try_new(format, &b.schema()).unwrap();
            let mut out = Vec::new();
            out.extend_from_slice(&e.batch(&b).unwrap());
            out.extend_from_slice(&e.finish(&b.schema()).unwrap());
            let rows: usize = match format {
                Format::Parquet => parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
                    Bytes::from(out),
                    1024,
                )
                .unwrap()
                .map(|b| b.unwrap().num_rows())
                .sum(),
                _ => arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(out), None)
                    .unwrap()
                    .map(|b| b.unwrap().num_rows())
                    .sum(),
            };
            assert_eq!(rows, 2, "{format:?}");
        }
    }
}
