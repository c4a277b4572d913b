//! Admission control: how many queries run at once, overall (`max_concurrent_queries`) and per
//! user (`max_queries_per_user`). A query over either limit waits in a queue for at most
//! `queue_timeout`, then fails alone with `RESOURCE_EXHAUSTED` naming the limit it waited on.
//!
//! The [`Permit`] a query receives is held by its result stream until the stream ends or is
//! dropped, so a slot is free again as soon as a client finishes, cancels or goes away. The
//! engine applies this to every front end (Flight SQL, HTTP, the CLI).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{EngineError, Result};

/// Counts for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdmissionStats {
    /// Queries holding a permit.
    pub running: usize,
    /// Queries waiting for one.
    pub queued: usize,
    /// Queries refused because they waited longer than `queue_timeout`.
    pub timed_out: usize,
}

#[derive(Debug)]
pub(crate) struct Admission {
    global: Arc<Semaphore>,
    max_concurrent: usize,
    per_user: Mutex<HashMap<String, Arc<Semaphore>>>,
    max_per_user: usize,
    queue_timeout: Duration,
    running: Arc<AtomicUsize>,
    queued: AtomicUsize,
    timed_out: AtomicUsize,
}

/// A query's right to run; released when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    _user: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
    running: Arc<AtomicUsize>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    pub(crate) fn new(max_concurrent: usize, max_per_user: usize, queue_timeout: Duration) -> Self {
        Self {
            global: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            per_user: Mutex::new(HashMap::new()),
            max_per_user,
            queue_timeout,
            running: Arc::new(AtomicUsize::new(0)),
            queued: AtomicUsize::new(0),
            timed_out: AtomicUsize::new(0),
        }
    }

    pub(crate) fn stats(&self) -> AdmissionStats {
        AdmissionStats {
            running: self.running.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
        }
    }

    /// Waits (at most `queue_timeout`) for a slot of `user` and a slot overall.
    pub(crate) async fn admit(&self, user: &str) -> Result<Permit> {
        let user_slots = {
            let mut map = self.per_user.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(
                map.entry(user.to_string())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.max_per_user))),
            )
        };
        let deadline = tokio::time::Instant::now() + self.queue_timeout;
        self.queued.fetch_add(1, Ordering::Relaxed);
        let admitted: Result<(OwnedSemaphorePermit, OwnedSemaphorePermit)> = async {
            let user_permit = tokio::time::timeout_at(deadline, user_slots.acquire_owned())
                .await
                .map_err(|_| {
                    self.refuse(format!(
                        "user `{user}` already runs {} queries (max_queries_per_user); this one \
                         waited {} (queue_timeout) for one of them to finish",
                        self.max_per_user,
                        humantime::format_duration(self.queue_timeout)
                    ))
                })?
                .map_err(|_| EngineError::Internal("admission queue closed".into()))?;
            let global_permit =
                tokio::time::timeout_at(deadline, Arc::clone(&self.global).acquire_owned())
                    .await
                    .map_err(|_| {
                        self.refuse(format!(
                            "the server already runs {} queries (max_concurrent_queries); this \
                             one waited {} (queue_timeout) for a slot",
                            self.max_concurrent,
                            humantime::format_duration(self.queue_timeout)
                        ))
                    })?
                    .map_err(|_| EngineError::Internal("admission queue closed".into()))?;
            Ok((user_permit, global_permit))
        }
        .await;
        self.queued.fetch_sub(1, Ordering::Relaxed);
        let (user_permit, global_permit) = admitted?;
        self.running.fetch_add(1, Ordering::Relaxed);
        Ok(Permit {
            _user: user_permit,
            _global: global_permit,
            running: Arc::clone(&self.running),
        })
    }

    fn refuse(&self, message: String) -> EngineError {
        self.timed_out.fetch_add(1, Ordering::Relaxed);
        EngineError::ResourcesExhausted {
            message,
            source: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queues_then_refuses_naming_the_limit() {
        let a = Admission::new(2, 1, Duration::from_millis(50));
        let p1 = a.admit("ann").await.unwrap();
        // Ann's second query waits for her first, then gives up naming the per-user limit.
        let err = a.admit("ann").await.unwrap_err();
        assert!(
            matches!(err, EngineError::ResourcesExhausted { .. })
                && err.to_string().contains("max_queries_per_user")
                && err.to_string().contains("queue_timeout"),
            "{err}"
        );
        let p2 = a.admit("bob").await.unwrap();
        assert_eq!(a.stats().running, 2);
        let err = a.admit("cid").await.unwrap_err();
        assert!(err.to_string().contains("max_concurrent_queries"), "{err}");
        assert_eq!(a.stats().timed_out, 2);
        // A queued query gets the slot as soon as one is released.
        let waiter = {
            let a = &a;
            async move { a.admit("cid").await }
        };
        let (admitted, ()) = tokio::join!(waiter, async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(p1);
        });
        admitted.unwrap();
        drop(p2);
    }
}
