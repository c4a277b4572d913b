//! Catalog errors and the validation problems they carry.

use std::fmt;
use std::path::PathBuf;

/// One thing wrong in a configuration or manifest file: which file, which field, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file the problem is in.
    pub file: PathBuf,
    /// A dotted path to the field, e.g. `schema[2].type`; empty for the whole file.
    pub field: String,
    /// What is wrong, in words a catalog author understands.
    pub message: String,
}

impl Problem {
    pub fn new(
        file: impl Into<PathBuf>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl Problem {
    /// Appends `(line L, column C)` for a byte span of `text`.
    pub fn with_span(mut self, text: &str, span: Option<std::ops::Range<usize>>) -> Self {
        if let Some(r) = span {
            let before = &text[..r.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            self.message = format!("{} (line {line}, column {col})", self.message);
        }
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.field,
                self.message
            )
        }
    }
}

/// Errors of the catalog crate.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The configuration or manifests have problems; every one found is listed.
    #[error("{} problem(s) in the mesh catalog:\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A password could not be hashed.
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
    /// A file changed between planning a write and doing it (e.g. two publishes at once).
    #[error("{path} changed since it was read; nothing was written, try again")]
    Changed { path: PathBuf },
}

impl CatalogError {
    /// The problems, when this is a validation error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            CatalogError::Invalid(p) => p,
            CatalogError::Io { .. }
            | CatalogError::PasswordHash(_)
            | CatalogError::Changed { .. } => &[],
        }
    }
}

/// Result alias of the catalog crate.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;
