//! Connections to workers: one lazily connected gRPC channel per worker URL, every request
//! carrying the cluster secret, with connect timeouts and HTTP/2 keep-alive so that a worker
//! that stops answering is noticed within a bounded time.
//!
//! A channel that failed is replaced, not reused. tonic's lazily reconnecting channel keeps the
//! error of a failed connection attempt and hands it to the *next* request, however much later
//! that comes: when the request that caused the attempt was cancelled (a query failing because a
//! worker died cancels its other requests), the refusal stays in the channel and fails the first
//! query sent after the worker is back. So a channel whose request failed at the transport level,
//! or was dropped before its response arrived, is marked broken, and the next request gets a new
//! channel. This holds on the coordinator and on workers (which call each other).
//!
//! Every worker call goes through [`MeshChannel`], which records the worker in the query's
//! [`WorkersUsed`] (for the audit record) and counts plan fragments, rows, bytes and errors per
//! worker (`metrics` facade, label `worker`). Which worker a failure is due to is decided by the
//! coordinator's pool (it asks the workers), not from the error: a healthy worker whose stream was
//! reset because another worker froze reports a transport-looking error too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion_distributed::grpc::{create_worker_client, BoxCloneSyncChannel};
use datafusion_distributed::{
    ChannelResolver, CoordinatorToWorkerMsg, ExecuteTaskRequest, GetWorkerInfoRequest,
    GetWorkerInfoResponse, SetPlanRequest, WorkerChannel, WorkerToCoordinatorMsg,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use http::HeaderMap;
use meshql_engine::WorkersUsed;
use tonic::transport::{Channel, Endpoint};
use url::Url;

use crate::auth::ClusterSecret;
use crate::telemetry::{WORKER_BYTES, WORKER_ERRORS, WORKER_FRAGMENTS, WORKER_LABEL, WORKER_ROWS};

/// How connections to workers are made.
#[derive(Debug, Clone)]
pub(crate) struct LinkSettings {
    pub(crate) secret: ClusterSecret,
    pub(crate) connect_timeout: Duration,
    pub(crate) keepalive_interval: Duration,
}

/// Shortest wait for an HTTP/2 keep-alive answer: a worker busy with CPU-heavy work answers
/// pings late, and a connection closed on a busy worker would fail its queries.
const MIN_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

impl LinkSettings {
    /// How long a keep-alive ping may go unanswered before the connection is given up.
    pub(crate) fn keepalive_timeout(&self) -> Duration {
        self.connect_timeout.max(MIN_KEEPALIVE_TIMEOUT)
    }
}

/// The [`ChannelResolver`] of the coordinator and of every worker.
#[derive(Clone)]
pub(crate) struct MeshChannels {
    settings: LinkSettings,
    channels: Arc<Mutex<HashMap<Url, Cached>>>,
}

/// A cached channel and whether it failed (see the module documentation).
struct Cached {
    channel: BoxCloneSyncChannel,
    broken: Arc<AtomicBool>,
}

impl MeshChannels {
    pub(crate) fn new(settings: LinkSettings) -> Self {
        Self {
            settings,
            channels: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The (cached, lazily connected) channel to `url`, adding the secret to every request.
    fn channel(&self, url: &Url) -> Result<BoxCloneSyncChannel> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(url) {
            if !c.broken.load(Ordering::Acquire) {
                return Ok(c.channel.clone());
            }
        }
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| {
                DataFusionError::Configuration(format!("invalid cluster worker URL {url}: {e}"))
            })?
            .connect_timeout(self.settings.connect_timeout)
            .http2_keep_alive_interval(self.settings.keepalive_interval)
            .keep_alive_timeout(self.settings.keepalive_timeout())
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        let channel: Channel = endpoint.connect_lazy();
        let header = self.settings.secret.header();
        let authed = tower::ServiceBuilder::new()
            .map_request(move |mut request: http::Request<tonic::body::Body>| {
                request
                    .headers_mut()
                    .insert(http::header::AUTHORIZATION, header.clone());
                request
            })
            .service(channel);
        let broken = Arc::new(AtomicBool::new(false));
        let boxed = BoxCloneSyncChannel::new(Watched {
            inner: authed,
            broken: Arc::clone(&broken),
        });
        channels.insert(
            url.clone(),
            Cached {
                channel: boxed.clone(),
                broken,
            },
        );
        Ok(boxed)
    }

    /// A client for `url` that reports through this resolver.
    pub(crate) fn client(&self, url: &Url) -> Result<MeshChannel> {
        Ok(MeshChannel {
            label: worker_label(url),
            inner: create_worker_client(self.channel(url)?),
        })
    }
}

#[async_trait]
impl ChannelResolver for MeshChannels {
    async fn get_worker_client_for_url(&self, url: &Url) -> Result<Box<dyn WorkerChannel>> {
        Ok(Box::new(self.client(url)?))
    }
}

/// A channel that marks itself broken when a request fails at the transport level or is
/// dropped before its response arrives (see the module documentation).
#[derive(Clone)]
struct Watched<S> {
    inner: S,
    broken: Arc<AtomicBool>,
}

/// Marks the channel broken when dropped armed: the request did not end with a response.
struct Unanswered(Option<Arc<AtomicBool>>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(broken) = self.0.take() {
            broken.store(true, Ordering::Release);
        }
    }
}

impl<S, B> tower::Service<http::Request<B>> for Watched<S>
where
    S: tower::Service<http::Request<B>, Error = tonic::transport::Error>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, std::result::Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        let ready = self.inner.poll_ready(cx);
        if let Poll::Ready(Err(_)) = &ready {
            self.broken.store(true, Ordering::Release);
        }
        ready
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let response = self.inner.call(request);
        let mut guard = Unanswered(Some(Arc::clone(&self.broken)));
        Box::pin(async move {
            let r = response.await;
            if r.is_ok() {
                guard.0.take();
            }
            r
        })
    }
}

/// How a worker is named in errors, audit records and metric labels.
pub(crate) fn worker_label(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

/// A client to one worker (see the module documentation).
pub(crate) struct MeshChannel {
    label: String,
    inner: Box<dyn WorkerChannel>,
}

impl MeshChannel {
    /// Counts a failed call to this worker; the error itself passes through unchanged.
    fn failed(label: &str, e: DataFusionError) -> DataFusionError {
        metrics::counter!(WORKER_ERRORS, WORKER_LABEL => label.to_string()).increment(1);
        e
    }

    pub(crate) async fn ping(&mut self) -> std::result::Result<(), String> {
        match self.inner.get_worker_info(GetWorkerInfoRequest {}).await {
            Ok(_) => Ok(()),
            Err(e) => Err(link_failure(&e).unwrap_or_else(|| e.to_string())),
        }
    }
}

/// The message of a transport-level failure (the raw gRPC status of the link, as opposed to an
/// error the worker encoded and sent back), if `e` is one. Used to say why a health check failed.
pub(crate) fn link_failure(e: &DataFusionError) -> Option<String> {
    match e {
        DataFusionError::External(inner) => {
            let status = inner.downcast_ref::<tonic::Status>().or_else(|| {
                match inner.downcast_ref::<arrow_flight::error::FlightError>() {
                    Some(arrow_flight::error::FlightError::Tonic(status)) => Some(status.as_ref()),
                    _ => None,
                }
            })?;
            is_link_failure(status).then(|| status_message(status))
        }
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            link_failure(inner)
        }
        DataFusionError::Shared(inner) => link_failure(inner),
        DataFusionError::Collection(errors) => errors.iter().find_map(link_failure),
        _ => None,
    }
}

/// Statuses a worker that is up and talking would not send on its own: the connection failed
/// or broke (tonic reports refused connections as `Unavailable` and broken HTTP/2 streams as
/// `Unknown`/`Internal`), timed out, or the worker refused the secret. Errors a worker reports
/// arrive as encoded DataFusion errors instead and are never classified here.
fn is_link_failure(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Unauthenticated
    )
}

fn status_message(status: &tonic::Status) -> String {
    match status.code() {
        tonic::Code::Unauthenticated => {
            "the worker refused the cluster secret (check secret_env on both sides)".to_string()
        }
        _ => {
            let m = status.message();
            if m.is_empty() {
                format!("{:?}", status.code())
            } else {
                m.to_string()
            }
        }
    }
}

#[async_trait]
impl WorkerChannel for MeshChannel {
    async fn coordinator_channel(
        &mut self,
        headers: HeaderMap,
        set_plan_request: SetPlanRequest,
        c2w_stream: BoxStream<'static, CoordinatorToWorkerMsg>,
        metrics: ExecutionPlanMetricsSet,
        task_ctx: &Arc<TaskContext>,
    ) -> Result<BoxStream<'static, Result<WorkerToCoordinatorMsg>>> {
        if let Some(used) = task_ctx.session_config().get_extension::<WorkersUsed>() {
            used.record(&self.label);
        }
        metrics::counter!(WORKER_FRAGMENTS, WORKER_LABEL => self.label.clone()).increment(1);
        let label = self.label.clone();
        match self
            .inner
            .coordinator_channel(headers, set_plan_request, c2w_stream, metrics, task_ctx)
            .await
        {
            Ok(stream) => Ok(stream.map_err(move |e| Self::failed(&label, e)).boxed()),
            Err(e) => Err(Self::failed(&label, e)),
        }
    }

    async fn execute_task(
        &mut self,
        headers: HeaderMap,
        request: ExecuteTaskRequest,
        metrics: ExecutionPlanMetricsSet,
        task_ctx: &Arc<TaskContext>,
    ) -> Result<Vec<BoxStream<'static, Result<RecordBatch>>>> {
        let streams = match self
            .inner
            .execute_task(headers, request, metrics, task_ctx)
            .await
        {
            Ok(s) => s,
            Err(e) => return Err(Self::failed(&self.label, e)),
        };
        let rows = metrics::counter!(WORKER_ROWS, WORKER_LABEL => self.label.clone());
        let bytes = metrics::counter!(WORKER_BYTES, WORKER_LABEL => self.label.clone());
        Ok(streams
            .into_iter()
            .map(|s| {
                let label = self.label.clone();
                let (rows, bytes) = (rows.clone(), bytes.clone());
                s.map(move |r| match r {
                    Ok(batch) => {
                        rows.increment(batch.num_rows() as u64);
                        bytes.increment(batch.get_array_memory_size() as u64);
                        Ok(batch)
                    }
                    Err(e) => Err(Self::failed(&label, e)),
                })
                .boxed()
            })
            .collect())
    }

    async fn get_worker_info(
        &mut self,
        request: GetWorkerInfoRequest,
    ) -> Result<GetWorkerInfoResponse> {
        self.inner.get_worker_info(request).await
    }
}

impl std::fmt::Debug for MeshChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshChannels").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels() -> MeshChannels {
        channels_with(Duration::from_secs(2))
    }

    fn channels_with(connect_timeout: Duration) -> MeshChannels {
        MeshChannels::new(LinkSettings {
            secret: ClusterSecret::new("a-test-secret-of-enough-length").unwrap(),
            connect_timeout,
            keepalive_interval: Duration::from_secs(10),
        })
    }

    fn url(addr: std::net::SocketAddr) -> Url {
        Url::parse(&format!("http://{addr}")).unwrap()
    }

    /// Whether the channel cached for `url` is marked broken (`None`: none is cached).
    fn broken(channels: &MeshChannels, url: &Url) -> Option<bool> {
        let map = channels.channels.lock().unwrap();
        map.get(url).map(|c| c.broken.load(Ordering::Acquire))
    }

    /// Serves a worker (datafusion-distributed's service, no secret check) on `listener`.
    fn serve_worker(listener: tokio::net::TcpListener) {
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(datafusion_distributed::Worker::default().into_worker_server())
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
    }

    /// A worker on 127.0.0.1, port 0.
    async fn worker() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        serve_worker(listener);
        addr
    }

    #[tokio::test]
    async fn a_channel_that_failed_is_replaced_and_one_that_answers_is_kept() {
        let channels = channels();

        // Nothing listens: the request fails at the transport level, the channel is broken.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let nowhere = url(closed.local_addr().unwrap());
        drop(closed);
        assert!(channels.client(&nowhere).unwrap().ping().await.is_err());
        assert_eq!(broken(&channels, &nowhere), Some(true));
        // The next client gets a new channel (not the one holding the failure).
        let _ = channels.client(&nowhere).unwrap();
        assert_eq!(broken(&channels, &nowhere), Some(false));

        // A request given up before its answer (as a failing query cancels its others) breaks
        // the channel too: here the peer accepts and never speaks.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let hole = url(silent.local_addr().unwrap());
        let mut client = channels.client(&hole).unwrap();
        let gave_up = tokio::time::timeout(Duration::from_millis(200), client.ping()).await;
        assert!(gave_up.is_err(), "the silent peer answered: {gave_up:?}");
        assert_eq!(broken(&channels, &hole), Some(true));

        // A worker that answers keeps its channel, across requests.
        let up = url(worker().await);
        for _ in 0..3 {
            channels.client(&up).unwrap().ping().await.unwrap();
        }
        assert_eq!(broken(&channels, &up), Some(false));
        drop(silent);
    }

    #[tokio::test]
    async fn a_worker_back_at_its_address_answers_the_next_request() {
        // The worker's address does not answer (a listener whose queue is full drops new
        // connections), and a request is given up while the channel is connecting, as a query
        // failing on a dead worker cancels its other requests. tonic keeps the failure of that
        // connection attempt and would hand it to the next request on the channel, however
        // much later: the first query after the worker is back would fail.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        let full = socket.listen(0).unwrap();
        let mut queued = Vec::new();
        for _ in 0..4 {
            let s = tokio::time::timeout(
                Duration::from_millis(100),
                tokio::net::TcpStream::connect(addr),
            )
            .await;
            if let Ok(Ok(s)) = s {
                queued.push(s);
            }
        }
        let channels = channels_with(Duration::from_millis(300));
        let target = url(addr);
        let mut client = channels.client(&target).unwrap();
        let given_up = tokio::time::timeout(Duration::from_millis(100), client.ping()).await;
        assert!(
            given_up.is_err(),
            "the full listener answered: {given_up:?}"
        );
        // The abandoned connection attempt times out.
        tokio::time::sleep(Duration::from_millis(500)).await;

        // The worker comes back at the same address.
        drop((full, queued));
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).unwrap();
        serve_worker(socket.listen(128).unwrap());
        channels.client(&target).unwrap().ping().await.unwrap();
    }

    fn external(status: tonic::Status) -> DataFusionError {
        DataFusionError::External(Box::new(status))
    }

    #[test]
    fn only_broken_links_count_as_an_unavailable_worker() {
        let refused = external(tonic::Status::unavailable("tcp connect error"));
        assert_eq!(link_failure(&refused).as_deref(), Some("tcp connect error"));
        let wrapped = DataFusionError::Context(
            "reading stage 2".into(),
            Box::new(DataFusionError::Shared(Arc::new(external(
                tonic::Status::unknown("h2 protocol error"),
            )))),
        );
        assert!(link_failure(&wrapped).is_some());
        let refused_secret = external(tonic::Status::unauthenticated("no"));
        assert!(link_failure(&refused_secret)
            .unwrap()
            .contains("refused the cluster secret"));
        // Errors of the query itself, reported by a live worker, are not link failures.
        for e in [
            external(tonic::Status::invalid_argument("bad")),
            DataFusionError::Execution("division by zero".into()),
            DataFusionError::External(Box::new(std::io::Error::other("disk"))),
        ] {
            assert_eq!(link_failure(&e), None, "{e}");
        }
    }
}
