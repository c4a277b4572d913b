//! meshql's Arrow Flight SQL server: the Flight SQL service over the engine and the server loop.
//! Authentication lives in `meshql-auth` (checked for every request by [`AuthLayer`]), the
//! `meshql` binary in `meshql-cli`.

mod auth_layer;
mod cancel;
mod get_schema;
mod metadata;
mod planned;
mod prepared;
mod server;
mod service;
mod session_options;
mod sql_info;
mod status;
mod tls;

pub use auth_layer::{AuthLayer, Authenticated};
pub use get_schema::{flight_service, MeshFlightService};
pub use meshql_auth::Authenticator;
pub use server::{
    bind, check_tls, local_addr, serve, serve_service, serve_with_authenticator, Result,
    ServerError, DEFAULT_MAX_MESSAGE_BYTES,
};
pub use service::MeshFlightSqlService;
