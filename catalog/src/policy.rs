//! The policy model: who may read which product, column and row.
//!
//! Policies are federated as in a data mesh:
//! - **global** policies (`<catalog.dir>/_global/policies.toml`) are owned by the platform:
//!   grants across domains and masks by column classification (e.g. `pii`). No domain can
//!   weaken them.
//! - **domain** policies (`<catalog.dir>/<domain>/policies.toml`) are kept by each domain for its
//!   own products: grants, row filters and column masks.
//!
//! Deny by default: a principal sees a product only through a grant, or by being a member of
//! the product's domain (holding the group named after the domain). This module decides
//! *what* applies to a principal; the engine turns row filters and masks (SQL text) into plans.
//! See `docs/access.md`.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::Problem;
use crate::manifest::{is_identifier, Fields, ProductManifest};
use crate::principal::Principal;

/// Who a rule is for: `*` (every authenticated principal), `user:NAME` or `group:NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Everyone,
    User(String),
    Group(String),
}

impl Selector {
    fn parse(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            _ if s == "*" => Ok(Selector::Everyone),
            Some(("user", n)) if !n.is_empty() => Ok(Selector::User(n.to_string())),
            Some(("group", n)) if !n.is_empty() => Ok(Selector::Group(n.to_string())),
            _ => Err(format!(
                "`{s}` is not a principal selector: use `*`, `user:NAME` or `group:NAME`"
            )),
        }
    }

    pub fn matches(&self, p: &Principal) -> bool {
        match self {
            Selector::Everyone => true,
            Selector::User(u) => &p.user == u,
            Selector::Group(g) => p.has_group(g),
        }
    }
}

fn any_matches(selectors: &[Selector], p: &Principal) -> bool {
    selectors.iter().any(|s| s.matches(p))
}

/// A grant: `to` may read `products` (of `domains`, for global grants), optionally only some
/// columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub to: Vec<Selector>,
    /// Domains the grant covers (`*` = all). Domain grants cover their own domain only.
    pub domains: Vec<String>,
    /// Product names (`*` = every product of the covered domains).
    pub products: Vec<String>,
    /// When set, only these columns are visible through this grant.
    pub columns: Option<Vec<String>>,
}

impl Grant {
    fn covers(&self, domain: &str, product: &str) -> bool {
        (self.domains.iter().any(|d| d == "*" || d == domain))
            && self.products.iter().any(|p| p == "*" || p == product)
    }
}

/// A row filter: rows of `product` for which `predicate` is not true are hidden from the
/// principals it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFilter {
    pub name: String,
    pub domain: String,
    pub product: String,
    pub applies_to: Vec<Selector>,
    pub unless: Vec<Selector>,
    /// SQL predicate over the product's columns; `${principal.ATTR}` and `${principal.user}`
    /// are replaced by the principal's values as SQL literals (NULL when absent).
    pub predicate: String,
    pub file: PathBuf,
}

impl RowFilter {
    pub fn applies(&self, p: &Principal) -> bool {
        any_matches(&self.applies_to, p) && !any_matches(&self.unless, p)
    }
}

/// What a mask targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskTarget {
    /// One column of one product (domain masks).
    Column { product: String, column: String },
    /// Every column with this classification, in every domain (global masks).
    Classification(String),
}

/// A column mask: the principals it applies to see `expression` instead of the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    pub name: String,
    pub target: MaskTarget,
    pub applies_to: Vec<Selector>,
    pub unless: Vec<Selector>,
    /// SQL expression of the column's type; `${column}` stands for the masked column.
    pub expression: String,
    /// True for platform (global) masks.
    pub global: bool,
    pub file: PathBuf,
}

impl Mask {
    pub fn applies(&self, p: &Principal) -> bool {
        any_matches(&self.applies_to, p) && !any_matches(&self.unless, p)
    }
}

/// The policies of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySet {
    pub grants: Vec<Grant>,
    pub row_filters: Vec<RowFilter>,
    pub masks: Vec<Mask>,
}

/// All policies of a mesh.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policies {
    pub global: PolicySet,
    /// Per domain, in configuration order.
    pub domains: Vec<(String, PolicySet)>,
}

/// How one visible column reaches a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnAccess<'a> {
    Clear,
    Masked(&'a Mask),
}

/// What a principal may read of one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductAccess<'a> {
    /// Visible columns in contract order, each clear or masked. Denied columns are absent.
    pub columns: Vec<(&'a str, ColumnAccess<'a>)>,
    /// Row filters to AND together, evaluated before anything else.
    pub row_filters: Vec<&'a RowFilter>,
}

impl ProductAccess<'_> {
    /// True when the principal reads the product unchanged (all columns, no filter, no mask).
    pub fn is_unrestricted(&self, manifest: &ProductManifest) -> bool {
        self.row_filters.is_empty()
            && self.columns.len() == manifest.columns.len()
            && self.columns.iter().all(|(_, a)| *a == ColumnAccess::Clear)
    }

    /// Names of the policies that shape this access, for audit records.
    pub fn policy_names(&self) -> Vec<String> {
        let mut out: BTreeSet<String> = self.row_filters.iter().map(|f| f.name.clone()).collect();
        for (_, a) in &self.columns {
            if let ColumnAccess::Masked(m) = a {
                out.insert(m.name.clone());
            }
        }
        out.into_iter().collect()
    }
}

impl Policies {
    fn domain(&self, name: &str) -> Option<&PolicySet> {
        self.domains.iter().find(|(d, _)| d == name).map(|(_, p)| p)
    }

    /// Decides what `principal` may read of `manifest`; `None` means the product is invisible.
    pub fn access<'a>(
        &'a self,
        principal: &Principal,
        manifest: &'a ProductManifest,
    ) -> Option<ProductAccess<'a>> {
        let domain = manifest.domain.as_str();
        let product = manifest.name.as_str();
        let member = principal.has_group(domain);
        let domain_policies = self.domain(domain);
        let grants = self
            .global
            .grants
            .iter()
            .chain(domain_policies.into_iter().flat_map(|d| d.grants.iter()))
            .filter(|g| g.covers(domain, product) && any_matches(&g.to, principal));
        let mut all_columns = member;
        let mut granted: BTreeSet<&str> = BTreeSet::new();
        let mut visible = member;
        for g in grants {
            visible = true;
            match &g.columns {
                None => all_columns = true,
                Some(cols) => granted.extend(cols.iter().map(String::as_str)),
            }
        }
        if !visible {
            return None;
        }
        let columns = manifest
            .columns
            .iter()
            .filter(|c| all_columns || granted.contains(c.name.as_str()))
            .map(|c| {
                // Platform masks first: a domain cannot weaken them.
                let global = self.global.masks.iter().find(|m| {
                    matches!(&m.target, MaskTarget::Classification(cl) if c.classification.as_deref() == Some(cl.as_str()))
                        && m.applies(principal)
                });
                let local = || {
                    domain_policies?.masks.iter().find(|m| {
                        matches!(&m.target, MaskTarget::Column { product: p, column } if p == product && column == &c.name)
                            && m.applies(principal)
                    })
                };
                let access = match global.or_else(local) {
                    Some(m) => ColumnAccess::Masked(m),
                    None => ColumnAccess::Clear,
                };
                (c.name.as_str(), access)
            })
            .collect();
        let row_filters = domain_policies
            .map(|d| {
                d.row_filters
                    .iter()
                    .filter(|f| f.product == product && f.applies(principal))
                    .collect()
            })
            .unwrap_or_default();
        Some(ProductAccess {
            columns,
            row_filters,
        })
    }
}

/// Parses a policy file. `domain` is None for the global file. `products` lists the domain's
/// manifests (for checking references); problems are appended.
pub(crate) fn parse_policy_file(
    file: &Path,
    text: &str,
    domain: Option<&str>,
    products: &[&ProductManifest],
    invalid_products: &[String],
    known_domains: &[&str],
    problems: &RefCell<Vec<Problem>>,
) -> PolicySet {
    let value: toml::Table = match text.parse::<toml::Table>() {
        Ok(v) => v,
        Err(e) => {
            problems.borrow_mut().push(
                Problem::new(file, "", format!("not valid TOML: {}", e.message()))
                    .with_span(text, e.span()),
            );
            return PolicySet::default();
        }
    };
    let mut f = Fields::new(file, "", &value, problems);
    f.known(&["grants", "row_filters", "masks"]);
    let selectors = |fields: &Fields<'_>, key: &str, default_all: bool| -> Vec<Selector> {
        match fields.string_list(key) {
            None if default_all => vec![Selector::Everyone],
            None => Vec::new(),
            Some(list) => list
                .iter()
                .filter_map(|s| match Selector::parse(s) {
                    Ok(sel) => Some(sel),
                    Err(e) => {
                        fields.problem(key, e);
                        None
                    }
                })
                .collect(),
        }
    };
    let product = |fields: &Fields<'_>, name: &str| -> Option<&ProductManifest> {
        let found = products.iter().find(|p| p.name == name).copied();
        // A product whose manifest is broken is reported there, not again here.
        if found.is_none() && !invalid_products.iter().any(|p| p == name) {
            fields.problem(
                "product",
                format!(
                    "unknown product `{name}` in domain `{}`",
                    domain.unwrap_or("?")
                ),
            );
        }
        found
    };
    let mut set = PolicySet::default();
    for (i, t) in f.array_of_tables("grants", false).into_iter().enumerate() {
        let g = Fields::new(file, &format!("grants[{i}]"), t, problems);
        let mut g = g;
        g.known(&["to", "domains", "products", "columns"]);
        let to = selectors(&g, "to", false);
        if to.is_empty() {
            g.problem(
                "to",
                "a grant needs `to = [...]` (`*`, `user:NAME` or `group:NAME`)",
            );
        }
        let domains = match domain {
            Some(d) => {
                if t.contains_key("domains") {
                    g.problem(
                        "domains",
                        "domain grants cover their own domain only; remove `domains`",
                    );
                }
                vec![d.to_string()]
            }
            None => {
                let ds = g
                    .string_list("domains")
                    .unwrap_or_else(|| vec!["*".to_string()]);
                for d in &ds {
                    if d != "*" && !known_domains.contains(&d.as_str()) {
                        g.problem("domains", format!("unknown domain `{d}`"));
                    }
                }
                ds
            }
        };
        let products_list = g
            .string_list("products")
            .unwrap_or_else(|| vec!["*".to_string()]);
        let columns = g.string_list("columns");
        if domain.is_some() {
            for p in products_list.iter().filter(|p| p.as_str() != "*") {
                if let Some(m) = product(&g, p) {
                    for c in columns.iter().flatten() {
                        if m.column(c).is_none() {
                            g.problem(
                                "columns",
                                format!("product `{}` has no column `{c}`", m.name),
                            );
                        }
                    }
                }
            }
        } else if columns.is_some() {
            g.problem(
                "columns",
                "column grants belong in the domain's own policies",
            );
        }
        set.grants.push(Grant {
            to,
            domains,
            products: products_list,
            columns,
        });
    }
    for (i, t) in f
        .array_of_tables("row_filters", false)
        .into_iter()
        .enumerate()
    {
        let mut r = Fields::new(file, &format!("row_filters[{i}]"), t, problems);
        r.known(&["name", "product", "applies_to", "unless", "predicate"]);
        let Some(d) = domain else {
            r.problem("", "row filters belong in the domain's own policies");
            continue;
        };
        let name = r.required_string("name");
        let prod = r.required_string("product");
        let predicate = r.required_string("predicate");
        let applies_to = selectors(&r, "applies_to", true);
        let unless = selectors(&r, "unless", false);
        if let (Some(name), Some(p), Some(predicate)) = (name, prod, predicate) {
            if product(&r, &p).is_some() {
                set.row_filters.push(RowFilter {
                    name,
                    domain: d.to_string(),
                    product: p,
                    applies_to,
                    unless,
                    predicate,
                    file: file.to_path_buf(),
                });
            }
        }
    }
    for (i, t) in f.array_of_tables("masks", false).into_iter().enumerate() {
        let mut m = Fields::new(file, &format!("masks[{i}]"), t, problems);
        m.known(&[
            "name",
            "product",
            "column",
            "classification",
            "applies_to",
            "unless",
            "expression",
        ]);
        let name = m.required_string("name");
        let expression = m.required_string("expression");
        let applies_to = selectors(&m, "applies_to", true);
        let unless = selectors(&m, "unless", false);
        let target = if domain.is_some() {
            if t.contains_key("classification") {
                m.problem(
                    "classification",
                    "masks by classification are global policies",
                );
            }
            match (m.required_string("product"), m.required_string("column")) {
                (Some(p), Some(c)) => match product(&m, &p) {
                    Some(manifest) if manifest.column(&c).is_none() => {
                        m.problem("column", format!("product `{p}` has no column `{c}`"));
                        None
                    }
                    Some(_) => Some(MaskTarget::Column {
                        product: p,
                        column: c,
                    }),
                    None => None,
                },
                _ => None,
            }
        } else {
            if t.contains_key("product") || t.contains_key("column") {
                m.problem(
                    "",
                    "global masks target a `classification`, not a product column",
                );
            }
            m.required_string("classification").and_then(|c| {
                if is_identifier(&c) {
                    Some(MaskTarget::Classification(c))
                } else {
                    m.problem(
                        "classification",
                        format!("`{c}` is not a valid classification"),
                    );
                    None
                }
            })
        };
        if let (Some(name), Some(target), Some(expression)) = (name, target, expression) {
            set.masks.push(Mask {
                name,
                target,
                applies_to,
                unless,
                expression,
                global: domain.is_none(),
                file: file.to_path_buf(),
            });
        }
    }
    set
}

/// Replaces `${principal.user}` and `${principal.ATTR}` by SQL string literals (NULL when the
/// principal has no such attribute), and `${column}` by the quoted column name.
pub fn substitute(template: &str, principal: &Principal, column: Option<&str>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let key = after[..end].trim();
        let replacement = if key == "column" {
            match column {
                Some(c) => format!("\"{}\"", c.replace('"', "\"\"")),
                None => "NULL".to_string(),
            }
        } else if key == "principal.user" {
            sql_literal(&principal.user)
        } else if let Some(attr) = key.strip_prefix("principal.") {
            principal
                .attributes
                .get(attr)
                .map(|v| sql_literal(v))
                .unwrap_or_else(|| "NULL".to_string())
        } else {
            // Unknown placeholders stay as written and fail to parse: fail closed.
            format!("${{{key}}}")
        };
        out.push_str(&replacement);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn sql_literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_quotes_values_and_fails_closed() {
        let p = Principal::new("o'neil").with_attribute("region", "EU");
        assert_eq!(
            substitute("region = ${principal.region}", &p, None),
            "region = 'EU'"
        );
        assert_eq!(
            substitute("owner = ${principal.user}", &p, None),
            "owner = 'o''neil'"
        );
        assert_eq!(
            substitute("country = ${principal.country}", &p, None),
            "country = NULL"
        );
        assert_eq!(
            substitute("left(${column}, 2)", &p, Some("email")),
            "left(\"email\", 2)"
        );
        assert_eq!(substitute("x = ${nope}", &p, None), "x = ${nope}");
    }

    #[test]
    fn selectors() {
        let p = Principal::new("ann").with_group("sales");
        assert!(Selector::parse("group:sales").unwrap().matches(&p));
        assert!(Selector::parse("user:ann").unwrap().matches(&p));
        assert!(!Selector::parse("user:bob").unwrap().matches(&p));
        assert!(Selector::parse("*").unwrap().matches(&p));
        assert!(Selector::parse("role:x").is_err());
    }
}
