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

use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshql_catalog::Principal;
use meshql_engine::{PlannedQuery, QuerySession};

/// Plans kept at most (the least recently made go first).
pub(crate) const MAX_ENTRIES: u64 = 1024;
/// How long a plan waits for its DoGet.
pub(crate) const TTL: Duration = Duration::from_secs(60);

/// One statement's session and plan, taken by the first DoGet of its ticket.
type Slot = Arc<Mutex<Option<(QuerySession, PlannedQuery)>>>;

/// The store; one per service.
pub(crate) struct PlannedTickets {
    entries: moka::sync::Cache<String, (Principal, Slot)>,
}

impl Default for PlannedTickets {
    fn default() -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .time_to_live(TTL)
                .build(),
        }
    }
}

impl std::fmt::Debug for PlannedTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlannedTickets")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl PlannedTickets {
    /// Keeps `planned` (made in `session` for `principal`) for the ticket `id`.
    pub(crate) fn keep(
        &self,
        id: &str,
        principal: Principal,
        session: QuerySession,
        planned: PlannedQuery,
    ) {
        self.entries.insert(
            id.to_string(),
            (principal, Arc::new(Mutex::new(Some((session, planned))))),
        );
    }

    /// The session and plan kept for ticket `id`, when `principal` is the one that planned it;
    /// each is handed out once.
    pub(crate) fn take(
        &self,
        id: &str,
        principal: &Principal,
    ) -> Option<(QuerySession, PlannedQuery)> {
        let (owner, slot) = self.entries.get(id)?;
        if &owner != principal {
            return None;
        }
        self.entries.invalidate(id);
        let taken = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        taken
    }
}
