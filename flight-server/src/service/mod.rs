//! The Flight SQL service: a thin transport over the engine. Requests arrive authenticated (the
//! [`crate::auth_layer`] in front of the service put their [`Identity`] into the request's
//! extensions); each method reads its caller from there, carries the principal into an engine
//! session, and streams what the engine produces.
//!
//! This module holds the service's state and its `FlightSqlService` impl, which only delegates:
//! statements in [`statements`], prepared statements in [`prepared`], catalog metadata in
//! [`metadata`], session options and cancellation in [`actions`], the handshake in
//! [`handshake`], GetSchema in [`schema`], and the making of Flight responses in [`results`].

mod actions;
mod handshake;
mod metadata;
mod prepared;
mod results;
mod schema;
mod statements;

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
    CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest,
    HandshakeResponse, Ticket,
};
use futures::Stream;
use meshql_auth::{Authenticator, Identity};
use meshql_catalog::Principal;
use meshql_engine::{MeshEngine, QuerySession};
use tonic::{Request, Response, Status, Streaming};

use crate::cancel::RunningQueries;
use crate::planned::{PlannedTickets, PreparedPlan};
use crate::prepared::PreparedStore;
use crate::session_options::SessionStore;
use crate::sql_info::{sql_info_data, xdbc_type_info_data};
use crate::status::engine_status;

pub(crate) type DoGetStream =
    Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;
pub(crate) type DoActionStream =
    Pin<Box<dyn Stream<Item = Result<arrow_flight::Result, Status>> + Send + 'static>>;
type HandshakeStream = Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>;

/// meshql's Flight SQL service.
#[derive(Clone)]
pub struct MeshFlightSqlService {
    engine: MeshEngine,
    auth: Arc<Authenticator>,
    prepared: Arc<PreparedStore>,
    sessions: Arc<SessionStore>,
    running: Arc<RunningQueries>,
    /// Plans made by GetFlightInfo, for the DoGet that follows.
    planned: Arc<PlannedTickets>,
    /// Plans of prepared statements, by handle, for the GetFlightInfo and DoGet that follow.
    prepared_plans: Arc<PlannedTickets<PreparedPlan>>,
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
pub(crate) struct Caller {
    pub(crate) principal: Principal,
    /// The bearer token the request carried: it identifies the Flight SQL session.
    pub(crate) session_key: Option<String>,
}

/// The caller of a request, as the authentication layer established it. A request without an
/// identity did not pass the layer: it is refused, never served anonymously.
pub(crate) fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    let identity = request.extensions().get::<Identity>().ok_or_else(|| {
        Status::unauthenticated(
            "missing `authorization` header; authenticate with the handshake first",
        )
    })?;
    Ok(Caller {
        principal: identity.principal.clone(),
        session_key: identity.token.clone(),
    })
}

impl MeshFlightSqlService {
    /// A service with its own [`Authenticator`] for the mesh's users and `[auth]` settings.
    pub fn try_new(engine: MeshEngine) -> Result<Self, Status> {
        let auth = Arc::new(Authenticator::new(&engine.mesh().config));
        Self::try_with_authenticator(engine, auth)
    }

    /// A service sharing `auth` with other transports (the HTTP server), so that a session
    /// token issued by one is valid on the other.
    pub fn try_with_authenticator(
        engine: MeshEngine,
        auth: Arc<Authenticator>,
    ) -> Result<Self, Status> {
        Ok(Self {
            engine,
            auth,
            prepared: Arc::default(),
            sessions: Arc::default(),
            running: Arc::default(),
            planned: Arc::default(),
            prepared_plans: Arc::default(),
            sql_info: Arc::new(sql_info_data()?),
            xdbc_info: Arc::new(xdbc_type_info_data()?),
        })
    }

    /// Sets how many prepared statements one principal may keep open (its least recently used
    /// one is closed beyond that) and how many the server keeps in all (creating one more is
    /// refused with RESOURCE_EXHAUSTED). Defaults: 1,000 and 20,000.
    pub fn with_prepared_statement_limits(mut self, per_principal: usize, total: usize) -> Self {
        self.prepared = Arc::new(PreparedStore::new(per_principal, total));
        self
    }

    /// The authenticator every request of this service goes through.
    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.auth
    }

    /// How many query results are being streamed right now (for tests and monitoring).
    pub fn active_queries(&self) -> usize {
        self.running.len()
    }

    /// Resolves once no query result is being streamed (for tests and graceful shutdown).
    pub async fn idle(&self) {
        self.running.idle().await
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

    /// An engine session for the request's caller, with its session's default schema.
    fn session<T>(&self, request: &Request<T>) -> Result<QuerySession, Status> {
        let caller = caller(request)?;
        let schema = self.default_schema(&caller);
        self.session_for(caller.principal, schema.as_deref())
    }
}

#[tonic::async_trait]
impl FlightSqlService for MeshFlightSqlService {
    type FlightService = MeshFlightSqlService;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<HandshakeStream>, Status> {
        self.handshake(request).await
    }

    // Statements.

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.statement_info(query, request).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.statement_results(ticket, request).await
    }

    async fn do_put_statement_update(
        &self,
        _cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.refuse_update(request)
    }

    async fn do_put_statement_ingest(
        &self,
        _cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.refuse_ingest(request)
    }

    // Prepared statements.

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        self.create_prepared(query, request).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.close_prepared(query, request)
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.prepared_info(cmd, request).await
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.prepared_results(cmd, request).await
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.bind_prepared(cmd, request).await
    }

    async fn do_put_prepared_statement_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.refuse_prepared_update(cmd, request)
    }

    // Catalog metadata.

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.catalogs_info(query, request)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.catalogs(query)
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.schemas_info(query, request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.schemas(query, request)
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tables_info(query, request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.tables(query, request).await
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.table_types_info(query, request)
    }

    async fn do_get_table_types(
        &self,
        _query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.table_types()
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.sql_info_info(query, request)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.sql_info(query)
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.xdbc_type_info_info(query, request)
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.xdbc_type_info(query)
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.primary_keys_info(query, request)
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.primary_keys(query, request).await
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.foreign_keys_info(query, request)
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.foreign_keys()
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.foreign_keys_info(query, request)
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.foreign_keys()
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.foreign_keys_info(query, request)
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.foreign_keys()
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<DoGetStream>, Status> {
        Err(Status::unimplemented(format!(
            "meshql does not support DoGet for {}",
            message.type_url
        )))
    }

    // Actions: cancellation and session options.

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        self.cancel_query(query, request)
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<DoActionStream>, Status> {
        self.other_action(request)
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        Some(actions::custom_actions())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

// The blanket `FlightService` impl comes from arrow-flight for every `FlightSqlService`.
const _: fn() = || {
    fn assert_service<T: FlightService>() {}
    assert_service::<MeshFlightSqlService>();
};
