//! Where queries are planned and run: a tokio runtime owned by the engine, whose threads have
//! large stacks.
//!
//! Planning and executing a query recurse over its expression trees (DataFusion's `Clone`,
//! `PartialEq`, `Drop` and physical evaluation are recursive); on the 2 MiB stack of an ordinary
//! tokio worker a few thousand nested operators overflow it and abort the whole process. Here
//! every query runs on [`STACK_SIZE`] stacks, and `max_expr_depth` (see [`crate::limits`])
//! keeps statements far below what those stacks hold. DataFusion spawns its own tasks on the
//! runtime that polls it, so the operators of a query run here too, whichever runtime the
//! caller uses (the Flight server's, a test's, the CLI's).
//!
//! A panic while planning or executing fails that query alone with an internal error.
//! Dropping the caller's future or stream aborts the work.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use arrow::array::RecordBatch;
use futures::{Stream, StreamExt};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};

use crate::error::{EngineError, Result};

/// Stack size of the threads that plan and run queries.
pub(crate) const STACK_SIZE: usize = 256 * 1024 * 1024;

/// Batches buffered between a running query and its consumer.
const CHANNEL_BATCHES: usize = 2;

/// The engine's query runtime.
#[derive(Debug)]
pub(crate) struct QueryRuntime {
    runtime: Option<Runtime>,
}

impl QueryRuntime {
    pub(crate) fn try_new(threads: usize) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(2))
            .max_blocking_threads(64)
            .thread_name("meshql-query")
            .thread_stack_size(STACK_SIZE)
            .enable_all()
            .build()
            .map_err(|e| EngineError::Bug {
                context: "cannot start the query runtime".to_string(),
                source: Box::new(e),
            })?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    fn handle(&self) -> Result<&Handle> {
        self.runtime
            .as_ref()
            .map(Runtime::handle)
            .ok_or_else(|| EngineError::Internal("the query runtime has stopped".into()))
    }

    /// Runs `work` on the query runtime and waits for it. A panic becomes an internal error;
    /// dropping the returned future aborts `work`.
    pub(crate) async fn run<T, F>(&self, what: &'static str, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let task = AbortOnDrop(Some(self.handle()?.spawn(work)));
        task.await.map_err(|e| from_join(what, e))?
    }

    /// Drives `stream` on the query runtime and hands its items to the returned stream, which
    /// ends with an internal error if the query panics, and with `on_timeout()` (after the work
    /// is stopped) if it is still running at `deadline`. Dropping the returned stream stops the
    /// query.
    pub(crate) fn forward<S>(
        &self,
        stream: S,
        deadline: tokio::time::Instant,
        on_timeout: impl FnOnce() -> EngineError + Send + 'static,
    ) -> Result<ForwardedStream>
    where
        S: Stream<Item = Result<RecordBatch>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let task = self.handle()?.spawn(async move {
            let mut stream = Box::pin(stream);
            let pump = async {
                while let Some(item) = stream.next().await {
                    let failed = item.is_err();
                    if tx.send(item).await.is_err() || failed {
                        // The consumer went away, or the query failed: stop the work.
                        return;
                    }
                }
            };
            if tokio::time::timeout_at(deadline, pump).await.is_err() {
                // Stop the work first, then say why.
                drop(stream);
                let _ = tx.send(Err(on_timeout())).await;
            }
        });
        Ok(ForwardedStream {
            rx,
            task: AbortOnDrop(Some(task)),
            done: false,
        })
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        // The engine may be dropped inside another runtime (tests, the server's shutdown):
        // never block there.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn from_join(what: &'static str, e: JoinError) -> EngineError {
    if e.is_cancelled() {
        return EngineError::Cancelled;
    }
    let message = match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string()),
        Err(e) => e.to_string(),
    };
    tracing::error!(what, panic = %message, "a query panicked; it fails alone");
    EngineError::Bug {
        context: format!("{what} failed unexpectedly (a bug in meshql: {message})"),
        source: message.into(),
    }
}

/// A task handle that aborts the task when dropped.
struct AbortOnDrop<T>(Option<JoinHandle<T>>);

impl<T> Future for AbortOnDrop<T> {
    type Output = std::result::Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.0.as_mut() {
            Some(handle) => Pin::new(handle).poll(cx),
            None => Poll::Pending,
        }
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// The consumer's side of a query running on the query runtime.
pub(crate) struct ForwardedStream {
    rx: mpsc::Receiver<Result<RecordBatch>>,
    task: AbortOnDrop<()>,
    done: bool,
}

impl Stream for ForwardedStream {
    type Item = Result<RecordBatch>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
            Poll::Pending => Poll::Pending,
            // Every item sent has been received; how did the task end?
            Poll::Ready(None) => match Pin::new(&mut this.task).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(result) => {
                    this.done = true;
                    match result {
                        Ok(()) => Poll::Ready(None),
                        Err(e) => Poll::Ready(Some(Err(from_join("query execution", e)))),
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_panic_while_planning_fails_that_work_alone() {
        let rt = QueryRuntime::try_new(2).unwrap();
        let err = rt
            .run("planning", async {
                if std::hint::black_box(true) {
                    panic!("boom in the planner");
                }
                Ok(1)
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, EngineError::Bug { context, .. } if context.contains("boom in the planner")),
            "{err:?}"
        );
        // The runtime still runs work.
        assert_eq!(rt.run("planning", async { Ok(2) }).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_panic_while_executing_ends_the_stream_with_an_internal_error() {
        let rt = QueryRuntime::try_new(2).unwrap();
        let schema = Arc::new(arrow::datatypes::Schema::empty());
        let batch = RecordBatch::new_empty(schema);
        let mut first = true;
        let stream = futures::stream::poll_fn(move |_| {
            if std::mem::take(&mut first) {
                return Poll::Ready(Some(Ok(batch.clone())));
            }
            panic!("boom in an operator");
        });
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut forwarded = rt
            .forward(stream, deadline, || EngineError::Cancelled)
            .unwrap();
        assert!(forwarded.next().await.unwrap().is_ok());
        let err = forwarded.next().await.unwrap().unwrap_err();
        assert!(matches!(err, EngineError::Bug { .. }), "{err:?}");
        assert!(forwarded.next().await.is_none());
    }

    #[tokio::test]
    async fn a_stream_past_its_deadline_ends_with_the_timeout_error() {
        let rt = QueryRuntime::try_new(2).unwrap();
        let stream = futures::stream::pending::<Result<RecordBatch>>();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(50);
        let mut forwarded = rt
            .forward(stream, deadline, || EngineError::Cancelled)
            .unwrap();
        assert!(matches!(
            forwarded.next().await,
            Some(Err(EngineError::Cancelled))
        ));
    }

    #[test]
    fn deep_recursion_fits_on_query_threads() {
        // What the large stacks are for: a recursion that would overflow a 2 MiB thread.
        fn depth(n: usize) -> usize {
            let pad = std::hint::black_box([0u8; 1024]);
            if n == 0 {
                pad[0] as usize
            } else {
                depth(n - 1) + pad[n % 1024] as usize
            }
        }
        let rt = QueryRuntime::try_new(2).unwrap();
        let handle = rt.handle().unwrap().spawn(async { depth(20_000) });
        let out = rt.handle().unwrap().block_on(handle).unwrap();
        assert_eq!(out, 0);
    }
}
