//! Flight actions beyond prepared statements: CancelQuery and CancelFlightInfo (stop the
//! caller's own running executions of a FlightInfo), and the session options
//! (SetSessionOptions, GetSessionOptions, CloseSession) kept per bearer token in
//! [`crate::session_options::SessionStore`].

use arrow_flight::sql::{ActionCancelQueryRequest, ActionCancelQueryResult};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightInfo,
};
use meshql_engine::MESH_CATALOG;
use prost::Message;
use tonic::{Request, Response, Status};

use super::results::action_result;
use super::{caller, Caller, DoActionStream, MeshFlightSqlService};
use crate::session_options::{
    decode_body, CloseSessionResult, GetSessionOptionsResult, OptionValue, SessionOptionValue,
    SetOptionError, SetSessionOptionsError, SetSessionOptionsRequest, SetSessionOptionsResult,
    CANCEL_FLIGHT_INFO, CATALOG_OPTION, CLOSE_SESSION, CLOSE_SESSION_CLOSED, GET_SESSION_OPTIONS,
    SCHEMA_OPTION, SET_SESSION_OPTIONS,
};

/// The actions ListActions announces besides the Flight SQL ones.
pub(super) fn custom_actions() -> Vec<Result<ActionType, Status>> {
    let action = |t: &str, d: &str| {
        Ok(ActionType {
            r#type: t.to_string(),
            description: d.to_string(),
        })
    };
    vec![
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
    ]
}

impl MeshFlightSqlService {
    pub(super) fn cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let caller = caller(&request)?;
        let info = FlightInfo::decode(query.info)
            .map_err(|e| Status::invalid_argument(format!("malformed FlightInfo: {e}")))?;
        // CancelResult values mirror CancelStatus (1 = cancelled, 3 = not cancellable).
        Ok(ActionCancelQueryResult {
            result: self.cancel_info(&caller, &info) as i32,
        })
    }

    /// The actions the Flight SQL trait does not know: session options and CancelFlightInfo.
    pub(super) fn other_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<DoActionStream>, Status> {
        let caller = caller(&request)?;
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
