//! The audit log: one record per query or refused attempt — who, what SQL (or its hash), which
//! products (and Delta versions) and columns were read, which policies applied, rows and bytes
//! returned, duration and outcome. Records are appended as JSON lines to the configured file and
//! kept (the most recent ones) in memory for the `meshql.audit` system table.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

use meshql_catalog::{AuditConfig, Principal};
use serde::Serialize;

use crate::product::ProductRead;

/// Records kept in memory for `meshql.audit`.
const KEEP_IN_MEMORY: usize = 10_000;

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
    pub duration_ms: u64,
    /// `ok`, `error` or `cancelled`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug)]
pub(crate) struct AuditLog {
    hash_sql: bool,
    file: Option<Mutex<File>>,
    recent: Mutex<VecDeque<AuditRecord>>,
}

impl AuditLog {
    pub(crate) fn try_new(config: &AuditConfig) -> std::io::Result<Self> {
        let file = match &config.file {
            Some(path) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                Some(Mutex::new(
                    OpenOptions::new().create(true).append(true).open(path)?,
                ))
            }
            None => None,
        };
        Ok(Self {
            hash_sql: config.hash_sql,
            file,
            recent: Mutex::new(VecDeque::new()),
        })
    }

    /// Builds and stores a record.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &self,
        principal: &Principal,
        sql: &str,
        products: Vec<ProductRead>,
        rows: u64,
        bytes: u64,
        duration: std::time::Duration,
        outcome: &'static str,
        error: Option<String>,
    ) {
        let record = AuditRecord {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            user: principal.user.clone(),
            sql: (!self.hash_sql).then(|| sql.to_string()),
            sql_sha256: sha256_hex(sql),
            products,
            rows,
            bytes,
            duration_ms: duration.as_millis() as u64,
            outcome,
            error,
        };
        if let Some(file) = &self.file {
            match serde_json::to_string(&record) {
                Ok(line) => {
                    let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(e) = writeln!(f, "{line}") {
                        metrics::counter!(crate::telemetry::AUDIT_WRITE_ERRORS).increment(1);
                        tracing::warn!(error = %e, "cannot write the audit record");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot serialize the audit record"),
            }
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == KEEP_IN_MEMORY {
            recent.pop_front();
        }
        recent.push_back(record);
    }

    /// Every record kept in memory, oldest first (usage per product).
    pub(crate) fn all(&self) -> Vec<AuditRecord> {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// The records `principal` may see: its own, or all for audit admins.
    pub(crate) fn visible_to(&self, principal: &Principal) -> Vec<AuditRecord> {
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

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
