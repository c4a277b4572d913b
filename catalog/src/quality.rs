//! Quality rules of a contract (`[[quality]]`): what the platform checks about a product's data.
//!
//! This module is the typed model and its validation against the contract (columns exist, types
//! fit the rule, required fields per rule kind). Running the rules is the engine's job: each
//! [`QualityKind`] says exactly what to compute, and literals come as [`RuleLiteral`]s already
//! checked against the column's type. See `docs/catalog.md` ("Quality rules").

use std::cell::RefCell;
use std::cmp::Ordering;
use std::fmt;
use std::path::Path;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

use crate::error::Problem;
use crate::manifest::{is_identifier, ColumnSpec, Fields};
use crate::types::ColumnType;

/// How much a failing rule matters. Default: [`Severity::Error`] (a rule written in the contract
/// is enforced unless its author says it is only a warning).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A failure makes the product `failing`; `catalog check` exits 1 and `product publish`
    /// refuses.
    #[default]
    Error,
    /// A failure makes the product `warning`; nothing is refused.
    Warning,
}

impl Severity {
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[quality]]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualityRule {
    /// Unique within the product; `[a-z][a-z0-9_]*`.
    pub name: String,
    pub severity: Severity,
    pub description: String,
    pub kind: QualityKind,
}

/// What a rule checks. NULLs are only the business of `not_null`: every other rule ignores NULL
/// values (like a SQL `CHECK` constraint, where unknown is not a violation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QualityKind {
    /// No NULL in `column`.
    NotNull { column: String },
    /// No two rows share the same values of `columns` (rows with a NULL in any of them are
    /// ignored).
    Unique { columns: Vec<String> },
    /// Every non-NULL value of `column` is one of `values`.
    AcceptedValues {
        column: String,
        values: Vec<RuleLiteral>,
    },
    /// Every non-NULL value of `column` is `>= min` and `<= max` (both inclusive; at least one
    /// is set).
    Range {
        column: String,
        min: Option<RuleLiteral>,
        max: Option<RuleLiteral>,
    },
    /// The number of rows is within `min..=max` (at least one is set).
    RowCount { min: Option<u64>, max: Option<u64> },
    /// The newest value of `column` (a date or timestamp) is at most `max_age` old at check
    /// time. A product with no non-NULL value fails.
    Freshness {
        column: String,
        /// As written, e.g. `26h`.
        max_age: String,
        max_age_secs: u64,
    },
    /// Every row satisfies `predicate` (a SQL boolean expression over the product's columns;
    /// a row where it is NULL passes). The engine type-checks it like a row filter.
    Sql { predicate: String },
}

impl QualityKind {
    /// The `rule = "..."` name of this kind.
    pub fn rule(&self) -> &'static str {
        match self {
            QualityKind::NotNull { .. } => "not_null",
            QualityKind::Unique { .. } => "unique",
            QualityKind::AcceptedValues { .. } => "accepted_values",
            QualityKind::Range { .. } => "range",
            QualityKind::RowCount { .. } => "row_count",
            QualityKind::Freshness { .. } => "freshness",
            QualityKind::Sql { .. } => "sql",
        }
    }

    /// The contract columns the rule names (none for `row_count` and `sql`).
    pub fn columns(&self) -> Vec<&str> {
        match self {
            QualityKind::NotNull { column }
            | QualityKind::AcceptedValues { column, .. }
            | QualityKind::Range { column, .. }
            | QualityKind::Freshness { column, .. } => vec![column.as_str()],
            QualityKind::Unique { columns } => columns.iter().map(String::as_str).collect(),
            QualityKind::RowCount { .. } | QualityKind::Sql { .. } => Vec::new(),
        }
    }
}

impl fmt::Display for QualityKind {
    /// A one-line summary such as `range(total_amount, min 0, max 1000000)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bound = |name: &str, b: &Option<String>| b.as_ref().map(|v| format!(", {name} {v}"));
        match self {
            QualityKind::NotNull { column } => write!(f, "not_null({column})"),
            QualityKind::Unique { columns } => write!(f, "unique({})", columns.join(", ")),
            QualityKind::AcceptedValues { column, values } => write!(
                f,
                "accepted_values({column}: {})",
                values
                    .iter()
                    .map(|v| v.text.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            QualityKind::Range { column, min, max } => write!(
                f,
                "range({column}{}{})",
                bound("min", &min.as_ref().map(|v| v.text.clone())).unwrap_or_default(),
                bound("max", &max.as_ref().map(|v| v.text.clone())).unwrap_or_default()
            ),
            QualityKind::RowCount { min, max } => {
                let parts: Vec<String> = [
                    min.map(|m| format!("min {m}")),
                    max.map(|m| format!("max {m}")),
                ]
                .into_iter()
                .flatten()
                .collect();
                write!(f, "row_count({})", parts.join(", "))
            }
            QualityKind::Freshness {
                column, max_age, ..
            } => write!(f, "freshness({column}, max_age {max_age})"),
            QualityKind::Sql { predicate } => write!(f, "sql({predicate})"),
        }
    }
}

/// A literal of a rule (`accepted_values`, `range` bounds), checked against its column's type.
///
/// `text` is canonical for the type and can be cast from a string to it: integers and floats as
/// digits, decimals with at most the column's scale, `true`/`false`, dates `YYYY-MM-DD`,
/// `timestamp` values as RFC 3339 in UTC (`2024-05-01T00:00:00Z`), `timestamp_ntz` values as
/// `2024-05-01T00:00:00`, strings as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleLiteral {
    pub text: String,
    /// The column's contract type.
    pub ty: ColumnType,
}

impl RuleLiteral {
    /// The literal as a SQL expression of the column's type, e.g. `'EU'`, `42`,
    /// `CAST('12.50' AS DECIMAL(12,2))`, `DATE '2024-05-01'`.
    pub fn to_sql(&self) -> String {
        let quoted = format!("'{}'", self.text.replace('\'', "''"));
        match self.ty {
            ColumnType::Boolean => self.text.to_ascii_uppercase(),
            ColumnType::TinyInt
            | ColumnType::SmallInt
            | ColumnType::Int
            | ColumnType::BigInt
            | ColumnType::Float
            | ColumnType::Double => self.text.clone(),
            ColumnType::Decimal { precision, scale } => {
                format!("CAST({quoted} AS DECIMAL({precision},{scale}))")
            }
            ColumnType::String | ColumnType::Binary => quoted,
            ColumnType::Date => format!("DATE {quoted}"),
            ColumnType::Timestamp | ColumnType::TimestampNtz => format!("TIMESTAMP {quoted}"),
        }
    }

    /// Orders two literals of the same type (None when they cannot be compared).
    fn compare(&self, other: &RuleLiteral) -> Option<Ordering> {
        let a = sort_key(&self.text, self.ty)?;
        let b = sort_key(&other.text, other.ty)?;
        a.partial_cmp(&b)
    }
}

impl fmt::Display for RuleLiteral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The `rule` names, in documentation order.
pub const RULE_KINDS: &[&str] = &[
    "not_null",
    "unique",
    "accepted_values",
    "range",
    "row_count",
    "freshness",
    "sql",
];

const COMMON_KEYS: &[&str] = &["name", "rule", "severity", "description"];

fn kind_keys(rule: &str) -> &'static [&'static str] {
    match rule {
        "not_null" => &["column"],
        "unique" => &["column", "columns"],
        "accepted_values" => &["column", "values"],
        "range" => &["column", "min", "max"],
        "row_count" => &["min", "max"],
        "freshness" => &["column", "max_age"],
        "sql" => &["predicate"],
        _ => &[
            "column",
            "columns",
            "values",
            "min",
            "max",
            "max_age",
            "predicate",
        ],
    }
}

/// Parses and validates the `[[quality]]` entries of a manifest against its columns.
pub(crate) fn parse_quality(
    file: &Path,
    entries: Vec<&toml::Table>,
    columns: &[ColumnSpec],
    broken_columns: &[String],
    problems: &RefCell<Vec<Problem>>,
) -> Vec<QualityRule> {
    let mut rules: Vec<QualityRule> = Vec::new();
    for (i, t) in entries.into_iter().enumerate() {
        let path = format!("quality[{i}]");
        let mut q = Fields::new(file, &path, t, problems);
        let rule = q.required_string("rule");
        let known: Vec<&str> = COMMON_KEYS
            .iter()
            .chain(kind_keys(rule.as_deref().unwrap_or("")))
            .copied()
            .collect();
        q.known(&known);
        let name = q.required_string("name");
        if let Some(n) = &name {
            if !is_identifier(n) {
                q.problem(
                    "name",
                    format!("`{n}` is not a valid rule name (lowercase letters, digits and `_`, starting with a letter)"),
                );
            } else if rules.iter().any(|r| &r.name == n) {
                q.problem(
                    "name",
                    format!("quality rule `{n}` is declared more than once"),
                );
            }
        }
        let severity = match q.string("severity").as_deref() {
            None | Some("error") => Some(Severity::Error),
            Some("warning") => Some(Severity::Warning),
            Some(other) => {
                q.problem(
                    "severity",
                    format!("unknown severity `{other}`: expected `error` or `warning`"),
                );
                None
            }
        };
        let description = q.string("description").unwrap_or_default();
        let kind = rule.and_then(|r| parse_kind(&q, &r, columns, broken_columns));
        if let (Some(name), Some(severity), Some(kind)) = (name, severity, kind) {
            rules.push(QualityRule {
                name,
                severity,
                description,
                kind,
            });
        }
    }
    rules
}

fn parse_kind(
    q: &Fields<'_>,
    rule: &str,
    columns: &[ColumnSpec],
    broken_columns: &[String],
) -> Option<QualityKind> {
    // A column named by the rule, checked against the contract (a column whose declaration is
    // broken is reported there, not again here).
    let column = |key: &str| -> Option<&ColumnSpec> {
        let name = q.required_string(key)?;
        let found = columns.iter().find(|c| c.name == name);
        if found.is_none() && !broken_columns.contains(&name) {
            q.problem(key, format!("the contract has no column `{name}`"));
        }
        found
    };
    match rule {
        "not_null" => Some(QualityKind::NotNull {
            column: column("column")?.name.clone(),
        }),
        "unique" => {
            let names = match (q.value("column"), q.value("columns")) {
                (Some(_), Some(_)) => {
                    q.problem("columns", "give either `column` or `columns`, not both");
                    return None;
                }
                (Some(_), None) => vec![column("column")?.name.clone()],
                (None, Some(_)) => {
                    let list = q.string_list("columns")?;
                    if list.is_empty() {
                        q.problem("columns", "must name at least one column");
                        return None;
                    }
                    let mut ok = true;
                    for (j, n) in list.iter().enumerate() {
                        if list[..j].contains(n) {
                            q.problem("columns", format!("column `{n}` is listed twice"));
                            ok = false;
                        } else if !columns.iter().any(|c| &c.name == n) {
                            if !broken_columns.contains(n) {
                                q.problem("columns", format!("the contract has no column `{n}`"));
                            }
                            ok = false;
                        }
                    }
                    if !ok {
                        return None;
                    }
                    list
                }
                (None, None) => {
                    q.problem(
                        "columns",
                        "missing required field: `columns = [...]` (or `column` for one)",
                    );
                    return None;
                }
            };
            Some(QualityKind::Unique { columns: names })
        }
        "accepted_values" => {
            let col = column("column");
            let values = match q.value("values") {
                None => {
                    q.problem("values", "missing required field");
                    None
                }
                Some(toml::Value::Array(items)) if items.is_empty() => {
                    q.problem("values", "must list at least one value");
                    None
                }
                Some(toml::Value::Array(items)) => Some(items),
                Some(other) => {
                    q.problem(
                        "values",
                        format!("expected a list of values, found {}", other.type_str()),
                    );
                    None
                }
            };
            let col = col?;
            if !matches!(
                col.ty,
                ColumnType::String
                    | ColumnType::Boolean
                    | ColumnType::TinyInt
                    | ColumnType::SmallInt
                    | ColumnType::Int
                    | ColumnType::BigInt
                    | ColumnType::Decimal { .. }
                    | ColumnType::Date
            ) {
                q.problem(
                    "column",
                    format!(
                        "accepted_values applies to string, boolean, integer, decimal and date columns; `{}` is {}",
                        col.name, col.ty
                    ),
                );
                return None;
            }
            let mut out = Vec::new();
            let mut ok = true;
            for (j, v) in values?.iter().enumerate() {
                match literal(v, col.ty) {
                    Ok(l) => out.push(l),
                    Err(e) => {
                        q.problem(&format!("values[{j}]"), e);
                        ok = false;
                    }
                }
            }
            ok.then_some(QualityKind::AcceptedValues {
                column: col.name.clone(),
                values: out,
            })
        }
        "range" => {
            let col = column("column")?;
            if !(is_numeric(col.ty) || is_temporal(col.ty)) {
                q.problem(
                    "column",
                    format!(
                        "range applies to numeric, date and timestamp columns; `{}` is {}",
                        col.name, col.ty
                    ),
                );
                return None;
            }
            let bound = |key: &str| -> Result<Option<RuleLiteral>, ()> {
                match q.value(key) {
                    None => Ok(None),
                    Some(v) => literal(v, col.ty).map(Some).map_err(|e| q.problem(key, e)),
                }
            };
            let (min, max) = (bound("min"), bound("max"));
            let (min, max) = (min.ok()?, max.ok()?);
            if min.is_none() && max.is_none() {
                q.problem("min", "a range needs `min`, `max` or both");
                return None;
            }
            if let (Some(a), Some(b)) = (&min, &max) {
                if a.compare(b) == Some(Ordering::Greater) {
                    q.problem("max", format!("max {b} is below min {a}"));
                    return None;
                }
            }
            Some(QualityKind::Range {
                column: col.name.clone(),
                min,
                max,
            })
        }
        "row_count" => {
            let count = |key: &str| -> Result<Option<u64>, ()> {
                match q.value(key) {
                    None => Ok(None),
                    Some(toml::Value::Integer(n)) if *n >= 0 => Ok(Some(*n as u64)),
                    Some(other) => {
                        q.problem(
                            key,
                            format!("expected a non-negative integer, found {other}"),
                        );
                        Err(())
                    }
                }
            };
            let (min, max) = (count("min"), count("max"));
            let (min, max) = (min.ok()?, max.ok()?);
            match (min, max) {
                (None, None) => {
                    q.problem("min", "a row_count rule needs `min`, `max` or both");
                    None
                }
                (Some(a), Some(b)) if a > b => {
                    q.problem("max", format!("max {b} is below min {a}"));
                    None
                }
                _ => Some(QualityKind::RowCount { min, max }),
            }
        }
        "freshness" => {
            let col = column("column");
            let max_age = match q.value("max_age") {
                None => {
                    q.problem(
                        "max_age",
                        "missing required field (a duration such as \"26h\")",
                    );
                    None
                }
                Some(toml::Value::Integer(n)) if *n > 0 => Some((format!("{n}s"), *n as u64)),
                Some(toml::Value::String(s)) => match crate::manifest::parse_duration(s) {
                    Some(secs) => Some((s.clone(), secs)),
                    None => {
                        q.problem(
                            "max_age",
                            format!("`{s}` is not a duration such as `30m`, `26h` or `7d`"),
                        );
                        None
                    }
                },
                Some(other) => {
                    q.problem(
                        "max_age",
                        format!("expected a duration such as \"26h\", found {other}"),
                    );
                    None
                }
            };
            let col = col?;
            if !is_temporal(col.ty) {
                q.problem(
                    "column",
                    format!(
                        "freshness applies to date and timestamp columns; `{}` is {}",
                        col.name, col.ty
                    ),
                );
                return None;
            }
            let (max_age, max_age_secs) = max_age?;
            Some(QualityKind::Freshness {
                column: col.name.clone(),
                max_age,
                max_age_secs,
            })
        }
        "sql" => Some(QualityKind::Sql {
            predicate: q.required_string("predicate")?,
        }),
        other => {
            q.problem(
                "rule",
                format!(
                    "unknown rule `{other}`: expected one of {}",
                    RULE_KINDS.join(", ")
                ),
            );
            None
        }
    }
}

fn is_numeric(t: ColumnType) -> bool {
    matches!(
        t,
        ColumnType::TinyInt
            | ColumnType::SmallInt
            | ColumnType::Int
            | ColumnType::BigInt
            | ColumnType::Float
            | ColumnType::Double
            | ColumnType::Decimal { .. }
    )
}

fn is_temporal(t: ColumnType) -> bool {
    matches!(
        t,
        ColumnType::Date | ColumnType::Timestamp | ColumnType::TimestampNtz
    )
}

/// Reads a TOML value as a literal of column type `ty`.
fn literal(v: &toml::Value, ty: ColumnType) -> Result<RuleLiteral, String> {
    let text = literal_text(v, ty)?;
    Ok(RuleLiteral { text, ty })
}

fn literal_text(v: &toml::Value, ty: ColumnType) -> Result<String, String> {
    let found = || format!("expected a {} value, found {v}", ty);
    match ty {
        ColumnType::Boolean => v.as_bool().map(|b| b.to_string()).ok_or_else(found),
        ColumnType::TinyInt | ColumnType::SmallInt | ColumnType::Int | ColumnType::BigInt => {
            let n = v.as_integer().ok_or_else(found)?;
            let (lo, hi): (i64, i64) = match ty {
                ColumnType::TinyInt => (i8::MIN.into(), i8::MAX.into()),
                ColumnType::SmallInt => (i16::MIN.into(), i16::MAX.into()),
                ColumnType::Int => (i32::MIN.into(), i32::MAX.into()),
                _ => (i64::MIN, i64::MAX),
            };
            if n < lo || n > hi {
                return Err(format!("{n} does not fit a {ty} column ({lo}..={hi})"));
            }
            Ok(n.to_string())
        }
        ColumnType::Float | ColumnType::Double => match v {
            toml::Value::Integer(n) => Ok(n.to_string()),
            toml::Value::Float(x) if x.is_finite() => {
                if ty == ColumnType::Float && x.abs() > f64::from(f32::MAX) {
                    return Err(format!("{x} does not fit a float column"));
                }
                Ok(x.to_string())
            }
            _ => Err(found()),
        },
        ColumnType::Decimal { precision, scale } => {
            let text = match v {
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) if x.is_finite() => x.to_string(),
                toml::Value::String(s) => s.trim().to_string(),
                _ => return Err(found()),
            };
            check_decimal(&text, precision, scale)?;
            Ok(text)
        }
        ColumnType::String => v.as_str().map(str::to_string).ok_or_else(found),
        ColumnType::Binary => Err("binary columns take no literals".to_string()),
        ColumnType::Date => {
            let text = match v {
                toml::Value::String(s) => s.trim().to_string(),
                toml::Value::Datetime(d) if d.time.is_none() && d.offset.is_none() => d.to_string(),
                _ => return Err(found()),
            };
            NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                .map(|d| d.format("%Y-%m-%d").to_string())
                .map_err(|_| format!("`{text}` is not a date such as 2024-05-01"))
        }
        ColumnType::Timestamp | ColumnType::TimestampNtz => {
            let text = match v {
                toml::Value::String(s) => s.trim().to_string(),
                toml::Value::Datetime(d) => d.to_string(),
                _ => return Err(found()),
            };
            let ts = parse_timestamp(&text, ty == ColumnType::Timestamp).ok_or_else(|| {
                format!(
                    "`{text}` is not a timestamp such as 2024-05-01T12:00:00Z{}",
                    if ty == ColumnType::TimestampNtz {
                        " (without time zone: 2024-05-01T12:00:00)"
                    } else {
                        ""
                    }
                )
            })?;
            Ok(if ty == ColumnType::Timestamp {
                ts.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true)
            } else {
                ts.and_utc()
                    .to_rfc3339_opts(SecondsFormat::AutoSi, true)
                    .trim_end_matches('Z')
                    .to_string()
            })
        }
    }
}

/// A timestamp: RFC 3339 with an offset (converted to UTC; only when `zoned`), a date-time
/// without one (taken as UTC for `timestamp`), or a date (midnight).
fn parse_timestamp(text: &str, zoned: bool) -> Option<NaiveDateTime> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return zoned.then(|| dt.with_timezone(&Utc).naive_utc());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, fmt) {
            return Some(t);
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

/// `[-+]digits[.digits]` fitting `decimal(precision, scale)`.
fn check_decimal(text: &str, precision: u8, scale: i8) -> Result<(), String> {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (body.contains('.') && frac.is_empty()) {
        return Err(format!("`{text}` is not a decimal number such as 12.50"));
    }
    let int_digits = int.trim_start_matches('0').len();
    let frac_digits = frac.trim_end_matches('0').len();
    let scale = scale.max(0) as usize;
    if frac_digits > scale {
        return Err(format!(
            "{text} has more than {scale} decimal place(s) (decimal({precision},{scale}))"
        ));
    }
    if int_digits > precision as usize - scale {
        return Err(format!(
            "{text} does not fit decimal({precision},{scale}) (at most {} digit(s) before the point)",
            precision as usize - scale
        ));
    }
    Ok(())
}

/// An order-preserving key for validated literal text (to check `min <= max`).
fn sort_key(text: &str, ty: ColumnType) -> Option<f64> {
    match ty {
        ColumnType::Date => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .map(|d| f64::from(d.num_days_from_ce())),
        ColumnType::Timestamp | ColumnType::TimestampNtz => {
            parse_timestamp(text, true).map(|t| t.and_utc().timestamp_micros() as f64)
        }
        _ => text.parse::<f64>().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(v: toml::Value, ty: &str) -> Result<String, String> {
        literal_text(&v, ty.parse().unwrap())
    }

    #[test]
    fn literals_are_checked_against_the_column_type() {
        use toml::Value::*;
        assert_eq!(lit(Integer(5), "int"), Ok("5".into()));
        assert!(lit(Integer(300), "tinyint")
            .unwrap_err()
            .contains("does not fit"));
        assert!(lit(Float(1.5), "int").is_err());
        assert_eq!(lit(Float(1.5), "double"), Ok("1.5".into()));
        assert_eq!(lit(Integer(2), "double"), Ok("2".into()));
        assert_eq!(
            lit(String("12.50".into()), "decimal(5,2)"),
            Ok("12.50".into())
        );
        assert_eq!(lit(Float(0.5), "decimal(5,2)"), Ok("0.5".into()));
        assert!(lit(String("0.001".into()), "decimal(5,2)")
            .unwrap_err()
            .contains("decimal place"));
        assert!(lit(String("1234".into()), "decimal(5,2)")
            .unwrap_err()
            .contains("does not fit"));
        assert!(lit(String("1e3".into()), "decimal(5,2)").is_err());
        assert_eq!(
            lit(String("2024-05-01".into()), "date"),
            Ok("2024-05-01".into())
        );
        assert!(lit(String("2024-13-01".into()), "date").is_err());
        assert_eq!(
            lit(String("2024-05-01T12:00:00+02:00".into()), "timestamp"),
            Ok("2024-05-01T10:00:00Z".into())
        );
        assert_eq!(
            lit(String("2024-05-01 12:00:00.5".into()), "timestamp_ntz"),
            Ok("2024-05-01T12:00:00.500".into())
        );
        assert!(lit(String("2024-05-01T12:00:00Z".into()), "timestamp_ntz").is_err());
        let toml_date: toml::Table = "d = 2024-05-01\nt = 2024-05-01T08:00:00Z".parse().unwrap();
        assert_eq!(lit(toml_date["d"].clone(), "date"), Ok("2024-05-01".into()));
        assert_eq!(
            lit(toml_date["t"].clone(), "timestamp"),
            Ok("2024-05-01T08:00:00Z".into())
        );
        assert_eq!(lit(Boolean(true), "boolean"), Ok("true".into()));
        assert!(lit(String("x".into()), "binary").is_err());
    }

    #[test]
    fn sql_literals() {
        let l = |text: &str, ty: &str| RuleLiteral {
            text: text.into(),
            ty: ty.parse().unwrap(),
        };
        assert_eq!(l("o'k", "string").to_sql(), "'o''k'");
        assert_eq!(l("42", "bigint").to_sql(), "42");
        assert_eq!(l("true", "boolean").to_sql(), "TRUE");
        assert_eq!(
            l("12.50", "decimal(12,2)").to_sql(),
            "CAST('12.50' AS DECIMAL(12,2))"
        );
        assert_eq!(l("2024-05-01", "date").to_sql(), "DATE '2024-05-01'");
        assert_eq!(
            l("2024-05-01T00:00:00Z", "timestamp").to_sql(),
            "TIMESTAMP '2024-05-01T00:00:00Z'"
        );
    }
}
