//! meshql's Arrow Flight SQL server: authentication, the Flight SQL service over the engine,
//! and the server loop. The `meshql` binary (CLI) lives in `main.rs`.

mod auth;
mod cancel;
mod get_schema;
mod metadata;
mod prepared;
mod server;
mod service;
mod session_options;
mod sql_info;
mod status;
mod tls;

pub use auth::Authenticator;
pub use get_schema::{flight_service, MeshFlightService};
pub use server::{
    bind, check_tls, local_addr, serve, serve_service, Result, ServerError,
    DEFAULT_MAX_MESSAGE_BYTES,
};
pub use service::MeshFlightSqlService;
