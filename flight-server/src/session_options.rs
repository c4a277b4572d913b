//! Flight SQL sessions: SetSessionOptions, GetSessionOptions and CloseSession.
//!
//! arrow-flight 59 has no generated types for these Flight actions, so the messages are
//! declared here with the field numbers of `Flight.proto`. Action bodies and results are the
//! plain serialized messages (not `Any`-wrapped), as the Flight clients send them.
//!
//! A session is identified by the caller's bearer token: every handshake issues a fresh token,
//! so the token is exactly the lifetime of one client connection (ADBC, JDBC), needs no cookie
//! support from the client, and dies with the token. Options are kept per token and owner.
//! `GetSessionOptionsRequest` and `CloseSessionRequest` are empty messages, so their bodies are
//! not read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prost::Message;

pub(crate) const SET_SESSION_OPTIONS: &str = "SetSessionOptions";
pub(crate) const GET_SESSION_OPTIONS: &str = "GetSessionOptions";
pub(crate) const CLOSE_SESSION: &str = "CloseSession";
pub(crate) const CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";

/// Option names meshql understands.
pub(crate) const CATALOG_OPTION: &str = "catalog";
pub(crate) const SCHEMA_OPTION: &str = "schema";

/// Sessions unused for this long are forgotten.
const SESSION_IDLE: Duration = Duration::from_secs(24 * 3600);

/// `SessionOptionValue`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct SessionOptionValue {
    #[prost(oneof = "OptionValue", tags = "1, 2, 3, 4, 5")]
    pub(crate) option_value: Option<OptionValue>,
}

/// `SessionOptionValue.StringListValue`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct StringListValue {
    #[prost(string, repeated, tag = "1")]
    pub(crate) values: Vec<String>,
}

/// `SessionOptionValue.option_value` (variant names follow the proto).
#[allow(clippy::enum_variant_names)]
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum OptionValue {
    #[prost(string, tag = "1")]
    StringValue(String),
    #[prost(bool, tag = "2")]
    BoolValue(bool),
    #[prost(sfixed64, tag = "3")]
    Int64Value(i64),
    #[prost(double, tag = "4")]
    DoubleValue(f64),
    #[prost(message, tag = "5")]
    StringListValue(StringListValue),
}

impl SessionOptionValue {
    pub(crate) fn string(s: impl Into<String>) -> Self {
        Self {
            option_value: Some(OptionValue::StringValue(s.into())),
        }
    }
}

/// `SetSessionOptionsRequest`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct SetSessionOptionsRequest {
    #[prost(map = "string, message", tag = "1")]
    pub(crate) session_options: HashMap<String, SessionOptionValue>,
}

/// `SetSessionOptionsResult.ErrorValue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SetOptionError {
    InvalidName = 1,
    InvalidValue = 2,
}

/// `SetSessionOptionsResult.Error`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct SetSessionOptionsError {
    /// A `SetSessionOptionsResult.ErrorValue`.
    #[prost(int32, tag = "1")]
    pub(crate) value: i32,
}

/// `SetSessionOptionsResult`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct SetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    pub(crate) errors: HashMap<String, SetSessionOptionsError>,
}

/// `GetSessionOptionsResult`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct GetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    pub(crate) session_options: HashMap<String, SessionOptionValue>,
}

/// `CloseSessionResult`; status 1 = CLOSED.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct CloseSessionResult {
    #[prost(int32, tag = "1")]
    pub(crate) status: i32,
}

pub(crate) const CLOSE_SESSION_CLOSED: i32 = 1;

/// Decodes an action body, accepting a bare message or one wrapped in `google.protobuf.Any`.
pub(crate) fn decode_body<M: Message + Default>(body: &[u8], name: &str) -> Result<M, String> {
    if let Ok(any) = arrow_flight::sql::Any::decode(body) {
        if any
            .type_url
            .starts_with("type.googleapis.com/arrow.flight.protocol.")
            && any.type_url.ends_with(name)
        {
            return M::decode(any.value).map_err(|e| format!("malformed {name}: {e}"));
        }
    }
    M::decode(body).map_err(|e| format!("malformed {name}: {e}"))
}

#[derive(Debug)]
struct SessionEntry {
    owner: String,
    schema: Option<String>,
    touched: Instant,
}

/// Options per session.
#[derive(Debug, Default)]
pub(crate) struct SessionStore {
    map: Mutex<HashMap<String, SessionEntry>>,
}

impl SessionStore {
    /// The default schema set in `key`'s session by `user`.
    pub(crate) fn schema(&self, key: Option<&str>, user: &str) -> Option<String> {
        let key = key?;
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.get_mut(key).filter(|e| e.owner == user)?;
        entry.touched = Instant::now();
        entry.schema.clone()
    }

    pub(crate) fn set_schema(&self, key: &str, user: &str, schema: Option<String>) {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, e| now.duration_since(e.touched) < SESSION_IDLE);
        let entry = map.entry(key.to_string()).or_insert_with(|| SessionEntry {
            owner: user.to_string(),
            schema: None,
            touched: now,
        });
        if entry.owner != user {
            // A token belongs to one principal; a different owner means a stale entry.
            entry.owner = user.to_string();
        }
        entry.schema = schema;
        entry.touched = now;
    }

    pub(crate) fn close(&self, key: &str, user: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(key).is_some_and(|e| e.owner == user) {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let mut req = SetSessionOptionsRequest::default();
        req.session_options
            .insert("schema".into(), SessionOptionValue::string("sales"));
        req.session_options.insert(
            "n".into(),
            SessionOptionValue {
                option_value: Some(OptionValue::Int64Value(-3)),
            },
        );
        let bytes = req.encode_to_vec();
        let back: SetSessionOptionsRequest =
            decode_body(&bytes, "SetSessionOptionsRequest").unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn session_is_per_owner() {
        let s = SessionStore::default();
        s.set_schema("t1", "alice", Some("sales".into()));
        assert_eq!(s.schema(Some("t1"), "alice").as_deref(), Some("sales"));
        assert_eq!(s.schema(Some("t1"), "bob"), None);
        s.close("t1", "alice");
        assert_eq!(s.schema(Some("t1"), "alice"), None);
    }
}
