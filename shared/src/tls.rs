//! How a cluster process checks the servers it talks to over TLS: Redis
//! behind `rediss://` and PostgreSQL with `sslmode=require`. Both backends
//! take their client settings from here, so a certificate is verified the
//! same way (chain to a trusted authority, name or address of the host in
//! the URL) whichever server it comes from.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::config::TrustedRoots;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate authorities in {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("{0} holds no PEM certificate")]
    EmptyCaFile(String),
    #[error("no certificate authority of the system could be loaded: {0}")]
    SystemRoots(String),
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// Client settings that trust `roots` and nothing else, with the ring
/// provider named explicitly: a second provider enabled by some other
/// crate would otherwise make the process-wide default ambiguous.
pub fn client_config(roots: &TrustedRoots) -> Result<ClientConfig, TlsError> {
    let store = match roots {
        TrustedRoots::System => system_roots()?,
        TrustedRoots::File(path) => roots_from_file(path)?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError::Setup(err.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(config)
}

fn roots_from_file(path: &std::path::Path) -> Result<RootCertStore, TlsError> {
    let shown = path.display().to_string();
    let ca_file_error = |reason: String| TlsError::CaFile {
        path: shown.clone(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|err| ca_file_error(err.to_string()))?;
    let mut store = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.map_err(|err| ca_file_error(err.to_string()))?;
        store
            .add(certificate)
            .map_err(|err| ca_file_error(err.to_string()))?;
    }
    if store.is_empty() {
        return Err(TlsError::EmptyCaFile(shown));
    }
    Ok(store)
}

/// The authorities of the operating system's store; unreadable entries are
/// skipped as long as some load, since one broken file in a distribution's
/// bundle should not keep a process from every properly signed server.
fn system_roots() -> Result<RootCertStore, TlsError> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (_added, _ignored) = store.add_parsable_certificates(loaded.certs);
    if store.is_empty() {
        let reason = loaded
            .errors
            .first()
            .map(|err| err.to_string())
            .unwrap_or_else(|| "the store is empty".to_owned());
        return Err(TlsError::SystemRoots(reason));
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = client_config(&TrustedRoots::File(path.clone())).unwrap_err();
        assert!(matches!(err, TlsError::EmptyCaFile(_)), "{err}");
        assert!(err.to_string().contains("empty.pem"), "{err}");
    }

    #[test]
    fn a_missing_file_is_refused_with_its_name() {
        let err = client_config(&TrustedRoots::File("/nonexistent/ca.pem".into())).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
