//! Planned tickets: the plan GetFlightInfo made for a statement, kept for the DoGet that
//! follows, so that a query is planned once, not twice.
//!
//! A Flight SQL client asks GetFlightInfo for a statement (meshql plans it to answer the
//! schema), then DoGet with the ticket it got back. The session and plan GetFlightInfo made are
//! kept here under the ticket's unique id, bound to the principal that asked: DoGet takes them
//! out (once) when the same principal presents the ticket, and plans again otherwise (another
//! principal, a ticket presented twice, an entry expired or evicted). Entries are few
//! ([`MAX_ENTRIES`]) and short-lived ([`TTL`]); a ticket is still only the SQL text, so it stays
//! valid after its entry is gone.
//!
//! Prepared statements use a second store of the same kind, keyed by their handle: the plan
//! made when the statement is created (or its parameters bound) is taken by the GetFlightInfo
//! that follows, and the plan GetFlightInfo used is kept for the DoGet after it. ADBC and JDBC
//! run every query as create, GetFlightInfo, DoGet: planned once instead of three times. Binding
//! new parameters or closing the statement drops what was kept for it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use datafusion::scalar::ScalarValue;
use meshql_catalog::Principal;
use meshql_engine::{PlannedQuery, QuerySession};

/// Plans kept at most (the least recently made go first).
pub(crate) const MAX_ENTRIES: u64 = 1024;
/// How long a plan waits for its DoGet.
pub(crate) const TTL: Duration = Duration::from_secs(60);

/// A statement's session and plan, kept between GetFlightInfo and DoGet.
pub(crate) type StatementPlan = (QuerySession, PlannedQuery);
/// A prepared statement's session, result schema and plans (one per bound parameter row).
pub(crate) struct PreparedPlan {
    pub(crate) session: QuerySession,
    pub(crate) schema: SchemaRef,
    pub(crate) plans: Vec<PlannedQuery>,
    /// The parameter values the plans were made with: a kept plan runs only while the
    /// statement's bound values are still these (a rebinding racing an execution never runs
    /// the other values' plan).
    pub(crate) params: Vec<Vec<ScalarValue>>,
}

/// One kept value, taken by the first request that asks for it.
type Slot<T> = Arc<Mutex<Option<T>>>;

/// The store; one per service and kind.
pub(crate) struct PlannedTickets<T = StatementPlan> {
    entries: moka::sync::Cache<String, (Principal, Slot<T>)>,
}

impl<T: Send + Sync + 'static> Default for PlannedTickets<T> {
    fn default() -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .time_to_live(TTL)
                .build(),
        }
    }
}

impl<T> std::fmt::Debug for PlannedTickets<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlannedTickets")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl<T: Send + Sync + 'static> PlannedTickets<T> {
    /// Keeps `value` (planned for `principal`) under `id`, replacing what was kept there.
    pub(crate) fn keep(&self, id: &str, principal: Principal, value: T) {
        self.entries.insert(
            id.to_string(),
            (principal, Arc::new(Mutex::new(Some(value)))),
        );
    }

    /// What was kept under `id`, when `principal` is the one it was planned for; each value is
    /// handed out once.
    pub(crate) fn take(&self, id: &str, principal: &Principal) -> Option<T> {
        let (owner, slot) = self.entries.get(id)?;
        if &owner != principal {
            return None;
        }
        self.entries.invalidate(id);
        let taken = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        taken
    }

    /// Drops what was kept under `id` (a prepared statement rebound or closed).
    pub(crate) fn forget(&self, id: &str) {
        self.entries.invalidate(id);
    }
}
