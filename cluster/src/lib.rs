//! meshql distributed execution on datafusion-distributed 4 (DataFusion 55).
//!
//! - [`run_worker`] serves a worker (`meshql worker --config F --bind HOST:PORT`): the mesh's
//!   object stores and nothing else, answering only callers with the cluster's shared secret.
//! - [`Coordinator`] turns a server's engine into one that plans each query for its caller as
//!   on a single node (policies applied, `MeshqlPolicyExec` barriers in place) and lets
//!   datafusion-distributed split the physical plan into stages across the workers of
//!   `[cluster] workers`.
//!
//! See docs/cluster.md for what travels over the wire and how failures are handled.

mod auth;
mod channel;
mod codec;
mod coordinator;
mod delta;
mod error;
mod planner;
mod pool;
mod product_exec;
mod scale;
pub mod telemetry;
mod worker;

pub use auth::{ClusterSecret, MIN_SECRET_LEN};
pub use codec::MeshqlCodec;
pub use coordinator::Coordinator;
pub use error::{ClusterError, Result};
pub use worker::{run_worker, ClusterWorker};

/// The datafusion-proto codec trait, for [`Coordinator::start_with`] and [`ClusterWorker::with_codec`].
pub use datafusion_proto::physical_plan::PhysicalExtensionCodec;
