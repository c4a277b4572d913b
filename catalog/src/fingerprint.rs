//! Change detection for hot reload: a fingerprint of everything a catalog load reads.
//!
//! A server polls every `catalog.refresh_interval`: it rescans (cheap: one `stat` per file, a
//! read only for files that may have changed) and reloads the catalog only when the fingerprint
//! differs from the last one it tried. Covered: the configuration file (domains, users, settings),
//! the folders of the catalog directory (a folder naming no domain is a problem), every
//! `policies.toml`, every `products/*.toml`, the JWT key files and the domains' secrets files.
//!
//! Equality is by content (a SHA-256 of each file), so touching a file without changing it
//! triggers no reload, while an edit is always noticed, even one that keeps the size and lands
//! in the same second as the previous scan on a file system with coarse timestamps: a file's
//! digest is reused only when its size, modification and change times (and inode, on Unix) are
//! unchanged *and* older than the previous scan by more than [`RACY_WINDOW`]; otherwise it is
//! read again (the "racy clean" rule git uses for its index).
//!
//! Use: scan *before* loading, so a change racing with the load is seen at the next poll.
//!
//! ```text
//! let mut seen = CatalogFingerprint::scan(config_file);
//! let mesh = Mesh::load_checked(config_file)?;          // at start
//! every refresh_interval:
//!     let now = seen.rescan(config_file);
//!     if now != seen {
//!         match Mesh::load_checked(config_file) { Ok(m) => swap in m, Err(problems) => reject }
//!         seen = now;                                     // do not retry an unchanged rejected catalog
//!     }
//! ```

use std::collections::BTreeMap;
use std::fs::{self, Metadata};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::config::MeshConfig;
use crate::mesh::POLICY_FILE;

/// A file whose times are this close to (or after) the previous scan is hashed again even when
/// its metadata looks unchanged: coarse file system clocks (1 s on some, 2 s on FAT) cannot tell
/// two writes in that window apart.
pub(crate) const RACY_WINDOW: Duration = Duration::from_secs(2);

/// What a catalog load reads, by path: folders, and files with their content digests.
#[derive(Debug, Clone)]
pub struct CatalogFingerprint {
    entries: BTreeMap<PathBuf, Entry>,
    started: SystemTime,
    hashed: usize,
}

#[derive(Debug, Clone)]
enum Entry {
    Dir,
    File {
        stamp: Stamp,
        digest: [u8; 32],
    },
    /// Unreadable or missing: the error kind (a load will report it).
    Error(String),
}

impl Entry {
    fn same_content(&self, other: &Entry) -> bool {
        match (self, other) {
            (Entry::Dir, Entry::Dir) => true,
            (Entry::File { digest: a, .. }, Entry::File { digest: b, .. }) => a == b,
            (Entry::Error(a), Entry::Error(b)) => a == b,
            _ => false,
        }
    }
}

/// File metadata that changes when a file is written or replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    /// Unix: inode change time (seconds, nanoseconds), device and inode.
    changed: Option<(i64, i64)>,
    inode: Option<(u64, u64)>,
}

impl Stamp {
    fn of(md: &Metadata) -> Stamp {
        #[cfg(unix)]
        let (changed, inode) = {
            use std::os::unix::fs::MetadataExt;
            (
                Some((md.ctime(), md.ctime_nsec())),
                Some((md.dev(), md.ino())),
            )
        };
        #[cfg(not(unix))]
        let (changed, inode) = (None, None);
        Stamp {
            len: md.len(),
            modified: md.modified().ok(),
            changed,
            inode,
        }
    }

    /// The latest of the modification and change times.
    fn latest(&self) -> Option<SystemTime> {
        let changed = self.changed.and_then(|(s, ns)| {
            let secs = u64::try_from(s).ok()?;
            let nanos = u32::try_from(ns).ok()?;
            SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
        });
        match (self.modified, changed) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// True when a digest taken at a scan that started at `previous_scan` may be reused for a file
/// whose metadata is `now` (and was `before` then).
fn may_reuse(before: &Stamp, now: &Stamp, previous_scan: SystemTime) -> bool {
    before == now
        && now
            .latest()
            .and_then(|t| t.checked_add(RACY_WINDOW))
            .is_some_and(|t| t < previous_scan)
}

impl CatalogFingerprint {
    /// Scans everything the catalog of `config_file` reads, hashing every file.
    pub fn scan(config_file: &Path) -> CatalogFingerprint {
        Self::scan_with(config_file, None)
    }

    /// Scans again, reusing the digests of files that have certainly not changed since this
    /// fingerprint was taken. Compare the result with `self` (`!=`) to know whether to reload.
    pub fn rescan(&self, config_file: &Path) -> CatalogFingerprint {
        Self::scan_with(config_file, Some(self))
    }

    /// Paths whose presence or content differ between the two fingerprints, sorted.
    pub fn changed_paths(&self, other: &CatalogFingerprint) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self
            .entries
            .iter()
            .filter(|(p, e)| !other.entries.get(*p).is_some_and(|o| o.same_content(e)))
            .map(|(p, _)| p.clone())
            .collect();
        out.extend(
            other
                .entries
                .keys()
                .filter(|p| !self.entries.contains_key(*p))
                .cloned(),
        );
        out.sort();
        out
    }

    /// Number of paths (folders and files) the fingerprint covers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing was found (not even the configuration file).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of files read and hashed by the scan that made this fingerprint (the others
    /// reused the previous digest).
    pub fn files_hashed(&self) -> usize {
        self.hashed
    }

    /// When the scan that made this fingerprint started.
    pub fn scanned_at(&self) -> SystemTime {
        self.started
    }

    fn scan_with(config_file: &Path, previous: Option<&CatalogFingerprint>) -> Self {
        let mut scan = Scan {
            previous,
            fp: CatalogFingerprint {
                entries: BTreeMap::new(),
                started: SystemTime::now(),
                hashed: 0,
            },
        };
        scan.file(config_file);
        // The rest is found through the configuration; a configuration that does not parse
        // fails the load anyway, and fixing it changes its own entry.
        let config = fs::read_to_string(config_file)
            .ok()
            .and_then(|text| MeshConfig::parse(config_file, &text, std::env::vars()).ok());
        if let Some(config) = config {
            scan.catalog(&config.catalog_dir);
            if let Some(jwt) = &config.jwt {
                for key in jwt.rs256_public_keys.iter().chain(&jwt.jwks_file) {
                    scan.file(key);
                }
            }
            for d in &config.domains {
                if let Some(secrets) = &d.secrets_file {
                    scan.file(secrets);
                }
            }
        }
        scan.fp
    }
}

impl PartialEq for CatalogFingerprint {
    /// Same paths with the same content (metadata alone does not count).
    fn eq(&self, other: &Self) -> bool {
        self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .all(|(p, e)| other.entries.get(p).is_some_and(|o| o.same_content(e)))
    }
}

impl Eq for CatalogFingerprint {}

struct Scan<'a> {
    previous: Option<&'a CatalogFingerprint>,
    fp: CatalogFingerprint,
}

impl Scan<'_> {
    fn error(&mut self, path: &Path, e: &std::io::Error) {
        self.fp
            .entries
            .insert(path.to_path_buf(), Entry::Error(e.kind().to_string()));
    }

    fn file(&mut self, path: &Path) {
        let md = match fs::metadata(path) {
            Ok(md) => md,
            Err(e) => return self.error(path, &e),
        };
        let stamp = Stamp::of(&md);
        if let Some(prev) = self.previous {
            if let Some(Entry::File {
                stamp: before,
                digest,
            }) = prev.entries.get(path)
            {
                if may_reuse(before, &stamp, prev.started) {
                    let digest = *digest;
                    self.fp
                        .entries
                        .insert(path.to_path_buf(), Entry::File { stamp, digest });
                    return;
                }
            }
        }
        match fs::read(path) {
            Ok(bytes) => {
                self.fp.hashed += 1;
                let digest: [u8; 32] = Sha256::digest(&bytes).into();
                self.fp
                    .entries
                    .insert(path.to_path_buf(), Entry::File { stamp, digest });
            }
            Err(e) => self.error(path, &e),
        }
    }

    /// `<dir>/<folder>/` for every folder, with its `policies.toml` and `products/*.toml`.
    fn catalog(&mut self, dir: &Path) {
        let mut folders = match sorted_entries(dir) {
            Ok(e) => e,
            Err(e) => return self.error(dir, &e),
        };
        folders.retain(|p| p.is_dir());
        for folder in folders {
            self.fp.entries.insert(folder.clone(), Entry::Dir);
            let policies = folder.join(POLICY_FILE);
            if policies.exists() {
                self.file(&policies);
            }
            let products = folder.join("products");
            if !products.is_dir() {
                continue;
            }
            self.fp.entries.insert(products.clone(), Entry::Dir);
            match sorted_entries(&products) {
                Ok(files) => {
                    for f in files
                        .iter()
                        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    {
                        self.file(f);
                    }
                }
                Err(e) => self.error(&products, &e),
            }
        }
    }
}

fn sorted_entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(len: u64, secs: u64) -> Stamp {
        Stamp {
            len,
            modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
            changed: Some((secs as i64, 0)),
            inode: Some((1, 2)),
        }
    }

    #[test]
    fn racy_files_are_hashed_again() {
        let scan = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        // Unchanged and well before the previous scan: reuse.
        assert!(may_reuse(&stamp(10, 900), &stamp(10, 900), scan));
        // Unchanged metadata but written in the same second as the scan (or just before it):
        // an edit right after the scan could carry the same size and times; hash again.
        assert!(!may_reuse(&stamp(10, 1_000), &stamp(10, 1_000), scan));
        assert!(!may_reuse(&stamp(10, 999), &stamp(10, 999), scan));
        // Any metadata change: hash again.
        assert!(!may_reuse(&stamp(10, 900), &stamp(11, 900), scan));
        assert!(!may_reuse(&stamp(10, 900), &stamp(10, 901), scan));
        let mut moved = stamp(10, 900);
        moved.inode = Some((1, 3));
        assert!(!may_reuse(&stamp(10, 900), &moved, scan));
        // Unknown times: never trusted.
        let unknown = Stamp {
            len: 10,
            modified: None,
            changed: None,
            inode: None,
        };
        assert!(!may_reuse(&unknown, &unknown, scan));
    }
}
