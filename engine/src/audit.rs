//! The audit log: one record per query or refused attempt — who, what SQL (or its hash), which
//! products (and Delta versions) and columns were read, which policies applied, rows and bytes
//! returned, duration and outcome.
//!
//! Off the hot path: a query only builds its record and hands it to a background writer thread
//! through a bounded queue; the writer appends JSON lines to the configured file. The most
//! recent records are kept in a bounded in-memory ring that `meshql.audit` reads when (and
//! only when) it is queried.
//!
//! Failure behaviour (the server never stops auditing silently):
//! - a write error (disk full, permissions) is counted ([`AuditStats::write_errors`]) and logged
//!   at error level (the first, then every 100th); the record stays in the ring and the writer
//!   reopens the file before the next write;
//! - a removed or renamed file (log rotation) is noticed before each write and a new file is
//!   created at the configured path ([`AuditStats::reopened`]);
//! - when the writer cannot keep up and the queue is full (the disk has stalled), new records
//!   are counted as dropped ([`AuditStats::dropped`]) and logged at error level instead of
//!   blocking queries; they remain in the in-memory ring.
//!
//! Memory is bounded: the ring keeps at most [`KEEP_IN_MEMORY`] records and their SQL texts are
//! cut to [`SQL_IN_MEMORY`] bytes (the file has the full text); the queue holds at most
//! [`QUEUE_BYTES`] of pending lines.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use meshql_catalog::{AuditConfig, Principal};
use serde::Serialize;

use crate::product::ProductRead;

/// Records kept in memory for `meshql.audit`.
pub(crate) const KEEP_IN_MEMORY: usize = 10_000;
/// Bytes of SQL text kept in memory per record.
pub(crate) const SQL_IN_MEMORY: usize = 4096;
/// Records waiting for the writer, at most.
const QUEUE_RECORDS: usize = 4096;
/// Bytes of serialized records waiting for the writer, at most.
pub(crate) const QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// Group whose members see every principal's audit records.
pub const AUDIT_ADMIN_GROUP: &str = "admin";

/// One audit record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// RFC 3339, UTC.
    pub time: String,
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    pub sql_sha256: String,
    pub products: Vec<ProductRead>,
    pub rows: u64,
    pub bytes: u64,
    /// The cluster workers that ran part of the query (empty when it ran on this server alone).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<String>,
    pub duration_ms: u64,
    /// `ok`, `error` or `cancelled`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `hit` when the result cache answered, `miss` when a cacheable query ran; absent when
    /// the query could not be cached (or the cache is off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
}

/// Counters of the audit writer, for metrics and health checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Records written to the file.
    pub written: u64,
    /// Failed writes (each one record).
    pub write_errors: u64,
    /// Records not written because the queue was full.
    pub dropped: u64,
    /// Times the file was created again after it was removed or renamed.
    pub reopened: u64,
}

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    write_errors: AtomicU64,
    dropped: AtomicU64,
    reopened: AtomicU64,
    queued_bytes: AtomicUsize,
}

enum Message {
    Line(String),
    Flush(std::sync::mpsc::SyncSender<()>),
}

#[derive(Debug)]
pub(crate) struct AuditLog {
    hash_sql: bool,
    queue: Option<SyncSender<Message>>,
    counters: Arc<Counters>,
    recent: Mutex<VecDeque<Arc<AuditRecord>>>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("audit message")
    }
}

impl AuditLog {
    pub(crate) fn try_new(config: &AuditConfig) -> std::io::Result<Self> {
        let counters = Arc::new(Counters::default());
        let queue = match &config.file {
            Some(path) => {
                // Open once now, so that an unusable path fails the start.
                let file = open(path)?;
                let (tx, rx) = sync_channel(QUEUE_RECORDS);
                let writer = Writer {
                    path: path.clone(),
                    file: Some(file),
                    counters: Arc::clone(&counters),
                };
                std::thread::Builder::new()
                    .name("meshql-audit".into())
                    .spawn(move || writer.run(rx))?;
                Some(tx)
            }
            None => None,
        };
        Ok(Self {
            hash_sql: config.hash_sql,
            queue,
            counters,
            recent: Mutex::new(VecDeque::new()),
        })
    }

    pub(crate) fn hash_sql(&self) -> bool {
        self.hash_sql
    }

    pub(crate) fn stats(&self) -> AuditStats {
        AuditStats {
            written: self.counters.written.load(Ordering::Relaxed),
            write_errors: self.counters.write_errors.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            reopened: self.counters.reopened.load(Ordering::Relaxed),
        }
    }

    /// Waits until every record handed over so far is written (or failed).
    pub(crate) fn flush(&self) {
        if let Some(queue) = &self.queue {
            let (tx, rx) = sync_channel(1);
            if queue.send(Message::Flush(tx)).is_ok() {
                let _ = rx.recv();
            }
        }
    }

    /// Builds and stores a record.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &self,
        principal: &Principal,
        sql: &str,
        products: Vec<ProductRead>,
        workers: Vec<String>,
        rows: u64,
        bytes: u64,
        duration: std::time::Duration,
        outcome: &'static str,
        error: Option<String>,
        cache: Option<&'static str>,
    ) {
        self.record_sql_cut(
            principal, sql, None, products, workers, rows, bytes, duration, outcome, error, cache,
        )
    }

    /// Builds and stores a record whose SQL text is cut to `cut` bytes in the file too (the
    /// hash is of the whole text): used for statements refused for their size.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record_sql_cut(
        &self,
        principal: &Principal,
        sql: &str,
        cut: Option<usize>,
        products: Vec<ProductRead>,
        workers: Vec<String>,
        rows: u64,
        bytes: u64,
        duration: std::time::Duration,
        outcome: &'static str,
        error: Option<String>,
        cache: Option<&'static str>,
    ) {
        let text = match cut {
            Some(n) if sql.len() > n => {
                let mut n = n;
                while !sql.is_char_boundary(n) {
                    n -= 1;
                }
                format!("{} …(cut: {} bytes in all)", &sql[..n], sql.len())
            }
            _ => sql.to_string(),
        };
        let mut record = AuditRecord {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            user: principal.user.clone(),
            sql: (!self.hash_sql).then_some(text),
            sql_sha256: sha256_hex(sql),
            products,
            rows,
            bytes,
            workers,
            duration_ms: duration.as_millis() as u64,
            outcome,
            error,
            cache,
        };
        if let Some(queue) = &self.queue {
            match serde_json::to_string(&record) {
                Ok(line) => self.enqueue(queue, line),
                Err(e) => tracing::error!(error = %e, "cannot serialize an audit record"),
            }
        }
        // In memory, the SQL text is cut (the file has all of it).
        if let Some(sql) = &mut record.sql {
            if sql.len() > SQL_IN_MEMORY {
                let mut cut = SQL_IN_MEMORY;
                while !sql.is_char_boundary(cut) {
                    cut -= 1;
                }
                sql.truncate(cut);
                sql.push_str(" …(cut; see sql_sha256 and the audit file)");
            }
        }
        if let Some(e) = &mut record.error {
            if e.len() > SQL_IN_MEMORY {
                let mut cut = SQL_IN_MEMORY;
                while !e.is_char_boundary(cut) {
                    cut -= 1;
                }
                e.truncate(cut);
                e.push_str(" …(cut)");
            }
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= KEEP_IN_MEMORY {
            recent.pop_front();
        }
        recent.push_back(Arc::new(record));
    }

    fn enqueue(&self, queue: &SyncSender<Message>, line: String) {
        let len = line.len();
        let queued = self.counters.queued_bytes.fetch_add(len, Ordering::Relaxed);
        let refused = if queued + len > QUEUE_BYTES {
            true
        } else {
            match queue.try_send(Message::Line(line)) {
                Ok(()) => false,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => true,
            }
        };
        if refused {
            self.counters.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            let n = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_multiple_of(100) {
                tracing::error!(
                    dropped = n,
                    "the audit writer cannot keep up (is the disk stalled?): audit records are \
                     being dropped from the file; they remain in meshql.audit"
                );
            }
        }
    }

    /// Every record kept in memory, oldest first (usage per product), without copying them.
    pub(crate) fn all(&self) -> Vec<Arc<AuditRecord>> {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// The records `principal` may see (its own, or all for audit admins), oldest first,
    /// without copying them.
    pub(crate) fn visible_to(&self, principal: &Principal) -> Vec<Arc<AuditRecord>> {
        let all = principal.has_group(AUDIT_ADMIN_GROUP);
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|r| all || r.user == principal.user)
            .cloned()
            .collect()
    }
}

/// The cluster workers a session's queries ran on. Each query session carries one in its
/// DataFusion session config; distributed execution (the `meshql-cluster` crate) records every
/// worker it sends a plan fragment to, and the audit record lists them.
#[derive(Debug, Default)]
pub struct WorkersUsed(Mutex<Vec<String>>);

impl WorkersUsed {
    /// Notes that `worker` ran part of a query.
    pub fn record(&self, worker: &str) {
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !w.iter().any(|x| x == worker) {
            w.push(worker.to_string());
        }
    }

    /// The workers recorded so far, in first-use order.
    pub fn snapshot(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

struct Writer {
    path: PathBuf,
    file: Option<File>,
    counters: Arc<Counters>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Message>) {
        while let Ok(message) = rx.recv() {
            match message {
                Message::Line(line) => {
                    self.counters
                        .queued_bytes
                        .fetch_sub(line.len(), Ordering::Relaxed);
                    self.write(&line);
                }
                Message::Flush(done) => {
                    if let Some(f) = &mut self.file {
                        let _ = f.sync_data();
                    }
                    let _ = done.send(());
                }
            }
        }
    }

    fn write(&mut self, line: &str) {
        self.reopen_if_moved();
        let result = match &mut self.file {
            Some(f) => f.write_all(format!("{line}\n").as_bytes()),
            None => open(&self.path).and_then(|mut f| {
                let r = f.write_all(format!("{line}\n").as_bytes());
                self.file = Some(f);
                r
            }),
        };
        match result {
            Ok(()) => {
                self.counters.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                // Try a fresh file next time (the disk may have room again, the directory may
                // be back).
                self.file = None;
                metrics::counter!(crate::telemetry::AUDIT_WRITE_ERRORS).increment(1);
                let n = self.counters.write_errors.fetch_add(1, Ordering::Relaxed) + 1;
                if n == 1 || n.is_multiple_of(100) {
                    tracing::error!(
                        file = %self.path.display(),
                        error = %e,
                        write_errors = n,
                        "cannot write the audit file; the record is kept in meshql.audit"
                    );
                }
            }
        }
    }

    /// Notices a removed or renamed audit file and creates a new one at the configured path.
    fn reopen_if_moved(&mut self) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let Some(f) = &self.file else {
                return;
            };
            let same = match (f.metadata(), std::fs::metadata(&self.path)) {
                (Ok(open), Ok(on_disk)) => {
                    open.dev() == on_disk.dev() && open.ino() == on_disk.ino()
                }
                _ => false,
            };
            if !same {
                match open(&self.path) {
                    Ok(f) => {
                        self.file = Some(f);
                        self.counters.reopened.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            file = %self.path.display(),
                            "the audit file was removed or renamed; writing to a new one"
                        );
                    }
                    Err(_) => self.file = None,
                }
            }
        }
    }
}

pub(crate) fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(s.as_bytes()))
}

/// Lowercase hexadecimal of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(dir: &Path) -> (AuditLog, PathBuf) {
        let path = dir.join("audit/audit.jsonl");
        let log = AuditLog::try_new(&AuditConfig {
            file: Some(path.clone()),
            hash_sql: false,
        })
        .unwrap();
        (log, path)
    }

    fn record(log: &AuditLog, sql: &str) {
        log.record(
            &Principal::new("ann"),
            sql,
            Vec::new(),
            Vec::new(),
            0,
            0,
            std::time::Duration::ZERO,
            "ok",
            None,
            None,
        );
    }

    #[test]
    fn a_removed_file_is_created_again_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = log(dir.path());
        record(&log, "SELECT 1");
        log.flush();
        std::fs::remove_file(&path).unwrap();
        record(&log, "SELECT 2");
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("SELECT 2") && !text.contains("SELECT 1"),
            "{text}"
        );
        assert_eq!(log.stats().reopened, 1);
        assert_eq!(log.stats().written, 2);
        // Renamed away (rotation): the next record goes to a new file at the path.
        std::fs::rename(&path, dir.path().join("audit/old.jsonl")).unwrap();
        record(&log, "SELECT 3");
        log.flush();
        assert!(std::fs::read_to_string(&path).unwrap().contains("SELECT 3"));
        assert_eq!(log.stats().reopened, 2);
    }

    #[test]
    fn write_errors_are_counted_and_writing_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = log(dir.path());
        // The directory disappears and a file stands where it was: writes fail.
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path.parent().unwrap(), b"not a directory").unwrap();
        record(&log, "SELECT 1");
        log.flush();
        assert_eq!(log.stats().write_errors, 1);
        // It comes back: the writer resumes.
        std::fs::remove_file(path.parent().unwrap()).unwrap();
        record(&log, "SELECT 2");
        log.flush();
        assert!(std::fs::read_to_string(&path).unwrap().contains("SELECT 2"));
        // Every record is still served from memory.
        assert_eq!(log.visible_to(&Principal::new("ann")).len(), 2);
    }

    #[test]
    fn memory_is_bounded_by_records_and_sql_text() {
        let log = AuditLog::try_new(&AuditConfig::default()).unwrap();
        for _ in 0..(KEEP_IN_MEMORY + 10) {
            record(&log, "SELECT 1");
        }
        let big = format!("SELECT '{}'", "é".repeat(1 << 19));
        for _ in 0..3 {
            record(&log, &big);
        }
        let kept = log.visible_to(&Principal::new("ann"));
        assert_eq!(kept.len(), KEEP_IN_MEMORY);
        assert!(kept
            .iter()
            .all(|r| r.sql.as_ref().unwrap().len() < SQL_IN_MEMORY + 100));
        assert_eq!(kept[KEEP_IN_MEMORY - 1].sql_sha256, sha256_hex(&big));
    }
}
