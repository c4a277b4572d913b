//! TLS for the Flight SQL endpoint (rustls through tonic): certificate and key from
//! `[server.tls]`, and mutual TLS when a client CA is configured.

use std::path::Path;

use meshql_catalog::TlsConfig;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("[server.tls] {what}: cannot read {}: {e}", path.display()))?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
        return Err(format!(
            "[server.tls] {what}: {} is not a PEM file (expected a `-----BEGIN ...` block)",
            path.display()
        ));
    }
    Ok(bytes)
}

/// The tonic TLS configuration for `config`, with clear errors naming the file at fault.
pub(crate) fn server_tls_config(config: &TlsConfig) -> Result<ServerTlsConfig, String> {
    // Several crypto backends are compiled in (object stores use aws-lc-rs); rustls needs one
    // chosen for the process. Installing fails harmlessly when one is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = read_pem(&config.cert, "cert")?;
    let key = read_pem(&config.key, "key")?;
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &config.client_ca {
        let ca = read_pem(ca, "client_ca")?;
        tls = tls.client_ca_root(Certificate::from_pem(ca));
    }
    Ok(tls)
}
