//! The Flight SQL service: a thin transport over the engine. Every call is authenticated,
//! carries its principal into an engine session, and streams what the engine produces.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any, Command,
    CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightData,
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use bytes::Bytes;
use datafusion::scalar::ScalarValue;
use futures::{stream, Stream, StreamExt, TryStreamExt};
use meshql_catalog::Principal;
use meshql_engine::{MeshEngine, PlannedQuery, QuerySession, MESH_CATALOG};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::cancel::RunningQueries;
use crate::metadata;
use crate::prepared::{
    number_placeholders, row_values, Prepared, PreparedStore, MAX_PARAMETER_ROWS,
};
use crate::session_options::{
    decode_body, session_key, CloseSessionResult, GetSessionOptionsResult, OptionValue,
    SessionOptionValue, SessionStore, SetOptionError, SetSessionOptionsError,
    SetSessionOptionsRequest, SetSessionOptionsResult, CANCEL_FLIGHT_INFO, CATALOG_OPTION,
    CLOSE_SESSION, CLOSE_SESSION_CLOSED, GET_SESSION_OPTIONS, SCHEMA_OPTION, SET_SESSION_OPTIONS,
};
use crate::sql_info::{sql_info_data, xdbc_type_info_data};
use crate::status::{auth_status, code_name, engine_code_name, engine_status};
use meshql_auth::Authenticator;
use meshql_engine::telemetry::QueryObserver;
use tracing::Instrument;

type DoGetStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;
type DoActionStream =
    Pin<Box<dyn Stream<Item = Result<arrow_flight::Result, Status>> + Send + 'static>>;

/// What a statement ticket carries: the SQL, the default schema it was planned with, and a
/// unique id so that CancelFlightInfo stops exactly this execution.
#[derive(Clone, PartialEq, Message)]
struct StatementTicket {
    #[prost(string, tag = "1")]
    sql: String,
    #[prost(string, optional, tag = "2")]
    default_schema: Option<String>,
    #[prost(string, tag = "3")]
    id: String,
}

/// meshql's Flight SQL service.
#[derive(Clone)]
pub struct MeshFlightSqlService {
    engine: MeshEngine,
    auth: Arc<Authenticator>,
    prepared: Arc<PreparedStore>,
    sessions: Arc<SessionStore>,
    running: Arc<RunningQueries>,
    sql_info: Arc<SqlInfoData>,
    xdbc_info: Arc<XdbcTypeInfoData>,
}

impl std::fmt::Debug for MeshFlightSqlService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshFlightSqlService")
            .finish_non_exhaustive()
    }
}

/// A caller's identity and session for one request.
struct Caller {
    principal: Principal,
    session_key: Option<String>,
}

impl MeshFlightSqlService {
    pub fn try_new(engine: MeshEngine) -> Result<Self, Status> {
        let auth = Arc::new(Authenticator::new(&engine.mesh().config));
        Self::try_new_with_auth(engine, auth)
    }

    /// A service that authenticates with `auth`, shared with other transports (HTTP) so that a
    /// token issued by one is accepted by the other.
    pub fn try_new_with_auth(engine: MeshEngine, auth: Arc<Authenticator>) -> Result<Self, Status> {
        Ok(Self {
            engine,
            auth,
            prepared: Arc::default(),
            sessions: Arc::default(),
            running: Arc::default(),
            sql_info: Arc::new(sql_info_data()?),
            xdbc_info: Arc::new(xdbc_type_info_data()?),
        })
    }

    /// How many query results are being streamed right now (for tests and monitoring).
    pub fn active_queries(&self) -> usize {
        self.running.len()
    }

    /// Resolves once no query result is being streamed (for tests and graceful shutdown).
    pub async fn idle(&self) {
        self.running.idle().await
    }

    fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        self.auth
            .authenticate(request.metadata().as_ref())
            .map_err(auth_status)
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        Ok(Caller {
            principal: self.principal(request)?,
            session_key: session_key(request.metadata()),
        })
    }

    /// The default schema of the caller's Flight SQL session, if one was set.
    fn default_schema(&self, caller: &Caller) -> Option<String> {
        self.sessions
            .schema(caller.session_key.as_deref(), &caller.principal.user)
    }

    fn session_for(
        &self,
        principal: Principal,
        default_schema: Option<&str>,
    ) -> Result<QuerySession, Status> {
        self.engine
            .session_with_schema(principal, default_schema)
            .map_err(engine_status)
    }

    /// An engine session for the request's principal, with its session's default schema.
    fn session<T>(&self, request: &Request<T>) -> Result<QuerySession, Status> {
        let caller = self.caller(request)?;
        let schema = self.default_schema(&caller);
        self.session_for(caller.principal, schema.as_deref())
    }

    /// Plans a prepared statement with its bound parameters: one plan per parameter row (or
    /// one unbound plan when none are bound).
    async fn plan_prepared(
        &self,
        session: &QuerySession,
        prepared: &Prepared,
    ) -> Result<(SchemaRef, Vec<PlannedQuery>), Status> {
        if let Some(msg) = &prepared.not_a_query {
            return Err(Status::permission_denied(msg.clone()));
        }
        let planned = session
            .plan_sql(&prepared.sql)
            .await
            .map_err(engine_status)?;
        let schema = Arc::clone(&planned.schema);
        let expected = planned.parameter_schema().map_err(engine_status)?;
        if prepared.params.is_empty() {
            if !expected.fields().is_empty() {
                return Err(Status::invalid_argument(format!(
                    "the prepared statement has {} parameter(s) but none were bound; bind values \
                     with DoPut(CommandPreparedStatementQuery) before executing it",
                    expected.fields().len()
                )));
            }
            return Ok((schema, vec![planned]));
        }
        let plans = prepared
            .params
            .iter()
            .map(|row| planned.bind(row.clone()).map_err(engine_status))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((schema, plans))
    }

    /// Runs `plans` one after the other and streams their results as one, cancellable through
    /// `ticket`.
    async fn run(
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

    /// The schema GetSchema answers for a command.
    pub(crate) async fn schema_for(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Schema, Status> {
        let caller = self.caller(&request)?;
        let message = Any::decode(&*request.get_ref().cmd)
            .map_err(|e| Status::invalid_argument(format!("malformed command: {e}")))?;
        let command = Command::try_from(message)
            .map_err(|e| Status::invalid_argument(format!("unknown command: {e}")))?;
        let schema = self.default_schema(&caller);
        let schema: SchemaRef = match command {
            Command::CommandStatementQuery(q) => {
                let session = self.session_for(caller.principal, schema.as_deref())?;
                let sql = number_placeholders(&q.query);
                session.plan_sql(&sql).await.map_err(engine_status)?.schema
            }
            Command::CommandPreparedStatementQuery(cmd) => {
                let prepared = self
                    .prepared
                    .get(&cmd.prepared_statement_handle, &caller.principal.user)?;
                let session =
                    self.session_for(caller.principal, prepared.default_schema.as_deref())?;
                if let Some(msg) = &prepared.not_a_query {
                    return Err(Status::permission_denied(msg.clone()));
                }
                session
                    .plan_sql(&prepared.sql)
                    .await
                    .map_err(engine_status)?
                    .schema
            }
            Command::CommandGetCatalogs(c) => c.into_builder().schema(),
            Command::CommandGetDbSchemas(c) => c.into_builder().schema(),
            Command::CommandGetTables(c) => c.into_builder().schema(),
            Command::CommandGetTableTypes(_) => metadata::table_types_schema(),
            Command::CommandGetSqlInfo(c) => c.into_builder(&self.sql_info).schema(),
            Command::CommandGetXdbcTypeInfo(c) => c.into_builder(&self.xdbc_info).schema(),
            Command::CommandGetPrimaryKeys(_) => metadata::primary_keys_schema(),
            Command::CommandGetImportedKeys(_)
            | Command::CommandGetExportedKeys(_)
            | Command::CommandGetCrossReference(_) => metadata::foreign_keys_schema(),
            other => {
                return Err(Status::invalid_argument(format!(
                    "GetSchema is not available for {}",
                    other.type_url()
                )))
            }
        };
        Ok(schema.as_ref().clone())
    }

    fn set_session_options(
        &self,
        caller: &Caller,
        visible_schemas: &[String],
        body: &[u8],
    ) -> Result<SetSessionOptionsResult, Status> {
        let req: SetSessionOptionsRequest =
            decode_body(body, "SetSessionOptionsRequest").map_err(Status::invalid_argument)?;
        let key = caller.session_key.as_deref().ok_or_else(|| {
            Status::unauthenticated("session options need a bearer token from the handshake")
        })?;
        let user = &caller.principal.user;
        let mut result = SetSessionOptionsResult::default();
        let mut error = |name: &str, e: SetOptionError| {
            result
                .errors
                .insert(name.to_string(), SetSessionOptionsError { value: e as i32 });
        };
        for (name, value) in req.session_options {
            let value = match value.option_value {
                None => None,
                Some(OptionValue::StringValue(s)) => Some(s),
                Some(_) => {
                    error(&name, SetOptionError::InvalidValue);
                    continue;
                }
            };
            match name.to_ascii_lowercase().as_str() {
                CATALOG_OPTION => {
                    if value
                        .as_deref()
                        .is_some_and(|c| !c.is_empty() && c != MESH_CATALOG)
                    {
                        error(&name, SetOptionError::InvalidValue);
                    }
                }
                SCHEMA_OPTION => match value.filter(|s| !s.is_empty()) {
                    None => self.sessions.set_schema(key, user, None),
                    Some(s) if visible_schemas.contains(&s) => {
                        self.sessions.set_schema(key, user, Some(s))
                    }
                    Some(_) => error(&name, SetOptionError::InvalidValue),
                },
                _ => error(&name, SetOptionError::InvalidName),
            }
        }
        Ok(result)
    }

    fn cancel_info(&self, caller: &Caller, info: &FlightInfo) -> CancelStatus {
        let cancelled: usize = info
            .endpoint
            .iter()
            .filter_map(|e| e.ticket.as_ref())
            .map(|t| self.running.cancel(&t.ticket, &caller.principal.user))
            .sum();
        if cancelled > 0 {
            CancelStatus::Cancelled
        } else {
            CancelStatus::NotCancellable
        }
    }
}

/// Runs a step of an observed query; a failure is counted with its status code.
fn observed<T>(
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
        .with_total_bytes(-1)
        .with_ordered(true))
}

fn metadata_info(
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

fn arrow_status(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("building a metadata result: {e}"))
}

fn ipc_schema(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &Default::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

fn action_result(body: impl Message) -> DoActionStream {
    let body = Bytes::from(body.encode_to_vec());
    Box::pin(stream::once(
        async move { Ok(arrow_flight::Result { body }) },
    ))
}

/// Reads the parameter rows of a DoPut.
async fn parameter_rows(
    request: Request<PeekableFlightDataStream>,
) -> Result<Vec<Vec<ScalarValue>>, Status> {
    let flight_data = request
        .into_inner()
        .map_err(|s| FlightError::Tonic(Box::new(s)));
    let mut batches = FlightRecordBatchStream::new_from_flight_data(flight_data);
    let mut rows = Vec::new();
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(|e| match e {
            FlightError::Tonic(s) => *s,
            other => Status::invalid_argument(format!("malformed parameter data: {other}")),
        })?;
        if rows.len() + batch.num_rows() > MAX_PARAMETER_ROWS {
            return Err(Status::invalid_argument(format!(
                "too many parameter rows: at most {MAX_PARAMETER_ROWS} can be bound at once"
            )));
        }
        for row in 0..batch.num_rows() {
            rows.push(row_values(&batch, row)?);
        }
    }
    Ok(rows)
}

const READ_ONLY_QUERY_UPDATE: &str = "this prepared statement is a query: meshql is read-only, \
     so it cannot be executed as an update or a batch (executemany/executeBatch); bind its \
     parameters with DoPut(CommandPreparedStatementQuery) and fetch the rows with \
     GetFlightInfo and DoGet";

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
        let (token, _principal) = self
            .auth
            .handshake(request.metadata().as_ref())
            .await
            .map_err(auth_status)?;
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
        let caller = self.caller(&request)?;
        let default_schema = self.default_schema(&caller);
        let session = self.session_for(caller.principal, default_schema.as_deref())?;
        let sql = number_placeholders(&query.query);
        let planned = session.plan_sql(&sql).await.map_err(engine_status)?;
        let handle = StatementTicket {
            sql,
            default_schema,
            id: uuid::Uuid::new_v4().to_string(),
        }
        .encode_to_vec();
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        }
        .as_any()
        .encode_to_vec();
        Ok(Response::new(flight_info(
            &planned.schema,
            ticket,
            request.into_inner(),
        )?))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let observer = QueryObserver::start("flight");
        let principal = observed(&observer, || {
            observer
                .authenticate_span()
                .in_scope(|| self.principal(&request))
        })?;
        observer.authenticated(&principal.user);
        let t = observed(&observer, || {
            StatementTicket::decode(ticket.statement_handle)
                .map_err(|_| Status::invalid_argument("malformed statement ticket"))
        })?;
        let session = observed(&observer, || {
            self.session_for(principal, t.default_schema.as_deref())
        })?;
        tracing::info!(user = %session.principal().user, sql = %t.sql, "query");
        let started = std::time::Instant::now();
        let planned = match session
            .plan_sql(&t.sql)
            .instrument(observer.plan_span())
            .await
        {
            Ok(p) => p,
            Err(e) => {
                observer.failed(engine_code_name(&e));
                return Err(engine_status(e));
            }
        };
        observer.planned(started, &session.reads());
        let schema = Arc::clone(&planned.schema);
        let key = request.into_inner().ticket;
        Ok(Response::new(
            self.run(session, schema, vec![planned], key, observer)
                .await?,
        ))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let caller = self.caller(&request)?;
        let default_schema = self.default_schema(&caller);
        let session = self.session_for(caller.principal.clone(), default_schema.as_deref())?;
        let sql = number_placeholders(&query.query);
        let (dataset_schema, parameter_schema, not_a_query) = match session.plan_sql(&sql).await {
            Ok(planned) => (
                Arc::clone(&planned.schema),
                planned.parameter_schema().map_err(engine_status)?,
                None,
            ),
            // Statements that are not queries get an empty dataset schema, as JDBC expects;
            // executing them is refused with PERMISSION_DENIED.
            Err(meshql_engine::EngineError::ReadOnly(msg)) => (
                Arc::new(Schema::empty()),
                Arc::new(Schema::empty()),
                Some(msg),
            ),
            Err(e) => return Err(engine_status(e)),
        };
        let handle = Bytes::from(uuid::Uuid::new_v4().to_string());
        self.prepared.insert(
            handle.clone(),
            Prepared::new(
                caller.principal.user.clone(),
                caller.session_key.clone(),
                sql,
                default_schema,
                not_a_query,
            ),
        );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle,
            dataset_schema: ipc_schema(&dataset_schema)?,
            parameter_schema: ipc_schema(&parameter_schema)?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let principal = self.principal(&request)?;
        // Closing is idempotent; another user's handle is left alone.
        self.prepared
            .close(&query.prepared_statement_handle, &principal.user);
        Ok(())
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = self.principal(&request)?;
        let prepared = self
            .prepared
            .get(&cmd.prepared_statement_handle, &principal.user)?;
        let session = self.session_for(principal, prepared.default_schema.as_deref())?;
        let (schema, _) = self.plan_prepared(&session, &prepared).await?;
        let ticket = cmd.as_any().encode_to_vec();
        Ok(Response::new(flight_info(
            &schema,
            ticket,
            request.into_inner(),
        )?))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let observer = QueryObserver::start("flight");
        let principal = observed(&observer, || {
            observer
                .authenticate_span()
                .in_scope(|| self.principal(&request))
        })?;
        observer.authenticated(&principal.user);
        let prepared = observed(&observer, || {
            self.prepared
                .get(&cmd.prepared_statement_handle, &principal.user)
        })?;
        let session = observed(&observer, || {
            self.session_for(principal, prepared.default_schema.as_deref())
        })?;
        tracing::info!(user = %session.principal().user, sql = %prepared.sql, params = prepared.params.len(), "prepared query");
        let started = std::time::Instant::now();
        let planned = self
            .plan_prepared(&session, &prepared)
            .instrument(observer.plan_span())
            .await;
        let (schema, plans) = match planned {
            Ok(p) => p,
            Err(status) => {
                observer.failed(code_name(status.code()));
                return Err(status);
            }
        };
        observer.planned(started, &session.reads());
        let key = request.into_inner().ticket;
        Ok(Response::new(
            self.run(session, schema, plans, key, observer).await?,
        ))
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let principal = self.principal(&request)?;
        let handle = cmd.prepared_statement_handle;
        let mut prepared = self.prepared.get(&handle, &principal.user)?;
        let params = parameter_rows(request).await?;
        prepared.params = params.clone();
        // Check the values against the statement now, so a bad binding fails here.
        let session = self.session_for(principal.clone(), prepared.default_schema.as_deref())?;
        if prepared.not_a_query.is_none() {
            self.plan_prepared(&session, &prepared).await?;
        }
        // State stays under the original handle (flightsql-dbapi keeps using it); the same
        // handle is returned for clients that use the returned one (ADBC, JDBC).
        self.prepared.bind(&handle, &principal.user, params)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let principal = self.principal(&request)?;
        let prepared = self
            .prepared
            .get(&cmd.prepared_statement_handle, &principal.user)?;
        match prepared.not_a_query {
            Some(msg) => Err(Status::permission_denied(msg)),
            None => Err(Status::invalid_argument(READ_ONLY_QUERY_UPDATE)),
        }
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

    async fn do_put_statement_ingest(
        &self,
        _cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.principal(&request)?;
        Err(Status::permission_denied(
            "meshql is read-only: bulk ingestion is not accepted",
        ))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.into_builder().schema();
        metadata_info(&schema, query, request)
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
        metadata_info(&schema, query, request)
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
        metadata_info(&schema, query, request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(&request)?;
        let tables = session.tables().await.map_err(engine_status)?;
        let batch = metadata::tables_batch(query, &tables)?;
        Ok(Response::new(one_batch(batch)))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        metadata_info(&metadata::table_types_schema(), query, request)
    }

    async fn do_get_table_types(
        &self,
        _query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(&request)?;
        Ok(Response::new(one_batch(metadata::table_types_batch()?)))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder(&self.sql_info).schema();
        metadata_info(&schema, query, request)
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

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.into_builder(&self.xdbc_info).schema();
        metadata_info(&schema, query, request)
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(&request)?;
        let batch = query
            .into_builder(&self.xdbc_info)
            .build()
            .map_err(arrow_status)?;
        Ok(Response::new(one_batch(batch)))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        metadata_info(&metadata::primary_keys_schema(), query, request)
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(&request)?;
        let tables = session.tables().await.map_err(engine_status)?;
        Ok(Response::new(one_batch(metadata::primary_keys_batch(
            &query, &tables,
        )?)))
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        metadata_info(&metadata::foreign_keys_schema(), query, request)
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(&request)?;
        Ok(Response::new(one_batch(metadata::foreign_keys_batch())))
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        metadata_info(&metadata::foreign_keys_schema(), query, request)
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(&request)?;
        Ok(Response::new(one_batch(metadata::foreign_keys_batch())))
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        metadata_info(&metadata::foreign_keys_schema(), query, request)
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(&request)?;
        Ok(Response::new(one_batch(metadata::foreign_keys_batch())))
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

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let caller = self.caller(&request)?;
        let info = FlightInfo::decode(query.info)
            .map_err(|e| Status::invalid_argument(format!("malformed FlightInfo: {e}")))?;
        // CancelResult values mirror CancelStatus (1 = cancelled, 3 = not cancellable).
        Ok(ActionCancelQueryResult {
            result: self.cancel_info(&caller, &info) as i32,
        })
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<DoActionStream>, Status> {
        let caller = self.caller(&request)?;
        let action = request.get_ref();
        match action.r#type.as_str() {
            SET_SESSION_OPTIONS => {
                let session = self.session_for(caller.principal.clone(), None)?;
                let visible = session.schemas();
                let result = self.set_session_options(&caller, &visible, &action.body)?;
                Ok(Response::new(action_result(result)))
            }
            GET_SESSION_OPTIONS => {
                let mut result = GetSessionOptionsResult::default();
                result.session_options.insert(
                    CATALOG_OPTION.to_string(),
                    SessionOptionValue::string(MESH_CATALOG),
                );
                if let Some(schema) = self.default_schema(&caller) {
                    result.session_options.insert(
                        SCHEMA_OPTION.to_string(),
                        SessionOptionValue::string(schema),
                    );
                }
                Ok(Response::new(action_result(result)))
            }
            CLOSE_SESSION => {
                if let Some(key) = &caller.session_key {
                    self.sessions.close(key, &caller.principal.user);
                    self.prepared.close_session(key, &caller.principal.user);
                }
                Ok(Response::new(action_result(CloseSessionResult {
                    status: CLOSE_SESSION_CLOSED,
                })))
            }
            CANCEL_FLIGHT_INFO => {
                let req: CancelFlightInfoRequest =
                    decode_body(&action.body, "CancelFlightInfoRequest")
                        .map_err(Status::invalid_argument)?;
                let info = req.info.ok_or_else(|| {
                    Status::invalid_argument("CancelFlightInfoRequest carries no FlightInfo")
                })?;
                let status = self.cancel_info(&caller, &info);
                Ok(Response::new(action_result(CancelFlightInfoResult {
                    status: status as i32,
                })))
            }
            other => Err(Status::invalid_argument(format!(
                "unknown action type `{other}`"
            ))),
        }
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        let action = |t: &str, d: &str| {
            Ok(ActionType {
                r#type: t.to_string(),
                description: d.to_string(),
            })
        };
        Some(vec![
            action(
                SET_SESSION_OPTIONS,
                "Sets session options `catalog` (always `mesh`) and `schema` (the default \
                 domain for unqualified table names).",
            ),
            action(GET_SESSION_OPTIONS, "Returns the session's options."),
            action(
                CLOSE_SESSION,
                "Closes the session and its prepared statements.",
            ),
            action(
                CANCEL_FLIGHT_INFO,
                "Cancels the running executions of a FlightInfo's endpoints.",
            ),
        ])
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

// The blanket `FlightService` impl comes from arrow-flight for every `FlightSqlService`.
const _: fn() = || {
    fn assert_service<T: FlightService>() {}
    assert_service::<MeshFlightSqlService>();
};
