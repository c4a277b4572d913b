//! Who a contract change would break: the principals and recent queries that read the affected
//! columns of a product, from the audit log file (`[audit] file`).
//!
//! Every audit record names the products a query read and, per product, the columns it read
//! (`products[].columns`). [`usage_of_columns`] reads the file line by line (records are JSON
//! lines; lines that are not records are skipped and counted), keeps the records newer than a
//! cut-off that read one of the columns, and aggregates them per principal (queries, last time,
//! columns read) and per query text (or its SHA-256 when `[audit] sql = "hash"`). Only the
//! current file is read: records in rotated files are not "recent".

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One principal's reads of the affected columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrincipalUsage {
    pub user: String,
    pub queries: u64,
    /// RFC 3339, UTC.
    pub last: String,
    /// The affected columns this principal read.
    pub columns: Vec<String>,
}

/// One query (by text, or by hash) that read the affected columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueryUsage {
    /// The SQL text; None when the audit keeps hashes only (`[audit] sql = "hash"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    pub sql_sha256: String,
    pub queries: u64,
    pub last: String,
    pub users: Vec<String>,
    pub columns: Vec<String>,
}

/// The readers of some columns of one product.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ColumnUsage {
    /// `domain.product`.
    pub product: String,
    /// The columns looked for.
    pub columns: Vec<String>,
    /// Records newer than this were considered (RFC 3339, UTC).
    pub since: String,
    /// Principals, most queries first.
    pub principals: Vec<PrincipalUsage>,
    /// Queries, most recent first.
    pub queries: Vec<QueryUsage>,
    /// Audit records read, and lines skipped because they were not records.
    pub records: u64,
    pub skipped_lines: u64,
}

impl ColumnUsage {
    /// True when nobody read the columns.
    pub fn is_empty(&self) -> bool {
        self.principals.is_empty()
    }
}

impl std::fmt::Display for ColumnUsage {
    /// ```text
    /// readers of sales.orders (tier) since 2025-01-01T00:00:00Z:
    ///   sales_analyst: 3 queries, last 2025-01-31T10:00:00Z (tier)
    ///   query "SELECT tier FROM customers.customers": 3 times by sales_analyst, last ...
    /// ```
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.columns.is_empty() {
            return write!(f, "no column of {} is affected", self.product);
        }
        let cols = self.columns.join(", ");
        if self.principals.is_empty() {
            return write!(
                f,
                "nobody read {} ({cols}) since {} ({} audit records)",
                self.product, self.since, self.records
            );
        }
        writeln!(
            f,
            "readers of {} ({cols}) since {}:",
            self.product, self.since
        )?;
        for p in &self.principals {
            writeln!(
                f,
                "  {}: {} quer{}, last {} ({})",
                p.user,
                p.queries,
                if p.queries == 1 { "y" } else { "ies" },
                p.last,
                p.columns.join(", ")
            )?;
        }
        writeln!(f, "recent queries:")?;
        for (i, q) in self.queries.iter().enumerate() {
            let text = match &q.sql {
                Some(s) => format!("{:?}", one_line(s, 200)),
                None => format!("sha256:{}", q.sql_sha256),
            };
            write!(
                f,
                "  {text}: {} time(s) by {}, last {}",
                q.queries,
                q.users.join(", "),
                q.last
            )?;
            if i + 1 < self.queries.len() {
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        format!("{}…", flat.chars().take(max).collect::<String>())
    }
}

#[derive(Deserialize)]
struct Record {
    time: String,
    user: String,
    #[serde(default)]
    sql: Option<String>,
    #[serde(default)]
    sql_sha256: String,
    #[serde(default)]
    products: Vec<Read>,
}

#[derive(Deserialize)]
struct Read {
    product: String,
    #[serde(default)]
    columns: Vec<String>,
}

/// Most queries listed in [`ColumnUsage::queries`].
pub(crate) const MAX_QUERIES_LISTED: usize = 20;

/// Reads the audit file at `file` and aggregates the records at or after `since` that read any
/// of `columns` of `product` (`domain.product`). With `hash_sql`, SQL texts are left out. A
/// missing file means no readers.
pub fn usage_of_columns(
    file: &Path,
    product: &str,
    columns: &[&str],
    since: chrono::DateTime<chrono::Utc>,
    hash_sql: bool,
) -> std::io::Result<ColumnUsage> {
    let mut out = ColumnUsage {
        product: product.to_string(),
        columns: columns.iter().map(|c| c.to_string()).collect(),
        since: since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ..ColumnUsage::default()
    };
    if columns.is_empty() {
        return Ok(out);
    }
    let reader = match std::fs::File::open(file) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    struct P {
        queries: u64,
        last: String,
        columns: BTreeSet<String>,
    }
    struct Q {
        sql: Option<String>,
        queries: u64,
        last: String,
        users: BTreeSet<String>,
        columns: BTreeSet<String>,
    }
    let mut principals: BTreeMap<String, P> = BTreeMap::new();
    let mut queries: BTreeMap<String, Q> = BTreeMap::new();
    for line in reader.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(r) = serde_json::from_str::<Record>(&line) else {
            out.skipped_lines += 1;
            continue;
        };
        out.records += 1;
        let Ok(at) = chrono::DateTime::parse_from_rfc3339(&r.time) else {
            out.skipped_lines += 1;
            continue;
        };
        if at < since {
            continue;
        }
        let read: BTreeSet<String> = r
            .products
            .iter()
            .filter(|p| p.product == product)
            .flat_map(|p| p.columns.iter())
            .filter(|c| columns.contains(&c.as_str()))
            .cloned()
            .collect();
        if read.is_empty() {
            continue;
        }
        // Times are RFC 3339 in UTC with a fixed format: they compare as text.
        let p = principals.entry(r.user.clone()).or_insert_with(|| P {
            queries: 0,
            last: String::new(),
            columns: BTreeSet::new(),
        });
        p.queries += 1;
        if r.time > p.last {
            p.last = r.time.clone();
        }
        p.columns.extend(read.iter().cloned());
        let key = if r.sql_sha256.is_empty() {
            crate::audit::sha256_hex(r.sql.as_deref().unwrap_or(""))
        } else {
            r.sql_sha256.clone()
        };
        let q = queries.entry(key).or_insert_with(|| Q {
            sql: None,
            queries: 0,
            last: String::new(),
            users: BTreeSet::new(),
            columns: BTreeSet::new(),
        });
        q.queries += 1;
        if r.time > q.last {
            q.last = r.time.clone();
        }
        if !hash_sql && q.sql.is_none() {
            q.sql = r.sql;
        }
        q.users.insert(r.user);
        q.columns.extend(read);
    }
    out.principals = principals
        .into_iter()
        .map(|(user, p)| PrincipalUsage {
            user,
            queries: p.queries,
            last: p.last,
            columns: p.columns.into_iter().collect(),
        })
        .collect();
    out.principals
        .sort_by(|a, b| b.queries.cmp(&a.queries).then(a.user.cmp(&b.user)));
    out.queries = queries
        .into_iter()
        .map(|(sha, q)| QueryUsage {
            sql: q.sql,
            sql_sha256: sha,
            queries: q.queries,
            last: q.last,
            users: q.users.into_iter().collect(),
            columns: q.columns.into_iter().collect(),
        })
        .collect();
    out.queries.sort_by(|a, b| b.last.cmp(&a.last));
    out.queries.truncate(MAX_QUERIES_LISTED);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_readers_of_the_affected_columns() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        let rec = |time: &str, user: &str, sql: &str, cols: &[&str]| {
            serde_json::json!({
                "time": time, "user": user, "sql": sql,
                "sql_sha256": crate::audit::sha256_hex(sql),
                "products": [{"product": "customers.customers", "columns": cols, "policies": []}],
                "rows": 1, "bytes": 1, "duration_ms": 1, "outcome": "ok"
            })
            .to_string()
        };
        let lines = [
            rec(
                "2025-01-01T00:00:00Z",
                "old",
                "SELECT tier FROM c",
                &["tier"],
            ),
            rec(
                "2025-02-01T00:00:00Z",
                "ann",
                "SELECT tier FROM c",
                &["tier"],
            ),
            rec(
                "2025-02-02T00:00:00Z",
                "ann",
                "SELECT tier FROM c",
                &["tier", "name"],
            ),
            rec(
                "2025-02-03T00:00:00Z",
                "bob",
                "SELECT name FROM c",
                &["name"],
            ),
            rec(
                "2025-02-04T00:00:00Z",
                "cy",
                "SELECT * FROM c",
                &["name", "tier"],
            ),
            "not json".to_string(),
        ];
        std::fs::write(&file, lines.join("\n")).unwrap();
        let since = chrono::DateTime::parse_from_rfc3339("2025-01-15T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let u = usage_of_columns(&file, "customers.customers", &["tier"], since, false).unwrap();
        let users: Vec<(&str, u64)> = u
            .principals
            .iter()
            .map(|p| (p.user.as_str(), p.queries))
            .collect();
        assert_eq!(users, [("ann", 2), ("cy", 1)]);
        assert_eq!(u.principals[0].last, "2025-02-02T00:00:00Z");
        assert_eq!(u.queries.len(), 2);
        assert_eq!(u.queries[0].sql.as_deref(), Some("SELECT * FROM c"));
        assert_eq!((u.records, u.skipped_lines), (5, 1));
        let text = u.to_string();
        assert!(text.contains("ann: 2 queries"), "{text}");
        // Hashes only.
        let u = usage_of_columns(&file, "customers.customers", &["tier"], since, true).unwrap();
        assert!(u.queries.iter().all(|q| q.sql.is_none()));
        assert!(u.to_string().contains("sha256:"));
        // A missing file: nobody.
        let u = usage_of_columns(&dir.path().join("none"), "x.y", &["a"], since, false).unwrap();
        assert!(u.is_empty());
    }
}
