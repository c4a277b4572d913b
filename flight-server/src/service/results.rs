//! Making Flight responses: executing planned queries into one cancellable stream of Flight
//! data, encoding batches, and the FlightInfo, schema and action-result messages.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::sql::ProstMessageExt;
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc, Ticket};
use bytes::Bytes;
use futures::{stream, Stream, StreamExt, TryStreamExt};
use meshql_engine::{PlannedQuery, QuerySession};
use prost::Message;
use tonic::{Request, Response, Status};

use super::{DoActionStream, DoGetStream, MeshFlightSqlService};
use crate::status::{code_name, engine_code_name, engine_status};
use meshql_engine::telemetry::QueryObserver;
use tracing::Instrument;

impl MeshFlightSqlService {
    /// Runs `plans` one after the other and streams their results as one, cancellable through
    /// `ticket`.
    pub(super) async fn run(
        &self,
        session: QuerySession,
        schema: SchemaRef,
        plans: Vec<PlannedQuery>,
        ticket: Bytes,
        observer: QueryObserver,
    ) -> Result<DoGetStream, Status> {
        let user = session.principal().user.clone();
        let mut plans = plans.into_iter();
        let Some(first) = plans.next() else {
            return Ok(encode(schema, stream::empty()));
        };
        // The first execution starts now, so that its errors are the call's status.
        let first = match session
            .execute(first)
            .instrument(observer.execute_span())
            .await
        {
            Ok(s) => s,
            Err(e) => {
                observer.failed(engine_code_name(&e));
                return Err(engine_status(e));
            }
        };
        let session = Arc::new(session);
        let rest = stream::iter(plans)
            .then(move |p| {
                let session = Arc::clone(&session);
                async move { session.execute(p).await }
            })
            .map(|r| match r {
                Ok(s) => s.boxed(),
                Err(e) => stream::once(async move { Err(e) }).boxed(),
            })
            .flatten();
        let batches = observer
            .observe(Box::pin(first.chain(rest)), engine_code_name)
            .map_err(|e| FlightError::Tonic(Box::new(engine_status(e))));
        Ok(self.running.track(ticket, &user, encode(schema, batches)))
    }
}

/// Runs a step of an observed query; a failure is counted with its status code.
pub(super) fn observed<T>(
    observer: &QueryObserver,
    step: impl FnOnce() -> Result<T, Status>,
) -> Result<T, Status> {
    step().inspect_err(|status| {
        metrics::counter!(
            meshql_engine::telemetry::QUERIES,
            "transport" => "flight",
            "outcome" => "error",
            "code" => code_name(status.code())
        )
        .increment(1);
        observer
            .span()
            .record("rpc.grpc.status_code", code_name(status.code()));
    })
}

pub(super) fn encode(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
) -> DoGetStream {
    Box::pin(
        FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from),
    )
}

pub(super) fn one_batch(batch: RecordBatch) -> DoGetStream {
    let schema = batch.schema();
    encode(schema, stream::once(async move { Ok(batch) }))
}

pub(super) fn flight_info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    // An empty location tells clients to fetch over the connection they already have.
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("encoding schema: {e}")))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor)
        .with_total_records(-1)
        .with_total_bytes(-1)
        .with_ordered(true))
}

/// The FlightInfo of a metadata command: its ticket is the command itself.
pub(super) fn metadata_info(
    schema: &Schema,
    command: impl ProstMessageExt,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    Ok(Response::new(flight_info(
        schema,
        command.as_any().encode_to_vec(),
        request.into_inner(),
    )?))
}

pub(super) fn arrow_status(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("building a metadata result: {e}"))
}

pub(super) fn ipc_schema(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &Default::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

pub(super) fn action_result(body: impl Message) -> DoActionStream {
    let body = Bytes::from(body.encode_to_vec());
    Box::pin(stream::once(
        async move { Ok(arrow_flight::Result { body }) },
    ))
}
