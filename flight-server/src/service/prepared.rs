//! Prepared statements over Flight SQL: created by an action (planned once to answer the
//! dataset and parameter schemas), parameters bound by DoPut, executed by GetFlightInfo and
//! DoGet (once per bound parameter row), closed by an action. Handles are kept in
//! [`crate::prepared::PreparedStore`], per owning principal. The plan made by one step is kept
//! for the next ([`crate::planned`]), so that create, GetFlightInfo and DoGet plan once.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt,
};
use arrow_flight::{Action, FlightDescriptor, FlightInfo, Ticket};
use bytes::Bytes;
use datafusion::scalar::ScalarValue;
use futures::{StreamExt, TryStreamExt};
use meshql_engine::{PlannedQuery, QuerySession};
use prost::Message;
use tonic::{Request, Response, Status};

use meshql_engine::telemetry::QueryObserver;
use tracing::Instrument;

use super::results::{flight_info, ipc_schema, observed};
use super::{caller, DoGetStream, MeshFlightSqlService};
use crate::planned::PreparedPlan;
use crate::prepared::{number_placeholders, row_values, Prepared, MAX_PARAMETER_ROWS};
use crate::status::{code_name, engine_status};

const READ_ONLY_QUERY_UPDATE: &str = "this prepared statement is a query: meshql is read-only, \
     so it cannot be executed as an update or a batch (executemany/executeBatch); bind its \
     parameters with DoPut(CommandPreparedStatementQuery) and fetch the rows with \
     GetFlightInfo and DoGet";

impl MeshFlightSqlService {
    pub(super) async fn create_prepared(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let caller = caller(&request)?;
        let default_schema = self.default_schema(&caller);
        let session = self.session_for(caller.principal.clone(), default_schema.as_deref())?;
        let sql = number_placeholders(&query.query);
        let (dataset_schema, parameter_schema, not_a_query, planned) =
            match session.plan_sql(&sql).await {
                Ok(planned) => (
                    Arc::clone(&planned.schema),
                    planned.parameter_schema().map_err(engine_status)?,
                    None,
                    Some(planned),
                ),
                // Statements that are not queries get an empty dataset schema, as JDBC expects;
                // executing them is refused with PERMISSION_DENIED.
                Err(meshql_engine::EngineError::ReadOnly(msg)) => (
                    Arc::new(Schema::empty()),
                    Arc::new(Schema::empty()),
                    Some(msg),
                    None,
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
        )?;
        // A query without parameters runs as planned now, if GetFlightInfo comes soon.
        if let Some(planned) = planned.filter(|_| parameter_schema.fields().is_empty()) {
            self.prepared_plans.keep(
                &plan_key(&caller.principal.user, &handle),
                caller.principal,
                PreparedPlan {
                    session,
                    schema: Arc::clone(&dataset_schema),
                    plans: vec![planned],
                    params: Vec::new(),
                },
            );
        }
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle,
            dataset_schema: ipc_schema(&dataset_schema)?,
            parameter_schema: ipc_schema(&parameter_schema)?,
        })
    }

    pub(super) fn close_prepared(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let principal = caller(&request)?.principal;
        // Closing is idempotent; another user's handle is left alone.
        let handle = &query.prepared_statement_handle;
        self.prepared.close(handle, &principal.user);
        self.prepared_plans
            .forget(&plan_key(&principal.user, handle));
        Ok(())
    }

    pub(super) async fn prepared_info(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = caller(&request)?.principal;
        let prepared = self
            .prepared
            .get(&cmd.prepared_statement_handle, &principal.user)?;
        // The plan made when the statement was created or bound, else a new one; either is
        // kept for the DoGet that follows.
        let key = plan_key(&principal.user, &cmd.prepared_statement_handle);
        let kept = match self.kept_plan(&key, &principal, &prepared) {
            Some(kept) => kept,
            None => {
                let session =
                    self.session_for(principal.clone(), prepared.default_schema.as_deref())?;
                let (schema, plans) = self.plan_prepared(&session, &prepared).await?;
                PreparedPlan {
                    session,
                    schema,
                    plans,
                    params: prepared.params.clone(),
                }
            }
        };
        let schema = Arc::clone(&kept.schema);
        self.prepared_plans.keep(&key, principal, kept);
        let ticket = cmd.as_any().encode_to_vec();
        Ok(Response::new(flight_info(
            &schema,
            ticket,
            request.into_inner(),
        )?))
    }

    pub(super) async fn prepared_results(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let observer = QueryObserver::start("flight");
        let principal = observed(&observer, || {
            observer
                .authenticate_span()
                .in_scope(|| caller(&request).map(|c| c.principal))
        })?;
        observer.authenticated(&principal.user);
        let prepared = observed(&observer, || {
            self.prepared
                .get(&cmd.prepared_statement_handle, &principal.user)
        })?;
        let started = std::time::Instant::now();
        let key = plan_key(&principal.user, &cmd.prepared_statement_handle);
        let (session, schema, plans) = match self.kept_plan(&key, &principal, &prepared) {
            Some(kept) => {
                // Planned by GetFlightInfo: the plan span is still there, and short.
                drop(observer.plan_span().entered());
                (kept.session, kept.schema, kept.plans)
            }
            None => {
                let session = observed(&observer, || {
                    self.session_for(principal, prepared.default_schema.as_deref())
                })?;
                let planned = self
                    .plan_prepared(&session, &prepared)
                    .instrument(observer.plan_span())
                    .await;
                match planned {
                    Ok((schema, plans)) => (session, schema, plans),
                    Err(status) => {
                        observer.failed(code_name(status.code()));
                        return Err(status);
                    }
                }
            }
        };
        tracing::info!(user = %session.principal().user, sql = %self.engine.sql_for_log(&prepared.sql), params = prepared.params.len(), "prepared query");
        observer.planned(started, &session.reads());
        let key = request.into_inner().ticket;
        Ok(Response::new(
            self.run(session, schema, plans, key, observer).await?,
        ))
    }

    pub(super) async fn bind_prepared(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let principal = caller(&request)?.principal;
        let handle = cmd.prepared_statement_handle;
        let mut prepared = self.prepared.get(&handle, &principal.user)?;
        let params = parameter_rows(request).await?;
        prepared.params = params.clone();
        // Check the values against the statement now, so a bad binding fails here.
        let session = self.session_for(principal.clone(), prepared.default_schema.as_deref())?;
        let key = plan_key(&principal.user, &handle);
        self.prepared_plans.forget(&key);
        let planned = match prepared.not_a_query {
            None => Some(self.plan_prepared(&session, &prepared).await?),
            Some(_) => None,
        };
        // State stays under the original handle (flightsql-dbapi keeps using it); the same
        // handle is returned for clients that use the returned one (ADBC, JDBC).
        self.prepared.bind(&handle, &principal.user, params)?;
        // The plans with these values are the ones the GetFlightInfo that follows runs.
        if let Some((schema, plans)) = planned {
            let params = prepared.params;
            let kept = PreparedPlan {
                session,
                schema,
                plans,
                params,
            };
            self.prepared_plans.keep(&key, principal, kept);
        }
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle),
        })
    }

    pub(super) fn refuse_prepared_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let principal = caller(&request)?.principal;
        let prepared = self
            .prepared
            .get(&cmd.prepared_statement_handle, &principal.user)?;
        match prepared.not_a_query {
            Some(msg) => Err(Status::permission_denied(msg)),
            None => Err(Status::invalid_argument(READ_ONLY_QUERY_UPDATE)),
        }
    }

    /// The plan kept for `prepared` under `key`, when it was made for `principal` with the
    /// values bound now.
    fn kept_plan(
        &self,
        key: &str,
        principal: &meshql_catalog::Principal,
        prepared: &Prepared,
    ) -> Option<PreparedPlan> {
        self.prepared_plans
            .take(key, principal)
            .filter(|kept| kept.params == prepared.params)
    }

    /// Plans a prepared statement with its bound parameters: one plan per parameter row (or
    /// one unbound plan when none are bound).
    pub(super) async fn plan_prepared(
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

/// Where a prepared statement's kept plan is found: its owner and handle.
fn plan_key(user: &str, handle: &[u8]) -> String {
    let mut key = format!("{user}\0");
    for b in handle {
        key.push_str(&format!("{b:02x}"));
    }
    key
}
