//! meshql's Arrow Flight SQL server: authentication, the Flight SQL service over the engine,
//! and the server loop. The `meshql` binary (CLI) lives in `main.rs`.

mod auth;
mod server;
mod service;
mod status;

pub use auth::Authenticator;
pub use server::{bind, local_addr, serve, Result, ServerError, DEFAULT_MAX_MESSAGE_BYTES};
pub use service::{flight_service, MeshFlightSqlService};
