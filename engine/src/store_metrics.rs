//! An `ObjectStore` wrapper that counts requests and errors per domain
//! (`meshql_object_store_requests_total`, `meshql_object_store_errors_total`), so an operator sees
//! which domain's storage is slow or failing.
//!
//! Remote buckets have one store per domain. Local (`file://`) buckets share the runtime's one
//! `file://` store, so the domain is found from the path: the domain whose bucket path is the
//! longest prefix of the location (`other` when none is). `NotFound` answers are requests, not
//! errors: meshql probes locations that way.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

use crate::telemetry::{STORE_ERRORS, STORE_REQUESTS};

/// Counts the requests of the store it wraps, by domain and operation.
#[derive(Debug)]
pub(crate) struct InstrumentedStore {
    inner: Arc<dyn ObjectStore>,
    /// `(path prefix inside the store, domain)`, longest prefix first.
    domains: Vec<(String, String)>,
}

impl InstrumentedStore {
    /// `domains`: each domain served by this store with its bucket's path inside the store.
    pub(crate) fn new(inner: Arc<dyn ObjectStore>, mut domains: Vec<(String, String)>) -> Self {
        for (prefix, _) in domains.iter_mut() {
            *prefix = prefix.trim_matches('/').to_string();
        }
        domains.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Self { inner, domains }
    }

    fn domain(&self, location: Option<&Path>) -> String {
        let path = location.map(|p| p.as_ref()).unwrap_or("");
        self.domains
            .iter()
            .find(|(prefix, _)| {
                prefix.is_empty()
                    || path == prefix
                    || path
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| "other".to_string())
    }

    fn count<T>(&self, location: Option<&Path>, op: &'static str, r: &Result<T>) {
        let domain = self.domain(location);
        metrics::counter!(STORE_REQUESTS, "domain" => domain.clone(), "operation" => op)
            .increment(1);
        // A missing object is an answer (probing whether a location is a file), not a failure.
        if matches!(r, Err(e) if !matches!(e, object_store::Error::NotFound { .. })) {
            metrics::counter!(STORE_ERRORS, "domain" => domain, "operation" => op).increment(1);
        }
    }
}

impl fmt::Display for InstrumentedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instrumented({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for InstrumentedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let r = self.inner.put_opts(location, payload, opts).await;
        self.count(Some(location), "put", &r);
        r
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let r = self.inner.put_multipart_opts(location, opts).await;
        self.count(Some(location), "put_multipart", &r);
        r
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head { "head" } else { "get" };
        let r = self.inner.get_opts(location, options).await;
        self.count(Some(location), op, &r);
        r
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let r = self.inner.get_ranges(location, ranges).await;
        self.count(Some(location), "get_ranges", &r);
        r
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let domain = self.domain(prefix);
        metrics::counter!(STORE_REQUESTS, "domain" => domain.clone(), "operation" => "list")
            .increment(1);
        self.inner
            .list(prefix)
            .inspect(move |item| {
                if item.is_err() {
                    metrics::counter!(STORE_ERRORS, "domain" => domain.clone(), "operation" => "list")
                        .increment(1);
                }
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let r = self.inner.list_with_delimiter(prefix).await;
        self.count(prefix, "list", &r);
        r
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let r = self.inner.copy_opts(from, to, options).await;
        self.count(Some(to), "copy", &r);
        r
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let r = self.inner.rename_opts(from, to, options).await;
        self.count(Some(to), "rename", &r);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[test]
    fn the_longest_bucket_prefix_names_the_domain() {
        let store = InstrumentedStore::new(
            Arc::new(InMemory::new()),
            vec![
                ("/mesh/buckets/sales/".into(), "sales".into()),
                ("/mesh/buckets/sales_eu/".into(), "sales_eu".into()),
                ("/mesh/buckets".into(), "root".into()),
            ],
        );
        let p = |s: &str| Path::from(s);
        assert_eq!(
            store.domain(Some(&p("mesh/buckets/sales/orders/a.parquet"))),
            "sales"
        );
        assert_eq!(
            store.domain(Some(&p("mesh/buckets/sales_eu/x.parquet"))),
            "sales_eu"
        );
        assert_eq!(store.domain(Some(&p("mesh/buckets/other/x"))), "root");
        assert_eq!(store.domain(Some(&p("elsewhere/x"))), "other");
        assert_eq!(store.domain(None), "other");
    }
}
