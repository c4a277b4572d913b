//! What it costs to turn a large result into Flight data: one lineitem-like batch of 1M rows
//! (integers, decimals, dates, short and long strings; ~100 MB of Arrow) encoded with
//! arrow-flight's `FlightDataEncoderBuilder`, the encoder meshql's Flight SQL service streams
//! through, at its default 2 MiB message size and at 8 MiB.
//!
//! `cargo bench -p meshql-benches --bench flight_encoding`

use std::sync::Arc;

use arrow::array::{
    Date32Array, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::encode::FlightDataEncoderBuilder;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::TryStreamExt;

const ROWS: usize = 1_000_000;

fn lineitem_like() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("l_orderkey", DataType::Int64, false),
        Field::new("l_linenumber", DataType::Int32, false),
        Field::new("l_extendedprice", DataType::Decimal128(15, 2), false),
        Field::new("l_shipdate", DataType::Date32, false),
        Field::new("l_shipmode", DataType::Utf8, false),
        Field::new("l_comment", DataType::Utf8, false),
    ]));
    let modes = ["AIR", "FOB", "MAIL", "RAIL", "REG AIR", "SHIP", "TRUCK"];
    let columns: Vec<arrow::array::ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            (0..ROWS as i64).map(|i| i / 4),
        )),
        Arc::new(Int32Array::from_iter_values(
            (0..ROWS as i32).map(|i| i % 7 + 1),
        )),
        Arc::new(
            Decimal128Array::from_iter_values(
                (0..ROWS as i128).map(|i| 90_000 + i * 37 % 10_000_000),
            )
            .with_precision_and_scale(15, 2)
            .expect("decimal(15,2)"),
        ),
        Arc::new(Date32Array::from_iter_values(
            (0..ROWS as i32).map(|i| 8_000 + i % 2_500),
        )),
        Arc::new(StringArray::from_iter_values(
            (0..ROWS).map(|i| modes[i % modes.len()]),
        )),
        Arc::new(StringArray::from_iter_values(
            (0..ROWS).map(|i| format!("carefully final deposits {i} detect slyly")),
        )),
    ];
    RecordBatch::try_new(schema, columns).expect("batch")
}

fn encoding(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let batch = lineitem_like();
    let bytes = batch.get_array_memory_size() as u64;
    let mut group = c.benchmark_group("flight_encode_lineitem_1m_rows");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    for (name, max_size) in [
        ("2MiB_messages", 2 * 1024 * 1024),
        ("8MiB_messages", 8 * 1024 * 1024),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let input = futures::stream::iter([Ok(batch.clone())]);
                let encoded = FlightDataEncoderBuilder::new()
                    .with_max_flight_data_size(max_size)
                    .build(input);
                let messages: Vec<_> = encoded.try_collect().await.expect("encode");
                messages.iter().map(|m| m.data_body.len()).sum::<usize>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encoding);
criterion_main!(benches);
