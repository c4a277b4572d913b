//! Product manifests: one TOML file per data product, holding its contract.
//!
//! The shape is inspired by the Open Data Contract Standard: identity (name, domain, version),
//! ownership, physical format and location, the schema of public columns with descriptions,
//! classifications and primary key, a freshness SLA and tags. See `docs/catalog.md`.

use std::cell::RefCell;
use std::path::Path;

use crate::error::Problem;
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

/// Service levels a product promises.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sla {
    /// Maximum age of the newest data, as written (`24h`), and in seconds.
    pub freshness: Option<(String, u64)>,
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
            if !is_semver(v) {
                f.problem(
                    "version",
                    format!("`{v}` is not a semantic version such as `1.2.0`"),
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
                s.known(&["freshness"]);
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
                Sla { freshness }
            }
            None => Sla::default(),
        };
        let mut columns = Vec::new();
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
            if let (Some(name), Some(ty)) = (name, ty) {
                columns.push(ColumnSpec {
                    name,
                    ty,
                    nullable,
                    description,
                    classification,
                    primary_key,
                });
            }
        }
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
            }),
            _ => Err(problems),
        }
    }

    /// The column with this name.
    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.iter().find(|c| c.name == name)
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

fn is_semver(s: &str) -> bool {
    let core = s.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
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
}
