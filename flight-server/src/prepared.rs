//! Prepared statements: the handle store, `?` placeholders, and parameter values from DoPut.
//!
//! The store keeps each principal's statements apart, with a bounded share per principal (its
//! least recently used statement is closed beyond it) and a server-wide limit that refuses new
//! statements rather than closing anyone else's.
//!
//! Parameter values are bound to the planned query as values (`PlannedQuery::bind`), never
//! spliced into SQL text. `?` placeholders (JDBC, flightsql-dbapi's `qmark` style) are numbered
//! `$1`, `$2`, ... by rewriting only the placeholder tokens, found with the SQL tokenizer so that
//! a `?` inside a string literal or comment is left alone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use arrow::array::{Array, RecordBatch};
use bytes::Bytes;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use tonic::Status;

/// Default of how many prepared statements one principal may keep; beyond it, its own least
/// recently used statement is closed.
pub(crate) const DEFAULT_MAX_PREPARED_PER_PRINCIPAL: usize = 1_000;
/// Default of how many prepared statements the server keeps in all; beyond it, creating one is
/// refused (never another principal's statement closed).
pub(crate) const DEFAULT_MAX_PREPARED_TOTAL: usize = 20_000;
/// Most parameter rows one DoPut may bind.
pub(crate) const MAX_PARAMETER_ROWS: usize = 10_000;

/// A prepared statement kept between calls. It belongs to the principal who created it.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    /// The owning principal's user name (JWT principals are namespaced, `jwt:<sub>`).
    pub(crate) owner: String,
    /// The Flight SQL session (bearer token) that created it, closed with it.
    pub(crate) session_key: Option<String>,
    /// The SQL with `?` placeholders numbered.
    pub(crate) sql: String,
    /// Default schema for unqualified names when the statement was prepared.
    pub(crate) default_schema: Option<String>,
    /// Why the statement cannot run as a query (DDL, DML...), if so.
    pub(crate) not_a_query: Option<String>,
    /// Bound parameter rows; the query runs once per row, results concatenated.
    pub(crate) params: Vec<Vec<ScalarValue>>,
    last_used: Instant,
}

impl Prepared {
    pub(crate) fn new(
        owner: String,
        session_key: Option<String>,
        sql: String,
        default_schema: Option<String>,
        not_a_query: Option<String>,
    ) -> Self {
        Self {
            owner,
            session_key,
            sql,
            default_schema,
            not_a_query,
            params: Vec::new(),
            last_used: Instant::now(),
        }
    }
}

/// Prepared statements by owner, then handle. Each principal has its own bounded share (least
/// recently used evicted within it), so no principal can close another's statements; a
/// handle is only ever looked up among its caller's own.
#[derive(Debug)]
pub(crate) struct PreparedStore {
    inner: Mutex<Owners>,
    per_principal: usize,
    total: usize,
}

#[derive(Debug, Default)]
struct Owners {
    by_owner: HashMap<String, HashMap<Bytes, Prepared>>,
    count: usize,
}

impl Default for PreparedStore {
    fn default() -> Self {
        Self::new(
            DEFAULT_MAX_PREPARED_PER_PRINCIPAL,
            DEFAULT_MAX_PREPARED_TOTAL,
        )
    }
}

fn not_found() -> Status {
    // Someone else's handle looks exactly like a missing one.
    Status::not_found("unknown or closed prepared statement handle")
}

impl PreparedStore {
    pub(crate) fn new(per_principal: usize, total: usize) -> Self {
        Self {
            inner: Mutex::default(),
            per_principal: per_principal.max(1),
            total: total.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Owners> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `prepared` under `handle`. At its owner's limit, the owner's least recently used
    /// statement is closed; at the server's limit, the new one is refused.
    pub(crate) fn insert(&self, handle: Bytes, prepared: Prepared) -> Result<(), Status> {
        let mut inner = self.lock();
        let Owners { by_owner, count } = &mut *inner;
        let owned = by_owner.entry(prepared.owner.clone()).or_default();
        if owned.len() >= self.per_principal {
            if let Some(oldest) = owned
                .iter()
                .min_by_key(|(_, p)| p.last_used)
                .map(|(h, _)| h.clone())
            {
                owned.remove(&oldest);
                *count -= 1;
            }
        } else if *count >= self.total {
            if owned.is_empty() {
                by_owner.remove(&prepared.owner);
            }
            return Err(Status::resource_exhausted(format!(
                "the server holds its limit of {} prepared statements; close unused ones \
                 (each principal may keep {})",
                self.total, self.per_principal
            )));
        }
        if owned.insert(handle, prepared).is_none() {
            *count += 1;
        }
        Ok(())
    }

    pub(crate) fn get(&self, handle: &Bytes, user: &str) -> Result<Prepared, Status> {
        let mut inner = self.lock();
        match inner.by_owner.get_mut(user).and_then(|o| o.get_mut(handle)) {
            Some(p) => {
                p.last_used = Instant::now();
                Ok(p.clone())
            }
            None => Err(not_found()),
        }
    }

    /// Replaces the bound parameters of `handle`.
    pub(crate) fn bind(
        &self,
        handle: &Bytes,
        user: &str,
        params: Vec<Vec<ScalarValue>>,
    ) -> Result<(), Status> {
        let mut inner = self.lock();
        match inner.by_owner.get_mut(user).and_then(|o| o.get_mut(handle)) {
            Some(p) => {
                p.params = params;
                p.last_used = Instant::now();
                Ok(())
            }
            None => Err(not_found()),
        }
    }

    /// Closes `handle` if it is `user`'s; closing is idempotent.
    pub(crate) fn close(&self, handle: &Bytes, user: &str) {
        self.remove_where(user, |h, _| h == handle);
    }

    /// Closes every statement of a session.
    pub(crate) fn close_session(&self, session_key: &str, user: &str) {
        self.remove_where(user, |_, p| p.session_key.as_deref() == Some(session_key));
    }

    fn remove_where(&self, user: &str, mut close: impl FnMut(&Bytes, &Prepared) -> bool) {
        let mut inner = self.lock();
        let Owners { by_owner, count } = &mut *inner;
        let Some(owned) = by_owner.get_mut(user) else {
            return;
        };
        let before = owned.len();
        owned.retain(|h, p| !close(h, p));
        *count -= before - owned.len();
        if owned.is_empty() {
            by_owner.remove(user);
        }
    }
}

/// Numbers `?` placeholders as `$1`, `$2`, ... (DataFusion reads every `?` as the same
/// parameter). SQL that does not tokenize is returned unchanged for the planner to report.
pub(crate) fn number_placeholders(sql: &str) -> String {
    if !sql.contains('?') {
        return sql.to_string();
    }
    let dialect = GenericDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize_with_location() else {
        return sql.to_string();
    };
    // Byte offset of each line start, to turn (line, column) into a byte index.
    let mut line_starts = vec![0usize];
    for (i, c) in sql.char_indices() {
        if c == '\n' {
            line_starts.push(i + 1);
        }
    }
    let offset = |line: u64, column: u64| -> Option<usize> {
        let start = *line_starts.get(usize::try_from(line).ok()?.checked_sub(1)?)?;
        let col = usize::try_from(column).ok()?.checked_sub(1)?;
        sql[start..].char_indices().nth(col).map(|(i, _)| start + i)
    };
    let mut out = String::with_capacity(sql.len() + 8);
    let mut copied = 0;
    let mut n = 0;
    for t in tokens {
        if !matches!(&t.token, Token::Placeholder(p) if p == "?") {
            continue;
        }
        let Some(at) = offset(t.span.start.line, t.span.start.column) else {
            return sql.to_string();
        };
        if at < copied || sql.as_bytes().get(at) != Some(&b'?') {
            return sql.to_string();
        }
        n += 1;
        out.push_str(&sql[copied..at]);
        out.push_str(&format!("${n}"));
        copied = at + 1;
    }
    out.push_str(&sql[copied..]);
    out
}

/// One row of parameter values. Dense/sparse unions (flightsql-dbapi sends every parameter as
/// a dense union of int64, double, utf8, binary and bool) are unwrapped to their value.
pub(crate) fn row_values(batch: &RecordBatch, row: usize) -> Result<Vec<ScalarValue>, Status> {
    batch
        .columns()
        .iter()
        .zip(batch.schema().fields())
        .map(|(col, field)| {
            let v = ScalarValue::try_from_array(col.as_ref() as &dyn Array, row).map_err(|e| {
                Status::invalid_argument(format!(
                    "cannot read parameter `{}` of row {row}: {e}",
                    field.name()
                ))
            })?;
            Ok(unwrap_union(v))
        })
        .collect()
}

fn unwrap_union(v: ScalarValue) -> ScalarValue {
    match v {
        ScalarValue::Union(Some((_, inner)), _, _) => unwrap_union(*inner),
        ScalarValue::Union(None, _, _) => ScalarValue::Null,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray, UnionArray};
    use arrow::buffer::ScalarBuffer;
    use arrow::datatypes::{DataType, Field, Schema, UnionFields};

    fn statement(owner: &str, session: Option<&str>) -> Prepared {
        Prepared::new(
            owner.into(),
            session.map(str::to_string),
            "SELECT 1".into(),
            None,
            None,
        )
    }

    #[test]
    fn each_principal_has_its_own_lru_share() {
        let store = PreparedStore::new(3, 100);
        let h = |i: usize| Bytes::from(format!("h{i}"));
        store
            .insert(Bytes::from("b"), statement("bob", None))
            .unwrap();
        for i in 0..3 {
            store.insert(h(i), statement("ann", None)).unwrap();
        }
        // Touch h0: h1 is now ann's least recently used.
        store.get(&h(0), "ann").unwrap();
        for i in 3..10 {
            store.insert(h(i), statement("ann", None)).unwrap();
            store.get(&h(0), "ann").unwrap();
        }
        assert!(store.get(&h(0), "ann").is_ok());
        assert!(store.get(&h(9), "ann").is_ok());
        assert_eq!(
            store.get(&h(1), "ann").unwrap_err().code(),
            tonic::Code::NotFound
        );
        assert!(store.get(&Bytes::from("b"), "bob").is_ok());
        // Handles are only found among the caller's own.
        assert_eq!(
            store.get(&h(0), "bob").unwrap_err().code(),
            tonic::Code::NotFound
        );
        store.close(&h(0), "bob");
        assert!(store.get(&h(0), "ann").is_ok());
    }

    #[test]
    fn the_server_limit_refuses_instead_of_evicting_others() {
        let store = PreparedStore::new(2, 3);
        store
            .insert(Bytes::from("a1"), statement("ann", Some("s")))
            .unwrap();
        store
            .insert(Bytes::from("a2"), statement("ann", Some("s")))
            .unwrap();
        store
            .insert(Bytes::from("b1"), statement("bob", None))
            .unwrap();
        let e = store
            .insert(Bytes::from("c1"), statement("cy", None))
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        // At its own limit, ann replaces her own statement.
        store
            .insert(Bytes::from("a3"), statement("ann", Some("s")))
            .unwrap();
        assert!(store.get(&Bytes::from("b1"), "bob").is_ok());
        // Closing a session frees its share.
        store.close_session("s", "ann");
        store
            .insert(Bytes::from("c1"), statement("cy", None))
            .unwrap();
        assert!(store.get(&Bytes::from("a3"), "ann").is_err());
    }

    #[test]
    fn numbers_question_marks_outside_literals() {
        assert_eq!(number_placeholders("SELECT 1"), "SELECT 1");
        assert_eq!(
            number_placeholders("SELECT * FROM t WHERE a = ? AND b = ?"),
            "SELECT * FROM t WHERE a = $1 AND b = $2"
        );
        assert_eq!(
            number_placeholders("SELECT '?', \"q?\" FROM t -- ?\nWHERE a = ?"),
            "SELECT '?', \"q?\" FROM t -- ?\nWHERE a = $1"
        );
        assert_eq!(
            number_placeholders("SELECT 'é', ?\n , ?"),
            "SELECT 'é', $1\n , $2"
        );
        assert_eq!(number_placeholders("SELECT $1"), "SELECT $1");
    }

    #[test]
    fn unwraps_dense_unions() {
        let fields = UnionFields::try_new(
            vec![0, 1, 2],
            vec![
                Field::new("0", DataType::Int64, true),
                Field::new("1", DataType::Float64, true),
                Field::new("2", DataType::Utf8, true),
            ],
        )
        .unwrap();
        let children: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![7])),
            Arc::new(Float64Array::from(Vec::<f64>::new())),
            Arc::new(StringArray::from(vec!["x"])),
        ];
        let union = UnionArray::try_new(
            fields.clone(),
            ScalarBuffer::from(vec![0i8, 2]),
            Some(ScalarBuffer::from(vec![0i32, 0])),
            children,
        )
        .unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("param_0", union.data_type().clone(), true),
            Field::new("param_1", DataType::Int32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(union), Arc::new(Int32Array::from(vec![1, 2]))],
        )
        .unwrap();
        assert_eq!(
            row_values(&batch, 0).unwrap(),
            vec![ScalarValue::Int64(Some(7)), ScalarValue::Int32(Some(1))]
        );
        assert_eq!(
            row_values(&batch, 1).unwrap(),
            vec![
                ScalarValue::Utf8(Some("x".into())),
                ScalarValue::Int32(Some(2))
            ]
        );
    }
}
