//! Product manifests: one TOML file per data product, holding its contract.
//!
//! The shape is inspired by the Open Data Contract Standard: identity (name, domain, version),
//! ownership, physical format and location, the schema of public columns with descriptions,
//! classifications and primary key, a freshness SLA (and what happens when it is breached),
//! deprecation of products and columns, quality rules and lineage inputs. See `docs/catalog.md`.

use std::cell::RefCell;
use std::fmt;
use std::path::Path;

use chrono::NaiveDate;

use crate::error::Problem;
use crate::lineage::{parse_inputs, Input};
use crate::quality::{parse_quality, QualityRule};
use crate::types::ColumnType;

/// Physical format of a product's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A Parquet file or a directory of Parquet files.
    Parquet,
    /// A Delta Lake table.
    Delta,
}

impl Format {
    pub fn as_str(&self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Delta => "delta",
        }
    }
}

/// What happens to queries when a product's data is older than its freshness SLA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum OnBreach {
    /// Queries run; the breach is recorded in their audit records (default).
    #[default]
    Warn,
    /// Queries reading the stale product fail (naming the product, its SLA and the age of its
    /// data) unless the principal holds the mesh's `catalog.stale_reader_group`. Time-travel
    /// reads are exempt.
    Refuse,
}

impl OnBreach {
    pub fn as_str(&self) -> &'static str {
        match self {
            OnBreach::Warn => "warn",
            OnBreach::Refuse => "refuse",
        }
    }
}

impl fmt::Display for OnBreach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Service levels a product promises.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sla {
    /// Maximum age of the newest data, as written (`24h`), and in seconds.
    pub freshness: Option<(String, u64)>,
    /// What a breach of `freshness` does to queries (only meaningful with `freshness`).
    pub on_breach: OnBreach,
}

impl Sla {
    /// True when data `age_secs` old breaches the freshness SLA.
    pub fn is_breached(&self, age_secs: u64) -> bool {
        self.freshness
            .as_ref()
            .is_some_and(|(_, max)| age_secs > *max)
    }
}

/// `deprecated = "reason; use X instead"` with an optional `sunset = "YYYY-MM-DD"`, on a product
/// or a column. Deprecated things stay queryable; reads of them are recorded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Deprecation {
    /// Why, and what to use instead.
    pub reason: String,
    /// The day after which the product or column may be removed.
    pub sunset: Option<NaiveDate>,
}

impl fmt::Display for Deprecation {
    /// `reason` or `reason (sunset 2026-06-30)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.sunset {
            Some(d) => write!(f, "{} (sunset {})", self.reason, d.format("%Y-%m-%d")),
            None => f.write_str(&self.reason),
        }
    }
}

/// One column of the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
    pub description: String,
    /// Sensitivity class such as `pii`; global policies act on it.
    pub classification: Option<String>,
    pub primary_key: bool,
    /// Set when the column is deprecated.
    pub deprecated: Option<Deprecation>,
}

/// A data product's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductManifest {
    pub name: String,
    pub domain: String,
    pub version: String,
    pub description: String,
    pub owner: String,
    pub format: Format,
    /// Path of the data relative to the domain's bucket.
    pub location: String,
    pub tags: Vec<String>,
    pub sla: Sla,
    pub columns: Vec<ColumnSpec>,
    /// Set when the whole product is deprecated.
    pub deprecated: Option<Deprecation>,
    /// `[[quality]]` rules, in manifest order.
    pub quality: Vec<QualityRule>,
    /// `[[inputs]]`: products this one is derived from, in manifest order.
    pub inputs: Vec<Input>,
    /// `result_cache = false`: the owner's opt-out of the engine's result cache; queries that
    /// read this product are always run against its data (default true).
    pub result_cache: bool,
}

impl ProductManifest {
    /// Parses and validates a manifest, reporting every problem found.
    pub fn parse(file: &Path, text: &str) -> Result<Self, Vec<Problem>> {
        let value: toml::Table = text.parse::<toml::Table>().map_err(|e| {
            vec![
                Problem::new(file, "", format!("not valid TOML: {}", e.message()))
                    .with_span(text, e.span()),
            ]
        })?;
        let problems = RefCell::new(Vec::new());
        let mut f = Fields::new(file, "", &value, &problems);
        f.known(&[
            "name",
            "domain",
            "version",
            "description",
            "owner",
            "format",
            "location",
            "tags",
            "sla",
            "schema",
            "deprecated",
            "sunset",
            "quality",
            "inputs",
            "result_cache",
        ]);
        let name = f.required_string("name");
        if let Some(n) = &name {
            if !is_identifier(n) {
                f.problem("name", format!("`{n}` is not a valid product name (lowercase letters, digits and `_`, starting with a letter)"));
            }
        }
        let domain = f.required_string("domain");
        let version = f.required_string("version");
        if let Some(v) = &version {
            if let Err(e) = semver::Version::parse(v.trim()) {
                f.problem(
                    "version",
                    format!("`{v}` is not a semantic version such as `1.2.0` ({e})"),
                );
            }
        }
        let description = f.string("description").unwrap_or_default();
        let owner = f.required_string("owner");
        let format = f.required_string("format").and_then(|s| match s.as_str() {
            "parquet" => Some(Format::Parquet),
            "delta" => Some(Format::Delta),
            other => {
                f.problem(
                    "format",
                    format!("unknown format `{other}`: expected `parquet` or `delta`"),
                );
                None
            }
        });
        let location = f.required_string("location");
        if let Some(l) = &location {
            if l.contains("://")
                || l.starts_with('/')
                || l.split('/').any(|c| c == "..")
                || l.trim().is_empty()
            {
                f.problem("location", format!("`{l}` must be a path inside the domain's bucket (relative, no `..`, no URL)"));
            }
        }
        let tags = f.string_list("tags").unwrap_or_default();
        let sla = match f.table("sla") {
            Some(t) => {
                let mut s = Fields::new(file, "sla", t, &problems);
                s.known(&["freshness", "on_breach"]);
                let freshness = s.string("freshness").and_then(|text| {
                    parse_duration(&text)
                        .map(|secs| (text.clone(), secs))
                        .or_else(|| {
                            s.problem(
                                "freshness",
                                format!("`{text}` is not a duration such as `30m`, `24h` or `7d`"),
                            );
                            None
                        })
                });
                let on_breach = match s.string("on_breach").as_deref() {
                    None | Some("warn") => OnBreach::Warn,
                    Some("refuse") => OnBreach::Refuse,
                    Some(other) => {
                        s.problem(
                            "on_breach",
                            format!("unknown value `{other}`: expected `warn` or `refuse`"),
                        );
                        OnBreach::Warn
                    }
                };
                if t.contains_key("on_breach") && !t.contains_key("freshness") {
                    s.problem(
                        "on_breach",
                        "has no effect without `freshness`: set the SLA it enforces",
                    );
                }
                Sla {
                    freshness,
                    on_breach,
                }
            }
            None => Sla::default(),
        };
        let mut columns = Vec::new();
        // Columns declared with a name but otherwise broken (reported there): rules and
        // lineage naming them are not reported again.
        let mut broken_columns: Vec<String> = Vec::new();
        for (i, t) in f.array_of_tables("schema", true).into_iter().enumerate() {
            let path = format!("schema[{i}]");
            let mut c = Fields::new(file, &path, t, &problems);
            c.known(&[
                "name",
                "type",
                "nullable",
                "description",
                "classification",
                "primary_key",
                "deprecated",
                "sunset",
            ]);
            let name = c.required_string("name");
            if let Some(n) = &name {
                if !is_identifier(n) {
                    c.problem("name", format!("`{n}` is not a valid column name (lowercase letters, digits and `_`, starting with a letter)"));
                } else if columns.iter().any(|col: &ColumnSpec| &col.name == n) {
                    c.problem("name", format!("column `{n}` is declared more than once"));
                }
            }
            let ty = c
                .required_string("type")
                .and_then(|s| match s.parse::<ColumnType>() {
                    Ok(t) => Some(t),
                    Err(e) => {
                        c.problem("type", e);
                        None
                    }
                });
            let primary_key = c.bool("primary_key").unwrap_or(false);
            let nullable = c.bool("nullable").unwrap_or(!primary_key);
            if primary_key && nullable {
                c.problem("nullable", "a primary key column cannot be nullable");
            }
            let description = c.string("description").unwrap_or_default();
            let classification = c.string("classification");
            if let Some(cl) = &classification {
                if !is_identifier(cl) {
                    c.problem(
                        "classification",
                        format!(
                            "`{cl}` is not a valid classification (lowercase word such as `pii`)"
                        ),
                    );
                }
            }
            let deprecated = c.deprecation();
            match (name, ty) {
                (Some(name), Some(ty)) => columns.push(ColumnSpec {
                    name,
                    ty,
                    nullable,
                    description,
                    classification,
                    primary_key,
                    deprecated,
                }),
                (Some(name), None) => broken_columns.push(name),
                (None, _) => {}
            }
        }
        let deprecated = f.deprecation();
        let result_cache = f.bool("result_cache").unwrap_or(true);
        let quality = parse_quality(
            file,
            f.array_of_tables("quality", false),
            &columns,
            &broken_columns,
            &problems,
        );
        let inputs = parse_inputs(
            file,
            f.array_of_tables("inputs", false),
            domain.as_deref(),
            name.as_deref(),
            &columns,
            &broken_columns,
            &problems,
        );
        let problems = problems.into_inner();
        match (name, domain, version, owner, format, location) {
            (
                Some(name),
                Some(domain),
                Some(version),
                Some(owner),
                Some(format),
                Some(location),
            ) if problems.is_empty() => Ok(ProductManifest {
                name,
                domain,
                version,
                description,
                owner,
                format,
                location,
                tags,
                sla,
                columns,
                deprecated,
                quality,
                inputs,
                result_cache,
            }),
            _ => Err(problems),
        }
    }

    /// The column with this name.
    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// `domain.name`.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.domain, self.name)
    }

    /// The contract's version (validated as semver when the manifest was parsed).
    pub fn semver(&self) -> Result<semver::Version, semver::Error> {
        semver::Version::parse(self.version.trim())
    }

    /// The quality rule with this name.
    pub fn quality_rule(&self, name: &str) -> Option<&QualityRule> {
        self.quality.iter().find(|r| r.name == name)
    }

    /// Columns of the primary key, in contract order.
    pub fn primary_key(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|c| c.primary_key)
            .map(|c| c.name.as_str())
            .collect()
    }
}

/// `[a-z][a-z0-9_]*`: the names meshql accepts for domains, products and columns, so that they
/// never need quoting in SQL.
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && s.len() <= 128
}

/// Parses `90s`, `30m`, `24h`, `7d` into seconds.
pub(crate) fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: u64 = s[..s.len() - unit.len_utf8()].trim().parse().ok()?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(mult).filter(|v| *v > 0)
}

/// Reads typed fields out of a TOML table, recording a [`Problem`] for each missing or
/// mistyped one instead of stopping at the first.
pub(crate) struct Fields<'a> {
    file: &'a Path,
    prefix: String,
    table: &'a toml::Table,
    problems: &'a RefCell<Vec<Problem>>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(
        file: &'a Path,
        prefix: &str,
        table: &'a toml::Table,
        problems: &'a RefCell<Vec<Problem>>,
    ) -> Self {
        Self {
            file,
            prefix: prefix.to_string(),
            table,
            problems,
        }
    }

    fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    pub(crate) fn problem(&self, key: &str, message: impl Into<String>) {
        self.problems
            .borrow_mut()
            .push(Problem::new(self.file, self.path(key), message));
    }

    /// Records a problem for every key not in `known`.
    pub(crate) fn known(&mut self, known: &[&str]) {
        for key in self.table.keys() {
            if !known.contains(&key.as_str()) {
                self.problem(
                    key,
                    format!(
                        "unknown field `{key}` (expected one of: {})",
                        known.join(", ")
                    ),
                );
            }
        }
    }

    pub(crate) fn string(&self, key: &str) -> Option<String> {
        match self.table.get(key)? {
            toml::Value::String(s) => Some(s.clone()),
            other => {
                self.problem(
                    key,
                    format!("expected a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    pub(crate) fn required_string(&self, key: &str) -> Option<String> {
        if !self.table.contains_key(key) {
            self.problem(key, "missing required field");
            return None;
        }
        let s = self.string(key)?;
        if s.trim().is_empty() {
            self.problem(key, "must not be empty");
            return None;
        }
        Some(s)
    }

    /// The raw value of `key`, if present.
    pub(crate) fn value(&self, key: &str) -> Option<&'a toml::Value> {
        self.table.get(key)
    }

    /// `deprecated = "reason"` with an optional `sunset = "YYYY-MM-DD"` (or a TOML date).
    pub(crate) fn deprecation(&self) -> Option<Deprecation> {
        let reason = match self.table.get("deprecated") {
            None => None,
            Some(toml::Value::String(s)) if s.trim().is_empty() => {
                self.problem(
                    "deprecated",
                    "must say why, and what to use instead (e.g. \"use orders_v2 instead\")",
                );
                None
            }
            Some(toml::Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.problem(
                    "deprecated",
                    format!(
                        "expected the reason as a string (e.g. \"use orders_v2 instead\"), found {}",
                        other.type_str()
                    ),
                );
                None
            }
        };
        let sunset = match self.table.get("sunset") {
            None => None,
            Some(v) => {
                let text = match v {
                    toml::Value::String(s) => Some(s.trim().to_string()),
                    toml::Value::Datetime(d) if d.time.is_none() && d.offset.is_none() => {
                        Some(d.to_string())
                    }
                    _ => None,
                };
                match text.and_then(|t| NaiveDate::parse_from_str(&t, "%Y-%m-%d").ok()) {
                    Some(d) => Some(d),
                    None => {
                        let shown = v
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string());
                        self.problem(
                            "sunset",
                            format!("`{shown}` is not a date such as \"2026-06-30\" (YYYY-MM-DD)"),
                        );
                        None
                    }
                }
            }
        };
        if self.table.contains_key("sunset") && !self.table.contains_key("deprecated") {
            self.problem(
                "sunset",
                "a sunset date needs `deprecated = \"reason; use X instead\"`",
            );
        }
        reason.map(|reason| Deprecation { reason, sunset })
    }

    pub(crate) fn bool(&self, key: &str) -> Option<bool> {
        match self.table.get(key)? {
            toml::Value::Boolean(b) => Some(*b),
            other => {
                self.problem(
                    key,
                    format!("expected true or false, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// A duration given as `"12h"` or as a number of seconds.
    pub(crate) fn duration_secs(&self, key: &str) -> Option<u64> {
        match self.table.get(key)? {
            toml::Value::Integer(i) if *i > 0 => Some(*i as u64),
            toml::Value::String(s) => parse_duration(s).or_else(|| {
                self.problem(
                    key,
                    format!("`{s}` is not a duration such as `30m`, `12h` or `7d`"),
                );
                None
            }),
            other => {
                self.problem(
                    key,
                    format!("expected a duration such as \"12h\", found {other}"),
                );
                None
            }
        }
    }

    /// A size given as `"512MiB"`, `"4GiB"`, `"1GB"` or as a number of bytes; more than 0.
    pub(crate) fn byte_size(&self, key: &str) -> Option<u64> {
        let parsed = match self.table.get(key)? {
            toml::Value::Integer(i) if *i > 0 => Some(*i as u64),
            toml::Value::String(s) => s.trim().parse::<bytesize::ByteSize>().ok().map(|b| b.0),
            _ => None,
        };
        match parsed {
            Some(n) if n > 0 => Some(n),
            _ => {
                let found = self
                    .table
                    .get(key)
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                self.problem(
                    key,
                    format!("expected a size such as \"512MiB\" or \"4GiB\" (more than 0), found {found}"),
                );
                None
            }
        }
    }

    /// A size as [`Self::byte_size`] takes it, where 0 (`0` or `"0B"`) is allowed: "none".
    pub(crate) fn byte_size_or_zero(&self, key: &str) -> Option<u64> {
        match self.table.get(key)? {
            toml::Value::Integer(0) => Some(0),
            toml::Value::String(s)
                if s.trim().parse::<bytesize::ByteSize>().ok() == Some(bytesize::ByteSize(0)) =>
            {
                Some(0)
            }
            _ => self.byte_size(key),
        }
    }

    /// A duration given as `"30s"`, `"15m"`, `"1h 30m"` or as a number of seconds; 0 allowed.
    pub(crate) fn duration(&self, key: &str) -> Option<std::time::Duration> {
        match self.table.get(key)? {
            toml::Value::Integer(i) if *i >= 0 => Some(std::time::Duration::from_secs(*i as u64)),
            toml::Value::String(s) => humantime::parse_duration(s.trim()).ok().or_else(|| {
                self.problem(
                    key,
                    format!("`{s}` is not a duration such as \"30s\", \"15m\" or \"1h\""),
                );
                None
            }),
            other => {
                self.problem(
                    key,
                    format!("expected a duration such as \"30s\", found {other}"),
                );
                None
            }
        }
    }

    pub(crate) fn positive_int(&self, key: &str) -> Option<usize> {
        match self.table.get(key)? {
            toml::Value::Integer(i) if *i > 0 => Some(*i as usize),
            other => {
                self.problem(key, format!("expected a positive integer, found {other}"));
                None
            }
        }
    }

    pub(crate) fn string_list(&self, key: &str) -> Option<Vec<String>> {
        match self.table.get(key)? {
            toml::Value::Array(items) => {
                let mut out = Vec::new();
                for (i, v) in items.iter().enumerate() {
                    match v.as_str() {
                        Some(s) => out.push(s.to_string()),
                        None => self.problem(
                            &format!("{key}[{i}]"),
                            format!("expected a string, found {}", v.type_str()),
                        ),
                    }
                }
                Some(out)
            }
            other => {
                self.problem(
                    key,
                    format!("expected a list of strings, found {}", other.type_str()),
                );
                None
            }
        }
    }

    pub(crate) fn string_map(
        &self,
        key: &str,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        match self.table.get(key)? {
            toml::Value::Table(t) => {
                let mut out = std::collections::BTreeMap::new();
                for (k, v) in t {
                    match v.as_str() {
                        Some(s) => {
                            out.insert(k.clone(), s.to_string());
                        }
                        None => self.problem(
                            &format!("{key}.{k}"),
                            format!("expected a string, found {}", v.type_str()),
                        ),
                    }
                }
                Some(out)
            }
            other => {
                self.problem(
                    key,
                    format!("expected a table of strings, found {}", other.type_str()),
                );
                None
            }
        }
    }

    pub(crate) fn table(&self, key: &str) -> Option<&'a toml::Table> {
        match self.table.get(key)? {
            toml::Value::Table(t) => Some(t),
            other => {
                self.problem(key, format!("expected a table, found {}", other.type_str()));
                None
            }
        }
    }

    /// `[[key]]` entries; a problem when `required` and absent or empty.
    pub(crate) fn array_of_tables(&self, key: &str, required: bool) -> Vec<&'a toml::Table> {
        match self.table.get(key) {
            None => {
                if required {
                    self.problem(key, format!("missing required list `[[{key}]]`"));
                }
                Vec::new()
            }
            Some(toml::Value::Array(items)) => {
                if required && items.is_empty() {
                    self.problem(key, format!("`[[{key}]]` must have at least one entry"));
                }
                let mut out = Vec::new();
                for (i, v) in items.iter().enumerate() {
                    match v {
                        toml::Value::Table(t) => out.push(t),
                        other => self.problem(
                            &format!("{key}[{i}]"),
                            format!("expected a table, found {}", other.type_str()),
                        ),
                    }
                }
                out
            }
            Some(other) => {
                self.problem(
                    key,
                    format!("expected `[[{key}]]` entries, found {}", other.type_str()),
                );
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        name = "orders"
        domain = "sales"
        version = "1.0.0"
        description = "One row per order."
        owner = "sales-data@example.com"
        format = "delta"
        location = "orders"
        tags = ["core"]
        [sla]
        freshness = "24h"
        [[schema]]
        name = "order_id"
        type = "bigint"
        primary_key = true
        description = "Order key."
        [[schema]]
        name = "email"
        type = "string"
        classification = "pii"
    "#;

    #[test]
    fn parses_a_good_manifest() {
        let m = ProductManifest::parse(Path::new("orders.toml"), GOOD).unwrap();
        assert_eq!(m.format, Format::Delta);
        assert_eq!(m.sla.freshness, Some(("24h".to_string(), 86_400)));
        assert!(!m.columns[0].nullable && m.columns[0].primary_key);
        assert!(m.columns[1].nullable);
        assert_eq!(
            m.column("email").unwrap().classification.as_deref(),
            Some("pii")
        );
    }

    #[test]
    fn reports_all_three_mistakes() {
        let text = GOOD
            .replace("format = \"delta\"", "format = \"csv\"")
            .replace("type = \"bigint\"", "type = \"bigit\"")
            .replace("version = \"1.0.0\"", "version = \"one\"");
        let problems = ProductManifest::parse(Path::new("orders.toml"), &text).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["version", "format", "schema[0].type"],
            "{problems:#?}"
        );
        assert!(problems.iter().all(|p| p.file == Path::new("orders.toml")));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("7d"), Some(604_800));
        assert_eq!(parse_duration("7w"), None);
        assert_eq!(parse_duration("h"), None);
    }

    /// A manifest with one column of each kind of type; `top` goes before the first table,
    /// `tables` after the schema.
    fn contract(top: &str, tables: &str) -> String {
        format!(
            r#"
            name = "orders"
            domain = "sales"
            version = "1.0.0"
            owner = "o@x"
            format = "delta"
            location = "orders"
            {top}
            [[schema]]
            name = "order_id"
            type = "bigint"
            primary_key = true
            [[schema]]
            name = "status"
            type = "string"
            [[schema]]
            name = "total"
            type = "decimal(12,2)"
            [[schema]]
            name = "order_ts"
            type = "timestamp"
            [[schema]]
            name = "order_date"
            type = "date"
            [[schema]]
            name = "score"
            type = "double"
            [[schema]]
            name = "raw"
            type = "binary"
            {tables}
            "#
        )
    }

    fn rule(body: &str) -> String {
        contract("", &format!("[[quality]]\n{body}"))
    }

    #[test]
    fn every_new_field_problem_names_its_field() {
        let q = |b: &str| rule(&format!("name = \"r\"\n{b}"));
        let cases: Vec<(&str, String, &str, &str)> = vec![
            // (what, manifest, field, message fragment)
            ("rule missing", q("column = \"status\""), "quality[0].rule", "missing required field"),
            ("unknown rule", q("rule = \"regex\""), "quality[0].rule", "unknown rule `regex`"),
            ("name missing", rule("rule = \"row_count\"\nmin = 1"), "quality[0].name", "missing required field"),
            ("bad name", rule("name = \"Bad Name\"\nrule = \"row_count\"\nmin = 1"), "quality[0].name", "not a valid rule name"),
            ("duplicate name", contract("", "[[quality]]\nname = \"r\"\nrule = \"row_count\"\nmin = 1\n[[quality]]\nname = \"r\"\nrule = \"row_count\"\nmax = 9"), "quality[1].name", "declared more than once"),
            ("bad severity", q("rule = \"row_count\"\nmin = 1\nseverity = \"fatal\""), "quality[0].severity", "expected `error` or `warning`"),
            ("not_null unknown column", q("rule = \"not_null\"\ncolumn = \"nope\""), "quality[0].column", "no column `nope`"),
            ("not_null missing column", q("rule = \"not_null\""), "quality[0].column", "missing required field"),
            ("key of another kind", q("rule = \"not_null\"\ncolumn = \"status\"\nvalues = [\"a\"]"), "quality[0].values", "unknown field `values`"),
            ("unique empty", q("rule = \"unique\"\ncolumns = []"), "quality[0].columns", "at least one column"),
            ("unique both", q("rule = \"unique\"\ncolumn = \"status\"\ncolumns = [\"status\"]"), "quality[0].columns", "not both"),
            ("unique unknown", q("rule = \"unique\"\ncolumns = [\"status\", \"nope\"]"), "quality[0].columns", "no column `nope`"),
            ("unique twice", q("rule = \"unique\"\ncolumns = [\"status\", \"status\"]"), "quality[0].columns", "listed twice"),
            ("unique nothing", q("rule = \"unique\""), "quality[0].columns", "missing required field"),
            ("accepted_values empty", q("rule = \"accepted_values\"\ncolumn = \"status\"\nvalues = []"), "quality[0].values", "at least one value"),
            ("accepted_values missing", q("rule = \"accepted_values\"\ncolumn = \"status\""), "quality[0].values", "missing required field"),
            ("accepted_values not a list", q("rule = \"accepted_values\"\ncolumn = \"status\"\nvalues = \"a\""), "quality[0].values", "expected a list"),
            ("accepted_values on double", q("rule = \"accepted_values\"\ncolumn = \"score\"\nvalues = [1.0]"), "quality[0].column", "`score` is double"),
            ("accepted_values wrong type", q("rule = \"accepted_values\"\ncolumn = \"status\"\nvalues = [\"a\", 2]"), "quality[0].values[1]", "expected a string value"),
            ("range on string", q("rule = \"range\"\ncolumn = \"status\"\nmin = \"a\""), "quality[0].column", "`status` is string"),
            ("range on binary", q("rule = \"range\"\ncolumn = \"raw\"\nmin = 1"), "quality[0].column", "`raw` is binary"),
            ("range without bounds", q("rule = \"range\"\ncolumn = \"total\""), "quality[0].min", "needs `min`, `max` or both"),
            ("range inverted", q("rule = \"range\"\ncolumn = \"total\"\nmin = 10\nmax = \"9.99\""), "quality[0].max", "below min"),
            ("range inverted dates", q("rule = \"range\"\ncolumn = \"order_date\"\nmin = 2024-02-01\nmax = \"2024-01-31\""), "quality[0].max", "below min"),
            ("range bad decimal", q("rule = \"range\"\ncolumn = \"total\"\nmin = \"ten\""), "quality[0].min", "not a decimal number"),
            ("range decimal scale", q("rule = \"range\"\ncolumn = \"total\"\nmax = 0.001"), "quality[0].max", "decimal place"),
            ("range bad timestamp", q("rule = \"range\"\ncolumn = \"order_ts\"\nmax = \"yesterday\""), "quality[0].max", "not a timestamp"),
            ("range integer overflow", q("rule = \"range\"\ncolumn = \"order_id\"\nmin = 1.5"), "quality[0].min", "expected a bigint value"),
            ("row_count negative", q("rule = \"row_count\"\nmin = -1"), "quality[0].min", "non-negative integer"),
            ("row_count empty", q("rule = \"row_count\""), "quality[0].min", "needs `min`, `max` or both"),
            ("row_count inverted", q("rule = \"row_count\"\nmin = 10\nmax = 2"), "quality[0].max", "below min"),
            ("row_count with column", q("rule = \"row_count\"\nmin = 1\ncolumn = \"status\""), "quality[0].column", "unknown field `column`"),
            ("freshness on bigint", q("rule = \"freshness\"\ncolumn = \"order_id\"\nmax_age = \"1d\""), "quality[0].column", "`order_id` is bigint"),
            ("freshness bad age", q("rule = \"freshness\"\ncolumn = \"order_ts\"\nmax_age = \"soon\""), "quality[0].max_age", "not a duration"),
            ("freshness no age", q("rule = \"freshness\"\ncolumn = \"order_ts\""), "quality[0].max_age", "missing required field"),
            ("sql empty", q("rule = \"sql\"\npredicate = \"  \""), "quality[0].predicate", "must not be empty"),
            ("sql missing", q("rule = \"sql\""), "quality[0].predicate", "missing required field"),
            ("sql with column", q("rule = \"sql\"\npredicate = \"total > 0\"\ncolumn = \"total\""), "quality[0].column", "unknown field `column`"),
            ("quality not tables", contract("quality = 1", ""), "quality", "expected `[[quality]]` entries"),
            // Deprecation
            ("deprecated bool", contract("deprecated = true", ""), "deprecated", "expected the reason as a string"),
            ("deprecated empty", contract("deprecated = \" \"", ""), "deprecated", "must say why"),
            ("sunset alone", contract("sunset = \"2026-01-01\"", ""), "sunset", "needs `deprecated"),
            ("sunset bad", contract("deprecated = \"use v2\"\nsunset = \"next year\"", ""), "sunset", "YYYY-MM-DD"),
            ("sunset impossible", contract("deprecated = \"use v2\"\nsunset = \"2026-02-30\"", ""), "sunset", "YYYY-MM-DD"),
            ("column deprecated bool", contract("", "").replace("name = \"status\"", "name = \"status\"\ndeprecated = 1"), "schema[1].deprecated", "expected the reason"),
            ("column sunset bad", contract("", "").replace("name = \"status\"", "name = \"status\"\ndeprecated = \"use state\"\nsunset = 20260101"), "schema[1].sunset", "YYYY-MM-DD"),
            // SLA
            ("on_breach unknown", contract("", "[sla]\nfreshness = \"1h\"\non_breach = \"block\""), "sla.on_breach", "expected `warn` or `refuse`"),
            ("on_breach without freshness", contract("", "[sla]\non_breach = \"refuse\""), "sla.on_breach", "without `freshness`"),
            ("sla unknown key", contract("", "[sla]\nfreshness = \"1h\"\nbreach = \"refuse\""), "sla.breach", "unknown field"),
            // Version
            ("version two parts", contract("", "").replace("\"1.0.0\"", "\"1.0\""), "version", "not a semantic version"),
            ("version leading zero", contract("", "").replace("\"1.0.0\"", "\"01.0.0\""), "version", "not a semantic version"),
            // Inputs
            ("input not qualified", contract("", "[[inputs]]\nproduct = \"orders\""), "inputs[0].product", "expected `domain.product`"),
            ("input itself", contract("", "[[inputs]]\nproduct = \"sales.orders\""), "inputs[0].product", "cannot be an input of itself"),
            ("input twice", contract("", "[[inputs]]\nproduct = \"crm.people\"\n[[inputs]]\nproduct = \"crm.people\""), "inputs[1].product", "more than once"),
            ("input missing product", contract("", "[[inputs]]\ndescription = \"x\""), "inputs[0].product", "missing required field"),
            ("input unknown key", contract("", "[[inputs]]\nproduct = \"crm.people\"\ncolumn = {}"), "inputs[0].column", "unknown field"),
            ("input mapping unknown column", contract("", "[[inputs]]\nproduct = \"crm.people\"\ncolumns = { nope = [\"id\"] }"), "inputs[0].columns.nope", "no column `nope`"),
            ("input mapping empty", contract("", "[[inputs]]\nproduct = \"crm.people\"\ncolumns = { status = [] }"), "inputs[0].columns.status", "at least one column"),
            ("input mapping number", contract("", "[[inputs]]\nproduct = \"crm.people\"\ncolumns = { status = 3 }"), "inputs[0].columns.status", "as a string or a list"),
            ("input mapping bad name", contract("", "[[inputs]]\nproduct = \"crm.people\"\ncolumns = { status = [\"Bad\"] }"), "inputs[0].columns.status", "not a valid column name"),
            ("input mapping not a table", contract("", "[[inputs]]\nproduct = \"crm.people\"\ncolumns = [\"a\"]"), "inputs[0].columns", "expected a table"),
        ];
        for (what, text, field, fragment) in cases {
            let problems = ProductManifest::parse(Path::new("orders.toml"), &text).expect_err(what);
            assert_eq!(problems.len(), 1, "{what}: {problems:#?}");
            assert_eq!(problems[0].field, field, "{what}: {problems:#?}");
            assert!(
                problems[0].message.contains(fragment),
                "{what}: `{}` lacks `{fragment}`",
                problems[0].message
            );
            assert_eq!(problems[0].file, Path::new("orders.toml"), "{what}");
        }
    }

    #[test]
    fn parses_every_new_field_into_typed_structs() {
        use crate::quality::{QualityKind, Severity};
        let text = contract(
            "deprecated = \"use sales.orders_v2 instead\"\nsunset = 2026-06-30",
            r#"
            [sla]
            freshness = "6h"
            on_breach = "refuse"
            [[quality]]
            name = "id_not_null"
            rule = "not_null"
            column = "order_id"
            [[quality]]
            name = "id_unique"
            rule = "unique"
            columns = ["order_id", "status"]
            severity = "warning"
            description = "One row per order and status."
            [[quality]]
            name = "status_known"
            rule = "accepted_values"
            column = "status"
            values = ["open", "shipped"]
            [[quality]]
            name = "total_range"
            rule = "range"
            column = "total"
            min = 0
            max = "1000000.00"
            [[quality]]
            name = "ts_range"
            rule = "range"
            column = "order_ts"
            min = 2020-01-01T00:00:00Z
            [[quality]]
            name = "rows"
            rule = "row_count"
            min = 1
            [[quality]]
            name = "fresh"
            rule = "freshness"
            column = "order_ts"
            max_age = "26h"
            [[quality]]
            name = "positive"
            rule = "sql"
            predicate = "total >= 0"
            [[inputs]]
            product = "crm.people"
            description = "who ordered"
            columns = { status = "state", total = ["price", "quantity"] }
            [[inputs]]
            product = "shipping.shipments"
            "#,
        )
        .replace(
            "name = \"status\"",
            "name = \"status\"\ndeprecated = \"use state\"",
        );
        let m = ProductManifest::parse(Path::new("orders.toml"), &text)
            .unwrap_or_else(|p| panic!("{p:#?}"));
        let dep = m.deprecated.as_ref().unwrap();
        assert_eq!(dep.reason, "use sales.orders_v2 instead");
        assert_eq!(
            dep.to_string(),
            "use sales.orders_v2 instead (sunset 2026-06-30)"
        );
        assert_eq!(
            m.column("status").unwrap().deprecated,
            Some(Deprecation {
                reason: "use state".into(),
                sunset: None
            })
        );
        assert!(m.column("total").unwrap().deprecated.is_none());
        assert_eq!(m.sla.on_breach, OnBreach::Refuse);
        assert!(m.sla.is_breached(6 * 3600 + 1));
        assert!(!m.sla.is_breached(6 * 3600));
        assert_eq!(m.quality.len(), 8);
        assert_eq!(m.quality[0].severity, Severity::Error, "default severity");
        assert_eq!(m.quality[1].severity, Severity::Warning);
        assert_eq!(
            m.quality[1].kind,
            QualityKind::Unique {
                columns: vec!["order_id".into(), "status".into()]
            }
        );
        let QualityKind::AcceptedValues { values, .. } = &m.quality[2].kind else {
            panic!("{:?}", m.quality[2])
        };
        assert_eq!(
            values.iter().map(|v| v.to_sql()).collect::<Vec<_>>(),
            ["'open'", "'shipped'"]
        );
        let QualityKind::Range { min, max, .. } = &m.quality[3].kind else {
            panic!()
        };
        assert_eq!(min.as_ref().unwrap().text, "0");
        assert_eq!(max.as_ref().unwrap().text, "1000000.00");
        let QualityKind::Range { min, max, .. } = &m.quality[4].kind else {
            panic!()
        };
        assert_eq!(min.as_ref().unwrap().text, "2020-01-01T00:00:00Z");
        assert!(max.is_none());
        assert_eq!(
            m.quality[5].kind,
            QualityKind::RowCount {
                min: Some(1),
                max: None
            }
        );
        assert_eq!(
            m.quality[6].kind,
            QualityKind::Freshness {
                column: "order_ts".into(),
                max_age: "26h".into(),
                max_age_secs: 26 * 3600
            }
        );
        assert_eq!(
            m.quality[6].kind.to_string(),
            "freshness(order_ts, max_age 26h)"
        );
        assert_eq!(m.quality[7].kind.rule(), "sql");
        assert_eq!(m.inputs.len(), 2);
        assert_eq!(m.inputs[0].qualified_name(), "crm.people");
        assert_eq!(m.inputs[0].columns["status"], ["state"]);
        assert_eq!(m.inputs[0].columns["total"], ["price", "quantity"]);
        assert!(m.inputs[1].columns.is_empty());
        assert_eq!(m.semver().unwrap(), semver::Version::new(1, 0, 0));
        assert_eq!(m.primary_key(), ["order_id"]);
    }

    #[test]
    fn defaults_without_the_new_fields() {
        let m = ProductManifest::parse(
            Path::new("o.toml"),
            &contract("", "[sla]\nfreshness = \"1h\""),
        )
        .unwrap();
        assert_eq!(m.sla.on_breach, OnBreach::Warn);
        assert!(m.deprecated.is_none() && m.quality.is_empty() && m.inputs.is_empty());
        assert!(m.columns.iter().all(|c| c.deprecated.is_none()));
        assert!(!Sla::default().is_breached(u64::MAX), "no SLA, no breach");
    }

    #[test]
    fn a_broken_column_is_reported_once() {
        let text = contract(
            "",
            "[[quality]]\nname = \"a\"\nrule = \"not_null\"\ncolumn = \"total\"\n\
             [[quality]]\nname = \"b\"\nrule = \"unique\"\ncolumns = [\"total\"]\n\
             [[inputs]]\nproduct = \"crm.people\"\ncolumns = { total = \"x\" }",
        )
        .replace("decimal(12,2)", "decimal(99,2)");
        let problems = ProductManifest::parse(Path::new("o.toml"), &text).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].field, "schema[2].type");
    }

    #[test]
    fn several_problems_in_new_fields_are_all_reported() {
        let text = contract(
            "sunset = \"x\"",
            "[sla]\non_breach = \"never\"\n[[quality]]\nname = \"a\"\nrule = \"range\"\ncolumn = \"status\"\n[[inputs]]\nproduct = \"nodot\"",
        );
        let problems = ProductManifest::parse(Path::new("o.toml"), &text).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "sla.on_breach",
                "sla.on_breach",
                "sunset",
                "sunset",
                "quality[0].column",
                "inputs[0].product"
            ],
            "{problems:#?}"
        );
    }
}
