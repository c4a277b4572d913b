//! Running result streams, so that CancelFlightInfo can stop them, and so that a client that
//! goes away stops the work: every DoGet stream owns the engine's stream, and dropping it (tonic
//! drops the response stream when the client disconnects or cancels) drops the DataFusion
//! execution and its spawned tasks.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use arrow_flight::FlightData;
use bytes::Bytes;
use futures::{stream, Future, Stream};
use tokio::sync::oneshot;
use tonic::Status;

pub(crate) type DataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send>>;

#[derive(Debug)]
struct Entry {
    id: u64,
    owner: String,
    cancel: Option<oneshot::Sender<()>>,
}

/// The result streams being sent, by ticket.
#[derive(Debug, Default)]
pub(crate) struct RunningQueries {
    next: AtomicU64,
    map: Mutex<HashMap<Bytes, Vec<Entry>>>,
    /// Woken whenever a stream ends, so callers can wait for the server to go idle.
    ended: tokio::sync::Notify,
}

impl RunningQueries {
    /// Wraps `inner` so that it can be cancelled through its ticket and is forgotten when dropped.
    pub(crate) fn track(
        self: &Arc<Self>,
        ticket: Bytes,
        owner: &str,
        inner: DataStream,
    ) -> DataStream {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(ticket.clone())
            .or_default()
            .push(Entry {
                id,
                owner: owner.to_string(),
                cancel: Some(tx),
            });
        Box::pin(Cancellable {
            inner,
            cancelled: Some(rx),
            done: false,
            _guard: Guard {
                registry: Arc::clone(self),
                ticket,
                id,
            },
        })
    }

    /// Cancels `owner`'s streams of `ticket`; returns how many were running.
    pub(crate) fn cancel(&self, ticket: &[u8], owner: &str) -> usize {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entries) = map.get_mut(ticket) else {
            return 0;
        };
        let mut n = 0;
        for e in entries.iter_mut().filter(|e| e.owner == owner) {
            if let Some(tx) = e.cancel.take() {
                let _ = tx.send(());
                n += 1;
            }
        }
        n
    }

    /// Waits until no result stream is being sent.
    pub(crate) async fn idle(&self) {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            // Register before checking, so an end between the check and the wait is not missed.
            ended.as_mut().enable();
            if self.len() == 0 {
                return;
            }
            ended.await;
        }
    }

    /// How many result streams are being sent.
    pub(crate) fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(Vec::len)
            .sum()
    }
}

struct Guard {
    registry: Arc<RunningQueries>,
    ticket: Bytes,
    id: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut map = self.registry.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entries) = map.get_mut(&self.ticket) {
            entries.retain(|e| e.id != self.id);
            if entries.is_empty() {
                map.remove(&self.ticket);
            }
        }
        drop(map);
        self.registry.ended.notify_waiters();
    }
}

struct Cancellable {
    inner: DataStream,
    cancelled: Option<oneshot::Receiver<()>>,
    done: bool,
    _guard: Guard,
}

impl Stream for Cancellable {
    type Item = Result<FlightData, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(rx) = self.cancelled.as_mut() {
            match Pin::new(rx).poll(cx) {
                Poll::Ready(Ok(())) => {
                    self.done = true;
                    self.cancelled = None;
                    // Drop the engine's stream now: that stops the query's work.
                    self.inner = Box::pin(stream::empty());
                    return Poll::Ready(Some(Err(Status::cancelled(
                        "the query was cancelled by CancelFlightInfo",
                    ))));
                }
                Poll::Ready(Err(_)) => self.cancelled = None,
                Poll::Pending => {}
            }
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            other => other,
        }
    }
}
