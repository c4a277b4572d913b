//! Contract evolution: what changes between the published manifest of a product and a proposed
//! one, which of those changes break consumers, and whether the proposed version says so.
//!
//! Breaking (SPEC section 11, plus the primary key): removing or renaming a column, changing its
//! type other than by a widening, making a non-null column nullable, adding or changing a
//! column's classification (consumers may lose clear access), and a primary key that no longer
//! guarantees what it did. Everything else (added columns, descriptions, owner, tags, SLA,
//! quality rules, lineage, deprecation, format, location) is reported but not breaking: it does
//! not change what a consumer's query may name or receives. Breaking changes need a major
//! version bump; see [`is_major_bump`] and `docs/catalog.md` ("Evolving a contract").

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use semver::Version;

use crate::manifest::{ColumnSpec, Deprecation, ProductManifest};
use crate::types::ColumnType;

/// What kind of change one [`Change`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The proposed manifest names another domain or product (breaking).
    IdentityChanged,
    ColumnAdded,
    /// Breaking.
    ColumnRemoved,
    /// Breaking. Only reported when the pairing is unambiguous (see [`diff`]); otherwise a
    /// rename shows as a removal plus an addition.
    ColumnRenamed,
    /// Columns kept by both versions appear in another order.
    ColumnsReordered,
    /// A type change every old value survives (see [`is_widening`]).
    TypeWidened,
    /// Any other type change (breaking).
    TypeChanged,
    /// A non-null column may now be NULL (breaking).
    NullabilityRelaxed,
    /// A nullable column is now declared non-null.
    NullabilityTightened,
    /// A column gains a classification (breaking: policies on it may mask or hide it).
    ClassificationAdded,
    /// A column's classification changes (breaking).
    ClassificationChanged,
    ClassificationRemoved,
    /// Breaking unless the new key is a non-empty subset of the old one.
    PrimaryKeyChanged,
    ColumnDescriptionChanged,
    ColumnDeprecated,
    ColumnUndeprecated,
    /// The reason or sunset date of a column's deprecation changes.
    ColumnDeprecationChanged,
    DescriptionChanged,
    OwnerChanged,
    TagsChanged,
    FormatChanged,
    LocationChanged,
    /// `sla.freshness` or `sla.on_breach` changes.
    SlaChanged,
    ProductDeprecated,
    ProductUndeprecated,
    ProductDeprecationChanged,
    QualityRuleAdded,
    QualityRuleRemoved,
    QualityRuleChanged,
    InputAdded,
    InputRemoved,
    InputChanged,
}

/// One change between two versions of a contract.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    /// True when the change can break a consumer.
    pub breaking: bool,
    /// The manifest field changed, by name rather than position: `schema.tier`,
    /// `schema.total_amount.type`, `sla.freshness`, `quality.amount_positive`,
    /// `inputs.sales.orders`, `description`...
    pub field: String,
    /// Columns concerned. For a rename: the published name, then the proposed one.
    pub columns: Vec<String>,
    /// The published value, when the change has one (e.g. the old type).
    pub before: Option<String>,
    /// The proposed value.
    pub after: Option<String>,
    /// One sentence for people.
    pub message: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match self.kind {
            _ if self.breaking => '!',
            ChangeKind::ColumnAdded | ChangeKind::QualityRuleAdded | ChangeKind::InputAdded => '+',
            ChangeKind::ColumnRemoved
            | ChangeKind::QualityRuleRemoved
            | ChangeKind::InputRemoved => '-',
            _ => '~',
        };
        write!(f, "{mark} {}", self.message)?;
        if self.breaking {
            f.write_str(" [breaking]")?;
        }
        Ok(())
    }
}

/// The verdict on a proposed version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No published version: a new product.
    New,
    /// Same version, nothing changed.
    Unchanged,
    /// No breaking change, and the version is greater (or unchanged contract with a bump).
    Compatible,
    /// Breaking changes, with the major version bump they need.
    BreakingWithMajorBump,
    /// Breaking changes without a major version bump (refused).
    BreakingWithoutMajorBump,
    /// The contract changed but the version did not (refused: a published version is never
    /// changed in place).
    VersionNotIncreased,
    /// The proposed version is lower than the published one (refused).
    VersionDecreased,
    /// One of the versions is not semver (refused; a loaded manifest never has this).
    InvalidVersion,
}

impl Verdict {
    /// True when the proposed manifest may be published.
    pub fn is_accepted(&self) -> bool {
        matches!(
            self,
            Verdict::New
                | Verdict::Unchanged
                | Verdict::Compatible
                | Verdict::BreakingWithMajorBump
        )
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::New => "new",
            Verdict::Unchanged => "unchanged",
            Verdict::Compatible => "compatible",
            Verdict::BreakingWithMajorBump => "breaking_with_major_bump",
            Verdict::BreakingWithoutMajorBump => "breaking_without_major_bump",
            Verdict::VersionNotIncreased => "version_not_increased",
            Verdict::VersionDecreased => "version_decreased",
            Verdict::InvalidVersion => "invalid_version",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::New => "new product",
            Verdict::Unchanged => "unchanged",
            Verdict::Compatible => "compatible",
            Verdict::BreakingWithMajorBump => "breaking, with a major version bump",
            Verdict::BreakingWithoutMajorBump => "breaking, without a major version bump",
            Verdict::VersionNotIncreased => "changed without a new version",
            Verdict::VersionDecreased => "version goes backwards",
            Verdict::InvalidVersion => "invalid version",
        })
    }
}

/// Everything that changes between the published and the proposed contract of a product, and
/// the verdict. Serializes to JSON for tools; `Display` renders it for people.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContractDiff {
    /// `domain.product` (of the published manifest).
    pub product: String,
    /// None for a new product.
    pub published_version: Option<String>,
    pub proposed_version: String,
    pub verdict: Verdict,
    /// When the verdict refuses the version: the lowest version that would be accepted.
    pub suggested_version: Option<String>,
    pub changes: Vec<Change>,
}

impl ContractDiff {
    /// The diff of a product that has no published version.
    pub fn new_product(proposed: &ProductManifest) -> ContractDiff {
        ContractDiff {
            product: proposed.qualified_name(),
            published_version: None,
            proposed_version: proposed.version.clone(),
            verdict: Verdict::New,
            suggested_version: None,
            changes: Vec::new(),
        }
    }

    /// True when any change is breaking.
    pub fn is_breaking(&self) -> bool {
        self.changes.iter().any(|c| c.breaking)
    }

    /// True when the proposed manifest may be published.
    pub fn is_accepted(&self) -> bool {
        self.verdict.is_accepted()
    }

    /// The breaking changes.
    pub fn breaking_changes(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.breaking)
    }

    /// Columns of the *published* contract touched by a breaking change (removed, renamed,
    /// retyped, made nullable, reclassified, in a changed primary key): the columns whose
    /// readers may break. Sorted, without duplicates.
    pub fn affected_columns(&self) -> Vec<&str> {
        let mut out: BTreeSet<&str> = BTreeSet::new();
        for c in self.breaking_changes() {
            match c.kind {
                ChangeKind::ColumnRenamed => out.extend(c.columns.first().map(String::as_str)),
                // The old key's columns are what readers relied on.
                ChangeKind::PrimaryKeyChanged => out.extend(
                    c.before
                        .iter()
                        .flat_map(|b| b.split(", "))
                        .filter(|s| !s.is_empty() && *s != "none"),
                ),
                _ => out.extend(c.columns.iter().map(String::as_str)),
            }
        }
        out.into_iter().collect()
    }
}

impl fmt::Display for ContractDiff {
    /// ```text
    /// sales.orders: 1.2.0 -> 1.3.0
    ///   ! column `tier` removed [breaking]
    ///   + column `discount` added (decimal(12,2), nullable)
    /// verdict: breaking, without a major version bump (use 2.0.0 or later)
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.published_version {
            Some(v) => writeln!(f, "{}: {v} -> {}", self.product, self.proposed_version)?,
            None => writeln!(
                f,
                "{}: new product at {}",
                self.product, self.proposed_version
            )?,
        }
        if self.changes.is_empty() && self.verdict != Verdict::New {
            writeln!(f, "  (no contract changes)")?;
        }
        for c in &self.changes {
            writeln!(f, "  {c}")?;
        }
        write!(f, "verdict: {}", self.verdict)?;
        if let Some(v) = &self.suggested_version {
            write!(f, " (use {v} or later)")?;
        }
        Ok(())
    }
}

/// True when every value of type `from` can be read as `to` without loss: the widenings Delta
/// Lake's type widening allows. Integers widen to wider integers, integers up to `int` to
/// `double`, any integer to a decimal with enough integer digits, `float` to `double`, a
/// decimal to one whose scale and integer digits are both at least as large, and `date` to
/// `timestamp_ntz`. Nothing else (in particular no change to or from `string`, and not `date`
/// to the UTC `timestamp`, whose value would depend on a time zone).
pub fn is_widening(from: ColumnType, to: ColumnType) -> bool {
    use ColumnType as T;
    fn int_rank(t: ColumnType) -> Option<(u8, u8)> {
        // (rank, decimal digits needed)
        match t {
            T::TinyInt => Some((1, 3)),
            T::SmallInt => Some((2, 5)),
            T::Int => Some((3, 10)),
            T::BigInt => Some((4, 20)),
            _ => None,
        }
    }
    if from == to {
        return false;
    }
    match (from, to) {
        (T::Float, T::Double) | (T::Date, T::TimestampNtz) => true,
        (T::TinyInt | T::SmallInt | T::Int, T::Double) => true,
        (
            T::Decimal {
                precision: p1,
                scale: s1,
            },
            T::Decimal {
                precision: p2,
                scale: s2,
            },
        ) => s2 >= s1 && (i16::from(p2) - i16::from(s2)) >= (i16::from(p1) - i16::from(s1)),
        (i, T::Decimal { precision, scale }) => match int_rank(i) {
            Some((_, digits)) => i16::from(precision) - i16::from(scale) >= i16::from(digits),
            None => false,
        },
        (a, b) => match (int_rank(a), int_rank(b)) {
            (Some((ra, _)), Some((rb, _))) => rb > ra,
            _ => false,
        },
    }
}

/// Semver precedence (build metadata ignored).
fn precedence(a: &Version, b: &Version) -> Ordering {
    (a.major, a.minor, a.patch)
        .cmp(&(b.major, b.minor, b.patch))
        .then_with(|| a.pre.cmp(&b.pre))
}

/// The compatibility class of a version, as Cargo defines it: `1.2.3` -> 1.x, `0.3.1` -> 0.3.x,
/// `0.0.4` -> exactly 0.0.4. Versions in one class promise compatibility with each other.
fn class(v: &Version) -> (u64, u64, u64) {
    if v.major > 0 {
        (v.major, 0, 0)
    } else if v.minor > 0 {
        (0, v.minor, 0)
    } else {
        (0, 0, v.patch)
    }
}

/// True when going from `from` to `to` may carry breaking changes: `to` is greater and leaves
/// `from`'s compatibility class, i.e. a major bump for 1.0.0 and later (`1.4.2` -> `2.0.0`), a
/// minor bump for 0.x (`0.3.1` -> `0.4.0`), and any bump for 0.0.x (`0.0.3` -> `0.0.4`), as in
/// Cargo. A pre-release of the next major counts (`1.4.0` -> `2.0.0-rc.1`); between versions of
/// one class it does not (`2.0.0-rc.1` -> `2.0.0` is not a major bump).
pub fn is_major_bump(from: &Version, to: &Version) -> bool {
    precedence(to, from) == Ordering::Greater && class(to) > class(from)
}

/// The lowest version above `v` that may carry breaking changes.
fn next_major(v: &Version) -> Version {
    match class(v) {
        (0, 0, p) => Version::new(0, 0, p + 1),
        (0, m, _) => Version::new(0, m + 1, 0),
        (m, _, _) => Version::new(m + 1, 0, 0),
    }
}

/// The lowest version above `v` for a compatible change.
fn next_compatible(v: &Version) -> Version {
    if v.pre.is_empty() {
        Version::new(v.major, v.minor, v.patch + 1)
    } else {
        Version::new(v.major, v.minor, v.patch)
    }
}

/// Compares the published contract of a product with a proposed one.
///
/// Columns are matched by name. A removed column and an added one are reported as a rename
/// only when they have the same type, nullability and classification and the same non-empty
/// description, and neither matches any other column that way; otherwise they are a removal
/// and an addition. Both are breaking, so this heuristic never changes the verdict.
pub fn diff(published: &ProductManifest, proposed: &ProductManifest) -> ContractDiff {
    let mut changes = Vec::new();
    identity(published, proposed, &mut changes);
    columns(published, proposed, &mut changes);
    primary_key(published, proposed, &mut changes);
    product_fields(published, proposed, &mut changes);
    quality(published, proposed, &mut changes);
    inputs(published, proposed, &mut changes);
    let (verdict, suggested) = verdict(published, proposed, &changes);
    ContractDiff {
        product: published.qualified_name(),
        published_version: Some(published.version.clone()),
        proposed_version: proposed.version.clone(),
        verdict,
        suggested_version: suggested.map(|v| v.to_string()),
        changes,
    }
}

fn verdict(
    published: &ProductManifest,
    proposed: &ProductManifest,
    changes: &[Change],
) -> (Verdict, Option<Version>) {
    let (Ok(old), Ok(new)) = (published.semver(), proposed.semver()) else {
        return (Verdict::InvalidVersion, None);
    };
    let breaking = changes.iter().any(|c| c.breaking);
    let order = precedence(&new, &old);
    if order == Ordering::Less {
        let suggestion = if breaking {
            next_major(&old)
        } else {
            next_compatible(&old)
        };
        return (Verdict::VersionDecreased, Some(suggestion));
    }
    if breaking {
        return if is_major_bump(&old, &new) {
            (Verdict::BreakingWithMajorBump, None)
        } else {
            (Verdict::BreakingWithoutMajorBump, Some(next_major(&old)))
        };
    }
    match (changes.is_empty(), order) {
        (true, Ordering::Equal) => (Verdict::Unchanged, None),
        (false, Ordering::Equal) => (Verdict::VersionNotIncreased, Some(next_compatible(&old))),
        _ => (Verdict::Compatible, None),
    }
}

fn change(
    kind: ChangeKind,
    breaking: bool,
    field: impl Into<String>,
    columns: Vec<String>,
    before: Option<String>,
    after: Option<String>,
    message: String,
) -> Change {
    Change {
        kind,
        breaking,
        field: field.into(),
        columns,
        before,
        after,
        message,
    }
}

fn identity(a: &ProductManifest, b: &ProductManifest, out: &mut Vec<Change>) {
    if a.domain != b.domain || a.name != b.name {
        out.push(change(
            ChangeKind::IdentityChanged,
            true,
            "name",
            Vec::new(),
            Some(a.qualified_name()),
            Some(b.qualified_name()),
            format!(
                "product `{}` becomes `{}`: consumers name the product in their queries",
                a.qualified_name(),
                b.qualified_name()
            ),
        ));
    }
}

fn nullability(c: &ColumnSpec) -> &'static str {
    if c.nullable {
        "nullable"
    } else {
        "not null"
    }
}

fn columns(a: &ProductManifest, b: &ProductManifest, out: &mut Vec<Change>) {
    let removed: Vec<&ColumnSpec> = a
        .columns
        .iter()
        .filter(|c| b.column(&c.name).is_none())
        .collect();
    let added: Vec<&ColumnSpec> = b
        .columns
        .iter()
        .filter(|c| a.column(&c.name).is_none())
        .collect();
    let looks_same = |x: &ColumnSpec, y: &ColumnSpec| {
        x.ty == y.ty
            && x.nullable == y.nullable
            && x.classification == y.classification
            && !x.description.trim().is_empty()
            && x.description.trim() == y.description.trim()
    };
    let mut renamed: BTreeMap<&str, &str> = BTreeMap::new();
    for r in &removed {
        let candidates: Vec<&&ColumnSpec> = added.iter().filter(|n| looks_same(r, n)).collect();
        if let [only] = candidates.as_slice() {
            if removed.iter().filter(|o| looks_same(o, only)).count() == 1 {
                renamed.insert(r.name.as_str(), only.name.as_str());
            }
        }
    }
    for r in &removed {
        match renamed.get(r.name.as_str()) {
            Some(new) => out.push(change(
                ChangeKind::ColumnRenamed,
                true,
                format!("schema.{}", r.name),
                vec![r.name.clone(), new.to_string()],
                Some(r.name.clone()),
                Some(new.to_string()),
                format!(
                    "column `{}` renamed to `{new}` (same type and description): queries naming `{}` break",
                    r.name, r.name
                ),
            )),
            None => out.push(change(
                ChangeKind::ColumnRemoved,
                true,
                format!("schema.{}", r.name),
                vec![r.name.clone()],
                Some(r.ty.to_string()),
                None,
                format!("column `{}` ({}) removed", r.name, r.ty),
            )),
        }
    }
    for n in &added {
        if renamed.values().any(|v| *v == n.name) {
            continue;
        }
        out.push(change(
            ChangeKind::ColumnAdded,
            false,
            format!("schema.{}", n.name),
            vec![n.name.clone()],
            None,
            Some(n.ty.to_string()),
            format!("column `{}` added ({}, {})", n.name, n.ty, nullability(n)),
        ));
    }
    for old in &a.columns {
        let Some(new) = b.column(&old.name) else {
            continue;
        };
        column(old, new, out);
    }
    let kept_old: Vec<&str> = a
        .columns
        .iter()
        .filter(|c| b.column(&c.name).is_some())
        .map(|c| c.name.as_str())
        .collect();
    let kept_new: Vec<&str> = b
        .columns
        .iter()
        .filter(|c| a.column(&c.name).is_some())
        .map(|c| c.name.as_str())
        .collect();
    if kept_old != kept_new {
        let moved: Vec<String> = kept_old
            .iter()
            .zip(&kept_new)
            .filter(|(x, y)| x != y)
            .map(|(x, _)| x.to_string())
            .collect();
        out.push(change(
            ChangeKind::ColumnsReordered,
            false,
            "schema",
            moved,
            Some(kept_old.join(", ")),
            Some(kept_new.join(", ")),
            format!(
                "column order changes: {} -> {} (`SELECT *` returns the new order)",
                kept_old.join(", "),
                kept_new.join(", ")
            ),
        ));
    }
}

fn column(old: &ColumnSpec, new: &ColumnSpec, out: &mut Vec<Change>) {
    let name = &old.name;
    let cols = || vec![name.clone()];
    if old.ty != new.ty {
        let widening = is_widening(old.ty, new.ty);
        out.push(change(
            if widening {
                ChangeKind::TypeWidened
            } else {
                ChangeKind::TypeChanged
            },
            !widening,
            format!("schema.{name}.type"),
            cols(),
            Some(old.ty.to_string()),
            Some(new.ty.to_string()),
            format!(
                "column `{name}` type {} -> {} ({})",
                old.ty,
                new.ty,
                if widening {
                    "widening: every old value fits"
                } else {
                    "incompatible"
                }
            ),
        ));
    }
    if old.nullable != new.nullable {
        let relaxed = new.nullable;
        out.push(change(
            if relaxed {
                ChangeKind::NullabilityRelaxed
            } else {
                ChangeKind::NullabilityTightened
            },
            relaxed,
            format!("schema.{name}.nullable"),
            cols(),
            Some(nullability(old).to_string()),
            Some(nullability(new).to_string()),
            if relaxed {
                format!(
                    "column `{name}` becomes nullable: consumers relying on non-null values break"
                )
            } else {
                format!("column `{name}` becomes not null")
            },
        ));
    }
    if old.classification != new.classification {
        let (kind, breaking, msg) = match (&old.classification, &new.classification) {
            (None, Some(c)) => (
                ChangeKind::ClassificationAdded,
                true,
                format!("column `{name}` classified `{c}`: policies on `{c}` may mask or hide it from consumers"),
            ),
            (Some(o), Some(c)) => (
                ChangeKind::ClassificationChanged,
                true,
                format!("column `{name}` classification `{o}` -> `{c}`: policies on `{c}` may mask or hide it from consumers"),
            ),
            (Some(o), None) => (
                ChangeKind::ClassificationRemoved,
                false,
                format!("column `{name}` no longer classified `{o}`: policies on `{o}` stop applying to it (review with governance)"),
            ),
            (None, None) => return,
        };
        out.push(change(
            kind,
            breaking,
            format!("schema.{name}.classification"),
            cols(),
            old.classification.clone(),
            new.classification.clone(),
            msg,
        ));
    }
    if old.description.trim() != new.description.trim() {
        out.push(change(
            ChangeKind::ColumnDescriptionChanged,
            false,
            format!("schema.{name}.description"),
            cols(),
            Some(old.description.clone()),
            Some(new.description.clone()),
            format!("column `{name}` description changes"),
        ));
    }
    deprecation(
        &old.deprecated,
        &new.deprecated,
        &format!("schema.{name}.deprecated"),
        &format!("column `{name}`"),
        cols(),
        [
            ChangeKind::ColumnDeprecated,
            ChangeKind::ColumnUndeprecated,
            ChangeKind::ColumnDeprecationChanged,
        ],
        out,
    );
}

fn deprecation(
    old: &Option<Deprecation>,
    new: &Option<Deprecation>,
    field: &str,
    what: &str,
    columns: Vec<String>,
    kinds: [ChangeKind; 3],
    out: &mut Vec<Change>,
) {
    let (kind, msg) = match (old, new) {
        (None, Some(d)) => (kinds[0], format!("{what} deprecated: {d}")),
        (Some(_), None) => (kinds[1], format!("{what} no longer deprecated")),
        (Some(x), Some(y)) if x != y => (kinds[2], format!("{what} deprecation: {x} -> {y}")),
        _ => return,
    };
    out.push(change(
        kind,
        false,
        field,
        columns,
        old.as_ref().map(|d| d.to_string()),
        new.as_ref().map(|d| d.to_string()),
        msg,
    ));
}

fn primary_key(a: &ProductManifest, b: &ProductManifest, out: &mut Vec<Change>) {
    let old: BTreeSet<&str> = a.primary_key().into_iter().collect();
    let new: BTreeSet<&str> = b.primary_key().into_iter().collect();
    if old == new {
        return;
    }
    // Uniqueness on fewer columns implies uniqueness on more: a non-empty subset of the old key
    // keeps (strengthens) the guarantee consumers relied on.
    let breaking = !(old.is_empty() || (!new.is_empty() && new.is_subset(&old)));
    let show = |k: &BTreeSet<&str>| {
        if k.is_empty() {
            "none".to_string()
        } else {
            k.iter().copied().collect::<Vec<_>>().join(", ")
        }
    };
    out.push(change(
        ChangeKind::PrimaryKeyChanged,
        breaking,
        "schema.primary_key",
        old.symmetric_difference(&new)
            .map(|s| s.to_string())
            .collect(),
        Some(show(&old)),
        Some(show(&new)),
        format!(
            "primary key ({}) -> ({}){}",
            show(&old),
            show(&new),
            if breaking {
                ": rows are no longer guaranteed unique on the old key"
            } else {
                ""
            }
        ),
    ));
}

fn product_fields(a: &ProductManifest, b: &ProductManifest, out: &mut Vec<Change>) {
    let mut simple = |kind: ChangeKind, field: &str, x: String, y: String| {
        if x != y {
            out.push(change(
                kind,
                false,
                field,
                Vec::new(),
                Some(x.clone()),
                Some(y.clone()),
                format!("{field}: `{x}` -> `{y}`"),
            ));
        }
    };
    simple(
        ChangeKind::DescriptionChanged,
        "description",
        a.description.trim().to_string(),
        b.description.trim().to_string(),
    );
    simple(
        ChangeKind::OwnerChanged,
        "owner",
        a.owner.clone(),
        b.owner.clone(),
    );
    let tags = |m: &ProductManifest| {
        let set: BTreeSet<&str> = m.tags.iter().map(String::as_str).collect();
        set.into_iter().collect::<Vec<_>>().join(", ")
    };
    simple(ChangeKind::TagsChanged, "tags", tags(a), tags(b));
    simple(
        ChangeKind::FormatChanged,
        "format",
        a.format.as_str().to_string(),
        b.format.as_str().to_string(),
    );
    simple(
        ChangeKind::LocationChanged,
        "location",
        a.location.clone(),
        b.location.clone(),
    );
    let fresh = |m: &ProductManifest| {
        m.sla
            .freshness
            .as_ref()
            .map(|(t, _)| t.clone())
            .unwrap_or_else(|| "none".to_string())
    };
    // Compare the durations, not their spelling (`24h` == `1d`).
    let secs = |m: &ProductManifest| m.sla.freshness.as_ref().map(|(_, s)| *s);
    if secs(a) != secs(b) {
        simple(ChangeKind::SlaChanged, "sla.freshness", fresh(a), fresh(b));
    }
    simple(
        ChangeKind::SlaChanged,
        "sla.on_breach",
        a.sla.on_breach.to_string(),
        b.sla.on_breach.to_string(),
    );
    deprecation(
        &a.deprecated,
        &b.deprecated,
        "deprecated",
        "product",
        Vec::new(),
        [
            ChangeKind::ProductDeprecated,
            ChangeKind::ProductUndeprecated,
            ChangeKind::ProductDeprecationChanged,
        ],
        out,
    );
}

fn quality(a: &ProductManifest, b: &ProductManifest, out: &mut Vec<Change>) {
    let show = |r: &crate::quality::QualityRule| format!("{} ({})", r.kind, r.severity);
    for old in &a.quality {
        let field = format!("quality.{}", old.name);
        match b.quality_rule(&old.name) {
            None => out.push(change(
                ChangeKind::QualityRuleRemoved,
                false,
                field,
                old.kind.columns().iter().map(|c| c.to_string()).collect(),
                Some(show(old)),
                None,
                format!("quality rule `{}` removed: {}", old.name, show(old)),
            )),
            Some(new) if new != old => out.push(change(
                ChangeKind::QualityRuleChanged,
                false,
                field,
                new.kind.columns().iter().map(|c| c.to_string()).collect(),
                Some(show(old)),
                Some(show(new)),
                format!(
                    "quality rule `{}`: {} -> {}",
                    old.name,
                    show(old),
                    show(new)
                ),
            )),
            Some(_) => {}
        }
    }
    for new in &b.quality {
        if a.quality_rule(&new.name).is_none() {
            out.push(change(
                ChangeKind::QualityRuleAdded,
                false,
                format!("quality.{}", new.name),
                new.kind.columns().iter().map(|c| c.to_string()).collect(),
                None,
                Some(show(new)),
                format!("quality rule `{}` added: {}", new.name, show(new)),
            ));
        }
    }
}

fn inputs(a: &ProductManifest, b: &ProductManifest, out: &mut Vec<Change>) {
    let find =
        |m: &ProductManifest, q: &str| m.inputs.iter().find(|i| i.qualified_name() == q).cloned();
    let show = |i: &crate::lineage::Input| {
        if i.columns.is_empty() {
            i.qualified_name()
        } else {
            format!(
                "{} ({})",
                i.qualified_name(),
                i.columns
                    .iter()
                    .map(|(k, v)| format!("{k} <- {}", v.join("+")))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    };
    for old in &a.inputs {
        let q = old.qualified_name();
        match find(b, &q) {
            None => out.push(change(
                ChangeKind::InputRemoved,
                false,
                format!("inputs.{q}"),
                Vec::new(),
                Some(show(old)),
                None,
                format!("input `{q}` removed"),
            )),
            Some(new) if &new != old => out.push(change(
                ChangeKind::InputChanged,
                false,
                format!("inputs.{q}"),
                Vec::new(),
                Some(show(old)),
                Some(show(&new)),
                format!("input `{q}`: {} -> {}", show(old), show(&new)),
            )),
            Some(_) => {}
        }
    }
    for new in &b.inputs {
        let q = new.qualified_name();
        if find(a, &q).is_none() {
            out.push(change(
                ChangeKind::InputAdded,
                false,
                format!("inputs.{q}"),
                Vec::new(),
                None,
                Some(show(new)),
                format!("input `{}` added", show(new)),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn major_bumps_follow_cargo() {
        let cases = [
            ("1.4.2", "2.0.0", true),
            ("1.4.2", "1.5.0", false),
            ("1.4.2", "3.1.0", true),
            ("1.4.2", "2.0.0-rc.1", true),
            ("2.0.0-rc.1", "2.0.0", false),
            ("0.3.1", "0.4.0", true),
            ("0.3.1", "0.3.2", false),
            ("0.3.1", "1.0.0", true),
            ("0.0.3", "0.0.4", true),
            ("2.0.0", "1.0.0", false),
            ("1.0.0", "1.0.0", false),
        ];
        for (from, to, expected) in cases {
            assert_eq!(is_major_bump(&v(from), &v(to)), expected, "{from} -> {to}");
        }
        assert_eq!(next_major(&v("1.4.2")), v("2.0.0"));
        assert_eq!(next_major(&v("0.3.1")), v("0.4.0"));
        assert_eq!(next_major(&v("0.0.3")), v("0.0.4"));
        assert_eq!(next_compatible(&v("1.4.2")), v("1.4.3"));
        assert_eq!(next_compatible(&v("2.0.0-rc.1")), v("2.0.0"));
    }

    #[test]
    fn widening_table() {
        let t = |s: &str| s.parse::<ColumnType>().unwrap();
        let cases = [
            ("tinyint", "smallint", true),
            ("smallint", "int", true),
            ("int", "bigint", true),
            ("tinyint", "bigint", true),
            ("bigint", "int", false),
            ("int", "double", true),
            ("bigint", "double", false),
            ("int", "float", false),
            ("float", "double", true),
            ("double", "float", false),
            ("int", "decimal(10,0)", true),
            ("int", "decimal(12,2)", true),
            ("int", "decimal(11,2)", false),
            ("bigint", "decimal(20,0)", true),
            ("bigint", "decimal(38,18)", true),
            ("bigint", "decimal(19,0)", false),
            ("decimal(10,2)", "decimal(12,2)", true),
            ("decimal(10,2)", "decimal(12,4)", true),
            ("decimal(10,2)", "decimal(11,4)", false),
            ("decimal(10,2)", "decimal(10,1)", false),
            ("decimal(12,2)", "decimal(10,2)", false),
            ("decimal(10,0)", "bigint", false),
            ("date", "timestamp_ntz", true),
            ("date", "timestamp", false),
            ("timestamp", "timestamp_ntz", false),
            ("timestamp_ntz", "timestamp", false),
            ("int", "string", false),
            ("string", "binary", false),
            ("boolean", "int", false),
            ("int", "int", false),
        ];
        for (a, b, expected) in cases {
            assert_eq!(is_widening(t(a), t(b)), expected, "{a} -> {b}");
        }
    }

    const PUBLISHED: &str = r#"
name = "customers"
domain = "crm"
version = "1.2.0"
description = "One row per customer."
owner = "crm@x"
format = "parquet"
location = "customers"
tags = ["core", "pii"]

[sla]
freshness = "24h"

[[schema]]
name = "customer_id"
type = "int"
primary_key = true
description = "Customer key."

[[schema]]
name = "email"
type = "string"
classification = "pii"
description = "Contact address."

[[schema]]
name = "tier"
type = "string"
nullable = false
description = "Loyalty tier."

[[schema]]
name = "country"
type = "string"

[[schema]]
name = "score"
type = "float"

[[quality]]
name = "tier_known"
rule = "accepted_values"
column = "tier"
values = ["gold", "silver"]

[[inputs]]
product = "sales.orders"
"#;

    fn parse(text: &str) -> ProductManifest {
        ProductManifest::parse(std::path::Path::new("c.toml"), text)
            .unwrap_or_else(|p| panic!("{p:#?}\n{text}"))
    }

    /// Replaces `from` by `to`, checking `from` is there (a typo in a test must not pass).
    fn edit(text: &str, from: &str, to: &str) -> String {
        assert!(text.contains(from), "`{from}` not in the manifest");
        text.replacen(from, to, 1)
    }

    #[test]
    fn every_change_kind_is_classified() {
        use ChangeKind as K;
        let p = PUBLISHED;
        #[rustfmt::skip]
        type Expected<'a> = Vec<(ChangeKind, bool, &'a str)>;
        let cases: Vec<(&str, String, Expected)> = vec![
            // (what, proposed manifest, expected changes: kind, breaking, field)
            ("add column", format!("{p}\n[[schema]]\nname = \"age\"\ntype = \"int\"\n"), vec![(K::ColumnAdded, false, "schema.age")]),
            ("remove column", edit(p, "[[schema]]\nname = \"country\"\ntype = \"string\"\n", ""), vec![(K::ColumnRemoved, true, "schema.country")]),
            ("rename column (same type and description)", edit(&edit(p, "name = \"tier\"", "name = \"loyalty_tier\""), "column = \"tier\"", "column = \"loyalty_tier\""), vec![(K::ColumnRenamed, true, "schema.tier"), (K::QualityRuleChanged, false, "quality.tier_known")]),
            ("rename without description is remove + add", edit(p, "name = \"country\"", "name = \"country_code\""), vec![(K::ColumnRemoved, true, "schema.country"), (K::ColumnAdded, false, "schema.country_code")]),
            ("widen type", edit(p, "type = \"int\"", "type = \"bigint\""), vec![(K::TypeWidened, false, "schema.customer_id.type")]),
            ("widen float", edit(p, "type = \"float\"", "type = \"double\""), vec![(K::TypeWidened, false, "schema.score.type")]),
            ("incompatible type", edit(p, "type = \"int\"", "type = \"string\""), vec![(K::TypeChanged, true, "schema.customer_id.type")]),
            ("narrow type", edit(p, "type = \"float\"", "type = \"int\""), vec![(K::TypeChanged, true, "schema.score.type")]),
            ("non-null to nullable", edit(p, "nullable = false\n", ""), vec![(K::NullabilityRelaxed, true, "schema.tier.nullable")]),
            ("nullable to non-null", edit(p, "name = \"country\"", "name = \"country\"\nnullable = false"), vec![(K::NullabilityTightened, false, "schema.country.nullable")]),
            ("classification added", edit(p, "name = \"country\"", "name = \"country\"\nclassification = \"pii\""), vec![(K::ClassificationAdded, true, "schema.country.classification")]),
            ("classification changed", edit(p, "classification = \"pii\"", "classification = \"secret\""), vec![(K::ClassificationChanged, true, "schema.email.classification")]),
            ("classification removed", edit(p, "classification = \"pii\"\n", ""), vec![(K::ClassificationRemoved, false, "schema.email.classification")]),
            ("primary key extended", edit(p, "name = \"country\"", "name = \"country\"\nprimary_key = true"), vec![(K::NullabilityTightened, false, "schema.country.nullable"), (K::PrimaryKeyChanged, true, "schema.primary_key")]),
            ("primary key dropped", edit(p, "primary_key = true\n", "nullable = false\n"), vec![(K::PrimaryKeyChanged, true, "schema.primary_key")]),
            ("column description", edit(p, "Contact address.", "Where we write."), vec![(K::ColumnDescriptionChanged, false, "schema.email.description")]),
            ("column deprecated", edit(p, "name = \"country\"", "name = \"country\"\ndeprecated = \"use region\""), vec![(K::ColumnDeprecated, false, "schema.country.deprecated")]),
            ("moved to the end", edit(&edit(p, "[[schema]]\nname = \"country\"\ntype = \"string\"\n", ""), "[[quality]]", "[[schema]]\nname = \"country\"\ntype = \"string\"\n\n[[quality]]"), vec![(K::ColumnsReordered, false, "schema")]),
            ("description", edit(p, "One row per customer.", "Customers."), vec![(K::DescriptionChanged, false, "description")]),
            ("owner", edit(p, "crm@x", "crm-team@x"), vec![(K::OwnerChanged, false, "owner")]),
            ("tags", edit(p, "[\"core\", \"pii\"]", "[\"core\"]"), vec![(K::TagsChanged, false, "tags")]),
            ("tags reordered only", edit(p, "[\"core\", \"pii\"]", "[\"pii\", \"core\"]"), vec![]),
            ("format", edit(p, "format = \"parquet\"", "format = \"delta\""), vec![(K::FormatChanged, false, "format")]),
            ("location", edit(p, "location = \"customers\"", "location = \"customers_v2\""), vec![(K::LocationChanged, false, "location")]),
            ("sla freshness", edit(p, "freshness = \"24h\"", "freshness = \"48h\""), vec![(K::SlaChanged, false, "sla.freshness")]),
            ("sla same duration spelled differently", edit(p, "freshness = \"24h\"", "freshness = \"1d\""), vec![]),
            ("sla removed", edit(p, "[sla]\nfreshness = \"24h\"\n", ""), vec![(K::SlaChanged, false, "sla.freshness")]),
            ("sla on_breach", edit(p, "freshness = \"24h\"", "freshness = \"24h\"\non_breach = \"refuse\""), vec![(K::SlaChanged, false, "sla.on_breach")]),
            ("product deprecated", edit(p, "tags = ", "deprecated = \"use crm.customers_v2\"\ntags = "), vec![(K::ProductDeprecated, false, "deprecated")]),
            ("quality added", format!("{p}\n[[quality]]\nname = \"rows\"\nrule = \"row_count\"\nmin = 1\n"), vec![(K::QualityRuleAdded, false, "quality.rows")]),
            ("quality removed", edit(p, "[[quality]]\nname = \"tier_known\"\nrule = \"accepted_values\"\ncolumn = \"tier\"\nvalues = [\"gold\", \"silver\"]\n", ""), vec![(K::QualityRuleRemoved, false, "quality.tier_known")]),
            ("quality changed", edit(p, "values = [\"gold\", \"silver\"]", "values = [\"gold\", \"silver\"]\nseverity = \"warning\""), vec![(K::QualityRuleChanged, false, "quality.tier_known")]),
            ("input added", format!("{p}\n[[inputs]]\nproduct = \"crm.leads\"\n"), vec![(K::InputAdded, false, "inputs.crm.leads")]),
            ("input removed", edit(p, "[[inputs]]\nproduct = \"sales.orders\"\n", ""), vec![(K::InputRemoved, false, "inputs.sales.orders")]),
            ("input changed", edit(p, "product = \"sales.orders\"", "product = \"sales.orders\"\ncolumns = { customer_id = \"customer_id\" }"), vec![(K::InputChanged, false, "inputs.sales.orders")]),
            ("identity", edit(p, "name = \"customers\"", "name = \"clients\""), vec![(K::IdentityChanged, true, "name")]),
        ];
        let published = parse(p);
        for (what, text, expected) in cases {
            let d = diff(&published, &parse(&text));
            let got: Vec<(ChangeKind, bool, &str)> = d
                .changes
                .iter()
                .map(|c| (c.kind, c.breaking, c.field.as_str()))
                .collect();
            assert_eq!(got, expected, "{what}:\n{d}");
            assert_eq!(d.is_breaking(), expected.iter().any(|e| e.1), "{what}");
        }
    }

    #[test]
    fn changes_name_their_columns_and_values() {
        let published = parse(PUBLISHED);
        let d = diff(
            &published,
            &parse(&edit(
                PUBLISHED,
                "type = \"int\"",
                "type = \"decimal(12,2)\"",
            )),
        );
        assert_eq!(d.changes.len(), 1);
        let c = &d.changes[0];
        assert_eq!(c.columns, ["customer_id"]);
        assert_eq!(c.before.as_deref(), Some("int"));
        assert_eq!(c.after.as_deref(), Some("decimal(12,2)"));
        assert!(!c.breaking, "int -> decimal(12,2) keeps every value");
        let d = diff(
            &published,
            &parse(&edit(
                &edit(PUBLISHED, "name = \"tier\"", "name = \"loyalty_tier\""),
                "column = \"tier\"",
                "column = \"loyalty_tier\"",
            )),
        );
        assert_eq!(d.changes[0].columns, ["tier", "loyalty_tier"]);
        assert_eq!(d.affected_columns(), ["tier"]);
    }

    #[test]
    fn affected_columns_are_the_published_columns_readers_may_break_on() {
        let published = parse(PUBLISHED);
        let proposed = edit(
            &edit(
                &edit(
                    PUBLISHED,
                    "[[schema]]\nname = \"country\"\ntype = \"string\"\n",
                    "",
                ),
                "nullable = false\n",
                "",
            ),
            "name = \"score\"",
            "name = \"score\"\ndescription = \"now documented\"",
        );
        let d = diff(&published, &parse(&proposed));
        assert_eq!(d.affected_columns(), ["country", "tier"], "{d}");
        // A primary key change affects the old key's columns.
        let d = diff(
            &published,
            &parse(&edit(
                PUBLISHED,
                "name = \"country\"",
                "name = \"country\"\nprimary_key = true",
            )),
        );
        assert_eq!(d.affected_columns(), ["customer_id"], "{d}");
    }

    #[test]
    fn primary_key_subset_is_not_breaking() {
        let two = edit(
            PUBLISHED,
            "name = \"country\"",
            "name = \"country\"\nprimary_key = true",
        );
        let d = diff(&parse(&two), &parse(PUBLISHED));
        let pk: Vec<&Change> = d
            .changes
            .iter()
            .filter(|c| c.kind == ChangeKind::PrimaryKeyChanged)
            .collect();
        assert_eq!(pk.len(), 1);
        assert!(!pk[0].breaking, "{d}");
        // None -> some key: a new guarantee, not breaking.
        let none = edit(PUBLISHED, "primary_key = true\n", "nullable = false\n");
        let d = diff(&parse(&none), &parse(PUBLISHED));
        assert!(!d.is_breaking(), "{d}");
    }

    fn with_version(text: &str, v: &str) -> ProductManifest {
        parse(&edit(
            text,
            "version = \"1.2.0\"",
            &format!("version = \"{v}\""),
        ))
    }

    #[test]
    fn semver_verdicts() {
        let removed = edit(
            PUBLISHED,
            "[[schema]]\nname = \"country\"\ntype = \"string\"\n",
            "",
        );
        let added = format!("{PUBLISHED}\n[[schema]]\nname = \"age\"\ntype = \"int\"\n");
        let cases = [
            // (published version, proposed text, proposed version, verdict, suggestion)
            ("1.2.0", PUBLISHED, "1.2.0", Verdict::Unchanged, None),
            ("1.2.0", PUBLISHED, "1.2.1", Verdict::Compatible, None),
            ("1.2.0", added.as_str(), "1.3.0", Verdict::Compatible, None),
            (
                "1.2.0",
                added.as_str(),
                "1.2.0",
                Verdict::VersionNotIncreased,
                Some("1.2.1"),
            ),
            (
                "1.2.0",
                added.as_str(),
                "1.1.9",
                Verdict::VersionDecreased,
                Some("1.2.1"),
            ),
            (
                "1.2.0",
                PUBLISHED,
                "1.0.0",
                Verdict::VersionDecreased,
                Some("1.2.1"),
            ),
            (
                "1.2.0",
                removed.as_str(),
                "1.3.0",
                Verdict::BreakingWithoutMajorBump,
                Some("2.0.0"),
            ),
            (
                "1.2.0",
                removed.as_str(),
                "1.2.0",
                Verdict::BreakingWithoutMajorBump,
                Some("2.0.0"),
            ),
            (
                "1.2.0",
                removed.as_str(),
                "2.0.0",
                Verdict::BreakingWithMajorBump,
                None,
            ),
            (
                "1.2.0",
                removed.as_str(),
                "2.0.0-rc.1",
                Verdict::BreakingWithMajorBump,
                None,
            ),
            (
                "1.2.0",
                removed.as_str(),
                "1.0.0",
                Verdict::VersionDecreased,
                Some("2.0.0"),
            ),
            (
                "0.3.1",
                removed.as_str(),
                "0.3.2",
                Verdict::BreakingWithoutMajorBump,
                Some("0.4.0"),
            ),
            (
                "0.3.1",
                removed.as_str(),
                "0.4.0",
                Verdict::BreakingWithMajorBump,
                None,
            ),
            (
                "0.0.3",
                removed.as_str(),
                "0.0.4",
                Verdict::BreakingWithMajorBump,
                None,
            ),
            (
                "2.0.0-rc.1",
                removed.as_str(),
                "2.0.0",
                Verdict::BreakingWithoutMajorBump,
                Some("3.0.0"),
            ),
            (
                "1.2.0",
                PUBLISHED,
                "1.2.0+build.7",
                Verdict::Unchanged,
                None,
            ),
        ];
        for (old, text, new, verdict, suggestion) in cases {
            let d = diff(&with_version(PUBLISHED, old), &with_version(text, new));
            assert_eq!(d.verdict, verdict, "{old} -> {new}:\n{d}");
            assert_eq!(d.suggested_version.as_deref(), suggestion, "{old} -> {new}");
            assert_eq!(
                d.is_accepted(),
                matches!(
                    verdict,
                    Verdict::Unchanged | Verdict::Compatible | Verdict::BreakingWithMajorBump
                ),
                "{old} -> {new}"
            );
        }
        // A hand-built manifest with a bad version.
        let mut bad = parse(PUBLISHED);
        bad.version = "one".into();
        assert_eq!(
            diff(&parse(PUBLISHED), &bad).verdict,
            Verdict::InvalidVersion
        );
        assert!(!Verdict::InvalidVersion.is_accepted());
        let new = ContractDiff::new_product(&parse(PUBLISHED));
        assert_eq!(new.verdict, Verdict::New);
        assert!(new.is_accepted() && new.changes.is_empty());
    }

    #[test]
    fn renders_for_people() {
        let proposed = edit(
            &format!("{PUBLISHED}\n[[schema]]\nname = \"age\"\ntype = \"int\"\n"),
            "[[schema]]\nname = \"country\"\ntype = \"string\"\n",
            "",
        );
        let d = diff(&parse(PUBLISHED), &with_version(&proposed, "1.3.0"));
        assert_eq!(
            d.to_string(),
            "crm.customers: 1.2.0 -> 1.3.0\n  \
             ! column `country` (string) removed [breaking]\n  \
             + column `age` added (int, nullable)\n\
             verdict: breaking, without a major version bump (use 2.0.0 or later)"
        );
        let same = diff(&parse(PUBLISHED), &parse(PUBLISHED));
        assert_eq!(
            same.to_string(),
            "crm.customers: 1.2.0 -> 1.2.0\n  (no contract changes)\nverdict: unchanged"
        );
        assert_eq!(
            ContractDiff::new_product(&parse(PUBLISHED)).to_string(),
            "crm.customers: new product at 1.2.0\nverdict: new product"
        );
    }

    #[test]
    fn serializes_to_json() {
        let proposed = edit(PUBLISHED, "nullable = false\n", "");
        let d = diff(&parse(PUBLISHED), &parse(&proposed));
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "product": "crm.customers",
                "published_version": "1.2.0",
                "proposed_version": "1.2.0",
                "verdict": "breaking_without_major_bump",
                "suggested_version": "2.0.0",
                "changes": [{
                    "kind": "nullability_relaxed",
                    "breaking": true,
                    "field": "schema.tier.nullable",
                    "columns": ["tier"],
                    "before": "not null",
                    "after": "nullable",
                    "message": "column `tier` becomes nullable: consumers relying on non-null values break"
                }]
            })
        );
        assert_eq!(
            Verdict::BreakingWithoutMajorBump.as_str(),
            "breaking_without_major_bump"
        );
    }
}
