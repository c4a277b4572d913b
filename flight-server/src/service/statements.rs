//! SQL statements: GetFlightInfo plans a query and answers its schema with a ticket carrying the
//! SQL; DoGet runs the plan GetFlightInfo made (kept in [`crate::planned`] for the same
//! principal), or plans the ticket's SQL again when that plan is gone, and streams the results.
//! Updates and bulk ingestion are refused: meshql is read-only.

use std::sync::Arc;

use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt, TicketStatementQuery};
use arrow_flight::{FlightDescriptor, FlightInfo, Ticket};
use prost::Message;
use tonic::{Request, Response, Status};

use meshql_engine::telemetry::QueryObserver;
use tracing::Instrument;

use super::results::{flight_info, observed};
use super::{caller, DoGetStream, MeshFlightSqlService};
use crate::prepared::number_placeholders;
use crate::status::{engine_code_name, engine_status};

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

impl MeshFlightSqlService {
    pub(super) async fn statement_info(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = caller(&request)?;
        let default_schema = self.default_schema(&caller);
        let session = self.session_for(caller.principal, default_schema.as_deref())?;
        let sql = number_placeholders(&query.query);
        let planned = session.plan_sql(&sql).await.map_err(engine_status)?;
        let id = uuid::Uuid::new_v4().to_string();
        let schema = Arc::clone(&planned.schema);
        self.planned
            .keep(&id, session.principal().clone(), (session, planned));
        let handle = StatementTicket {
            sql,
            default_schema,
            id,
        }
        .encode_to_vec();
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        }
        .as_any()
        .encode_to_vec();
        Ok(Response::new(flight_info(
            &schema,
            ticket,
            request.into_inner(),
        )?))
    }

    pub(super) async fn statement_results(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let observer = QueryObserver::start("flight");
        let principal = observed(&observer, || {
            observer
                .authenticate_span()
                .in_scope(|| caller(&request).map(|c| c.principal))
        })?;
        observer.authenticated(&principal.user);
        let t = observed(&observer, || {
            StatementTicket::decode(ticket.statement_handle)
                .map_err(|_| Status::invalid_argument("malformed statement ticket"))
        })?;
        let started = std::time::Instant::now();
        let (session, planned) = match self.planned.take(&t.id, &principal) {
            Some(kept) => {
                // Planned by GetFlightInfo: the plan span is still there, and short.
                drop(observer.plan_span().entered());
                kept
            }
            None => {
                let session = observed(&observer, || {
                    self.session_for(principal, t.default_schema.as_deref())
                })?;
                match session
                    .plan_sql(&t.sql)
                    .instrument(observer.plan_span())
                    .await
                {
                    Ok(p) => (session, p),
                    Err(e) => {
                        observer.failed(engine_code_name(&e));
                        return Err(engine_status(e));
                    }
                }
            }
        };
        tracing::info!(user = %session.principal().user, sql = %self.engine.sql_for_log(&t.sql), "query");
        observer.planned(started, &session.reads());
        let schema = Arc::clone(&planned.schema);
        let key = request.into_inner().ticket;
        Ok(Response::new(
            self.run(session, schema, vec![planned], key, observer)
                .await?,
        ))
    }

    pub(super) fn refuse_update(
        &self,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(Status::permission_denied(
            "meshql is read-only: updates are not accepted",
        ))
    }

    pub(super) fn refuse_ingest(
        &self,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(Status::permission_denied(
            "meshql is read-only: bulk ingestion is not accepted",
        ))
    }
}
