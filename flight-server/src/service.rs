//! The Flight SQL service: a thin transport over the engine. Every call is authenticated,
//! carries its principal into an engine session, and streams what the engine produces.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTables, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, SqlNullOrdering,
    SqlSupportedCaseSensitivity, TicketStatementQuery,
};
use arrow_flight::{
    FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use bytes::Bytes;
use futures::{stream, Stream, TryStreamExt};
use meshql_catalog::Principal;
use meshql_engine::{MeshEngine, QuerySession, MESH_CATALOG};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Authenticator;
use crate::status::engine_status;

type DoGetStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// A prepared statement kept between calls. It belongs to the user who created it.
#[derive(Debug, Clone)]
struct Prepared {
    owner: String,
    sql: String,
    /// Why the statement cannot run as a query (DDL, DML...), if so.
    not_a_query: Option<String>,
}

/// meshql's Flight SQL service.
#[derive(Clone)]
pub struct MeshFlightSqlService {
    engine: MeshEngine,
    auth: Arc<Authenticator>,
    prepared: Arc<Mutex<HashMap<Bytes, Prepared>>>,
    sql_info: Arc<SqlInfoData>,
}

impl std::fmt::Debug for MeshFlightSqlService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshFlightSqlService")
            .finish_non_exhaustive()
    }
}

impl MeshFlightSqlService {
    pub fn try_new(engine: MeshEngine) -> Result<Self, Status> {
        let auth = Arc::new(Authenticator::new(&engine.mesh().config));
        Ok(Self {
            engine,
            auth,
            prepared: Arc::new(Mutex::new(HashMap::new())),
            sql_info: Arc::new(sql_info()?),
        })
    }

    fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        self.auth.authenticate(request.metadata())
    }

    fn session<T>(&self, request: &Request<T>) -> Result<QuerySession, Status> {
        let principal = self.principal(request)?;
        self.engine.session(principal).map_err(engine_status)
    }

    fn prepared(&self, handle: &Bytes, user: &str) -> Result<Prepared, Status> {
        let map = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(handle) {
            Some(p) if p.owner == user => Ok(p.clone()),
            // Someone else's handle looks exactly like a missing one.
            _ => Err(Status::not_found(
                "unknown or closed prepared statement handle",
            )),
        }
    }

    /// Plans `sql` and answers with a FlightInfo whose single endpoint carries `ticket`.
    async fn plan_info(
        &self,
        session: &QuerySession,
        sql: &str,
        ticket: Vec<u8>,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let planned = session.plan_sql(sql).await.map_err(engine_status)?;
        flight_info(&planned.schema, ticket, descriptor)
    }

    /// Plans and runs `sql`, streaming the result in Flight data messages.
    async fn run(&self, session: QuerySession, sql: &str) -> Result<DoGetStream, Status> {
        let user = session.principal().user.clone();
        tracing::info!(user = %user, sql, "query");
        let planned = session.plan_sql(sql).await.map_err(engine_status)?;
        let schema = Arc::clone(&planned.schema);
        let batches = session.execute(planned).await.map_err(engine_status)?;
        let batches = batches.map_err(|e| FlightError::Tonic(Box::new(engine_status(e))));
        Ok(encode(schema, batches))
    }
}

fn encode(
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

fn one_batch(batch: RecordBatch) -> DoGetStream {
    let schema = batch.schema();
    encode(schema, stream::once(async move { Ok(batch) }))
}

fn flight_info(
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
        .with_ordered(true))
}

fn arrow_status(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("building a metadata result: {e}"))
}

/// The server's self-description for GetSqlInfo.
fn sql_info() -> Result<SqlInfoData, Status> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "meshql");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    // 0 = no transactions: every statement is its own (read-only) unit.
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlSchemaTerm, "domain");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.build()
        .map_err(|e| Status::internal(format!("building SqlInfo: {e}")))
}

#[tonic::async_trait]
impl FlightSqlService for MeshFlightSqlService {
    type FlightService = MeshFlightSqlService;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let (token, _principal) = self.auth.handshake(request.metadata()).await?;
        let response = HandshakeResponse {
            protocol_version: 0,
            payload: Bytes::from(token.clone()),
        };
        let out: Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>> =
            Box::pin(stream::iter(vec![Ok(response)]));
        let mut response = Response::new(out);
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|e| Status::internal(e.to_string()))?;
        response.metadata_mut().insert("authorization", value);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(&request)?;
        let ticket = TicketStatementQuery {
            statement_handle: Bytes::from(query.query.clone()),
        }
        .as_any()
        .encode_to_vec();
        let info = self
            .plan_info(&session, &query.query, ticket, request.into_inner())
            .await?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(&request)?;
        let sql = String::from_utf8(ticket.statement_handle.to_vec())
            .map_err(|_| Status::invalid_argument("malformed statement ticket"))?;
        Ok(Response::new(self.run(session, &sql).await?))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let session = self.session(&request)?;
        let (dataset_schema, not_a_query) = match session.plan_sql(&query.query).await {
            Ok(planned) => (planned.schema, None),
            // Statements that are not queries get an empty dataset schema, as JDBC expects;
            // executing them is refused with PERMISSION_DENIED.
            Err(meshql_engine::EngineError::ReadOnly(msg)) => {
                (Arc::new(Schema::empty()), Some(msg))
            }
            Err(e) => return Err(engine_status(e)),
        };
        let handle = Bytes::from(uuid::Uuid::new_v4().to_string());
        self.prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                handle.clone(),
                Prepared {
                    owner: session.principal().user.clone(),
                    sql: query.query,
                    not_a_query,
                },
            );
        let IpcMessage(schema_bytes) = SchemaAsIpc::new(&dataset_schema, &Default::default())
            .try_into()
            .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
        let IpcMessage(parameter_schema) = SchemaAsIpc::new(&Schema::empty(), &Default::default())
            .try_into()
            .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle,
            dataset_schema: schema_bytes,
            parameter_schema,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let principal = self.principal(&request)?;
        let mut map = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        // Closing is idempotent; another user's handle is left alone.
        if map
            .get(&query.prepared_statement_handle)
            .is_some_and(|p| p.owner == principal.user)
        {
            map.remove(&query.prepared_statement_handle);
        }
        Ok(())
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(&request)?;
        let prepared = self.prepared(&cmd.prepared_statement_handle, &session.principal().user)?;
        if let Some(msg) = prepared.not_a_query {
            return Err(Status::permission_denied(msg));
        }
        let ticket = cmd.as_any().encode_to_vec();
        let info = self
            .plan_info(&session, &prepared.sql, ticket, request.into_inner())
            .await?;
        Ok(Response::new(info))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(&request)?;
        let prepared = self.prepared(&cmd.prepared_statement_handle, &session.principal().user)?;
        if let Some(msg) = prepared.not_a_query {
            return Err(Status::permission_denied(msg));
        }
        Ok(Response::new(self.run(session, &prepared.sql).await?))
    }

    async fn do_put_prepared_statement_query(
        &self,
        _cmd: CommandPreparedStatementQuery,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        Err(Status::unimplemented(
            "binding parameters to prepared statements is not supported yet",
        ))
    }

    async fn do_put_prepared_statement_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let principal = self.principal(&request)?;
        let prepared = self.prepared(&cmd.prepared_statement_handle, &principal.user)?;
        Err(Status::permission_denied(
            prepared.not_a_query.unwrap_or_else(|| "meshql is read-only: this statement is a query; execute it with GetFlightInfo and DoGet".to_string()),
        ))
    }

    async fn do_put_statement_update(
        &self,
        _cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.principal(&request)?;
        Err(Status::permission_denied(
            "meshql is read-only: updates are not accepted",
        ))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.into_builder().schema();
        Ok(Response::new(flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(&request)?;
        let mut b = query.into_builder();
        b.append(MESH_CATALOG);
        Ok(Response::new(one_batch(b.build().map_err(arrow_status)?)))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(&request)?;
        let mut b = query.into_builder();
        for s in session.schemas() {
            b.append(MESH_CATALOG, s);
        }
        Ok(Response::new(one_batch(b.build().map_err(arrow_status)?)))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(&request)?;
        let mut b = query.into_builder();
        for t in session.tables().await.map_err(engine_status)? {
            b.append(
                &t.catalog,
                &t.schema,
                &t.name,
                t.table_type,
                &t.arrow_schema,
            )
            .map_err(arrow_status)?;
        }
        Ok(Response::new(one_batch(b.build().map_err(arrow_status)?)))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder(&self.sql_info).schema();
        Ok(Response::new(flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(&request)?;
        let batch = query
            .into_builder(&self.sql_info)
            .build()
            .map_err(arrow_status)?;
        Ok(Response::new(one_batch(batch)))
    }

    async fn do_get_fallback(
        &self,
        request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(&request)?;
        Err(Status::unimplemented(format!(
            "meshql does not support DoGet for {}",
            message.type_url
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

use arrow_flight::Action;

/// The tonic service with meshql's message-size limits.
pub fn flight_service(
    service: MeshFlightSqlService,
    max_message_bytes: usize,
) -> arrow_flight::flight_service_server::FlightServiceServer<MeshFlightSqlService> {
    arrow_flight::flight_service_server::FlightServiceServer::new(service)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes)
}

// The blanket `FlightService` impl comes from arrow-flight for every `FlightSqlService`.
const _: fn() = || {
    fn assert_service<T: FlightService>() {}
    assert_service::<MeshFlightSqlService>();
};
