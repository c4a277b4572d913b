//! Bounded memory: one DataFusion memory pool of `[engine] memory_limit` shared by all
//! queries, and per query a [`QueryPool`] that lets it take at most `query_memory_limit` of it.
//!
//! Operators that can spill (sorts, hash aggregations, some joins) write to `spill_dir` when
//! their reservation cannot grow; the others fail the query with `RESOURCE_EXHAUSTED` naming
//! the limit that was reached. Either way only that query is affected.
//!
//! A query's pool lives as long as anything of the query does (every reservation, operator and
//! task holds it), so [`LiveQueryPools`] counting the pools alive says when every query that
//! ended has released all it reserved: a failed or cancelled query's tasks wind down after its
//! error has reached the caller.

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

use crate::limits::size;

/// How many query pools are alive (see the module header).
#[derive(Debug)]
pub(crate) struct LiveQueryPools(tokio::sync::watch::Sender<usize>);

impl Default for LiveQueryPools {
    fn default() -> Self {
        Self(tokio::sync::watch::Sender::new(0))
    }
}

impl LiveQueryPools {
    /// Resolves once no query pool is alive.
    pub(crate) async fn none_alive(&self) {
        // The sender lives in `self`, so the wait cannot fail for want of it.
        let _ = self.0.subscribe().wait_for(|alive| *alive == 0).await;
    }
}

/// One query's share of the shared pool. Within the share, spillable consumers (a sort per
/// partition, say) each get an equal part of what unspillable ones leave, as in DataFusion's
/// `FairSpillPool`, so that one partition spills before it starves the others.
#[derive(Debug)]
pub(crate) struct QueryPool {
    shared: Arc<dyn MemoryPool>,
    limit: usize,
    state: Mutex<State>,
    /// Counts this pool while it is alive.
    live: Arc<LiveQueryPools>,
}

#[derive(Debug, Default)]
struct State {
    spillable_consumers: usize,
    spillable: usize,
    unspillable: usize,
}

impl QueryPool {
    pub(crate) fn new(
        shared: Arc<dyn MemoryPool>,
        limit: usize,
        live: Arc<LiveQueryPools>,
    ) -> Self {
        live.0.send_modify(|alive| *alive += 1);
        Self {
            shared,
            limit,
            state: Mutex::new(State::default()),
            live,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for QueryPool {
    fn drop(&mut self) {
        self.live
            .0
            .send_modify(|alive| *alive = alive.saturating_sub(1));
    }
}

impl fmt::Display for QueryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "meshql query pool ({} of {} reserved) over {}",
            size(self.reserved() as u64),
            size(self.limit as u64),
            self.shared
        )
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "meshql_query"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        if consumer.can_spill() {
            self.state().spillable_consumers += 1;
        }
        self.shared.register(consumer)
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        if consumer.can_spill() {
            let mut state = self.state();
            state.spillable_consumers = state.spillable_consumers.saturating_sub(1);
        }
        self.shared.unregister(consumer)
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.shared.grow(reservation, additional);
        let mut state = self.state();
        if reservation.consumer().can_spill() {
            state.spillable += additional;
        } else {
            state.unspillable += additional;
        }
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.shared.shrink(reservation, shrink);
        let mut state = self.state();
        if reservation.consumer().can_spill() {
            state.spillable = state.spillable.saturating_sub(shrink);
        } else {
            state.unspillable = state.unspillable.saturating_sub(shrink);
        }
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let limit = self.limit;
        let spills = reservation.consumer().can_spill();
        {
            let mut state = self.state();
            let held = state.spillable + state.unspillable;
            let refused = if spills {
                // An equal part of what the unspillable consumers leave.
                let part =
                    limit.saturating_sub(state.unspillable) / state.spillable_consumers.max(1);
                reservation.size() + additional > part || held + additional > limit
            } else {
                held + additional > limit
            };
            if refused {
                return Err(DataFusionError::ResourcesExhausted(format!(
                    "the query reached its memory share of {} (query_memory_limit): {} asked \
                     for {} more while the query holds {}",
                    size(limit as u64),
                    reservation.consumer().name(),
                    size(additional as u64),
                    size(held as u64)
                )));
            }
            if spills {
                state.spillable += additional;
            } else {
                state.unspillable += additional;
            }
        }
        if let Err(e) = self.shared.try_grow(reservation, additional) {
            let mut state = self.state();
            if spills {
                state.spillable = state.spillable.saturating_sub(additional);
            } else {
                state.unspillable = state.unspillable.saturating_sub(additional);
            }
            drop(state);
            let limit = match self.shared.memory_limit() {
                MemoryLimit::Finite(n) => size(n as u64),
                MemoryLimit::Infinite | MemoryLimit::Unknown => "its size".to_string(),
            };
            let detail = match e {
                DataFusionError::ResourcesExhausted(m) => m,
                other => other.to_string(),
            };
            return Err(DataFusionError::ResourcesExhausted(format!(
                "the server's memory pool of {limit} (memory_limit), shared by all queries, is \
                 exhausted: {detail}"
            )));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        let state = self.state();
        state.spillable + state.unspillable
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::GreedyMemoryPool;

    #[test]
    fn spillable_consumers_share_the_query_share() {
        let shared: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(1000));
        let q: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(shared, 600, Arc::default()));
        let a = MemoryConsumer::new("sort[0]")
            .with_can_spill(true)
            .register(&q);
        let b = MemoryConsumer::new("sort[1]")
            .with_can_spill(true)
            .register(&q);
        a.try_grow(300).unwrap();
        // Half each: `a` must spill before it takes `b`'s part.
        assert!(a.try_grow(1).is_err());
        b.try_grow(300).unwrap();
        drop(b);
        a.try_grow(300).unwrap();
    }

    #[test]
    fn a_query_stops_at_its_share_and_the_pool_at_its_size() {
        let shared: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(1000));
        let live = Arc::new(LiveQueryPools::default());
        let q1: Arc<dyn MemoryPool> =
            Arc::new(QueryPool::new(Arc::clone(&shared), 600, Arc::clone(&live)));
        let q2: Arc<dyn MemoryPool> =
            Arc::new(QueryPool::new(Arc::clone(&shared), 600, Arc::clone(&live)));
        let r1 = MemoryConsumer::new("sort").register(&q1);
        r1.try_grow(500).unwrap();
        let err = r1.try_grow(200).unwrap_err().to_string();
        assert!(err.contains("query_memory_limit"), "{err}");
        assert_eq!(q1.reserved(), 500);
        let r2 = MemoryConsumer::new("agg").register(&q2);
        r2.try_grow(400).unwrap();
        let err = r2.try_grow(200).unwrap_err().to_string();
        assert!(err.contains("memory_limit"), "{err}");
        assert_eq!(q2.reserved(), 400);
        assert_eq!(shared.reserved(), 900);
        drop(r1);
        assert_eq!(q1.reserved(), 0);
        assert_eq!(shared.reserved(), 400);
        r2.try_grow(200).unwrap();
        // The pools are counted while they are alive.
        assert_eq!(*live.0.borrow(), 2);
        drop((q1, r2, q2));
        assert_eq!(*live.0.borrow(), 0);
    }
}
