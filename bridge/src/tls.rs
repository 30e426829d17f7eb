//! TLS towards the remote: a rustls client configuration built from PEM files (certificate
//! authorities, and for mutual TLS a client certificate chain and key), parsed with
//! rustls-pki-types.

use crate::options::TlsOptions;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a TLS configuration could not be built. Each names the file and what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("TLS file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// No trusted roots: neither `tls.ca` nor the system store gave any.
    #[error(
        "no trusted certificate authorities: set tls.ca to the PEM file of the CA that \
         signed the remote's certificate ({0})"
    )]
    NoRoots(String),
    /// rustls refused the combination (for instance a key that does not match the
    /// certificate).
    #[error("TLS configuration refused: {0}")]
    Config(String),
}

/// Builds the client configuration for `tls`.
pub fn client_config(tls: &TlsOptions) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let roots = match &tls.ca {
        Some(path) => roots_from(path)?,
        None => system_roots()?,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = certs_from(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
                path: key.clone(),
                reason: format!(
                    "no private key read ({e}); give a PEM file with a PKCS#8, PKCS#1 or SEC1 \
                     private key"
                ),
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::Config(format!("client certificate and key: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn certs_from(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::File {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(format!("cannot read it: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err(
            "holds no certificate (expected -----BEGIN CERTIFICATE----- blocks)".into(),
        ));
    }
    Ok(certs)
}

fn roots_from(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from(path)? {
        roots.add(cert).map_err(|e| TlsError::File {
            path: path.to_path_buf(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(ToString::to_string)
            .unwrap_or_else(|| "the system store is empty".into());
        return Err(TlsError::NoRoots(why));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = std::env::temp_dir().join(format!("bridge-tls-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let missing = dir.join("missing.pem");
        let opts = TlsOptions {
            ca: Some(missing.clone()),
            ..TlsOptions::default()
        };
        match client_config(&opts) {
            Err(TlsError::File { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected a file error, got {other:?}"),
        }
        let empty = dir.join("empty.pem");
        let _ = std::fs::write(&empty, "not pem\n");
        let opts = TlsOptions {
            ca: Some(empty.clone()),
            ..TlsOptions::default()
        };
        match client_config(&opts) {
            Err(TlsError::File { path, reason }) => {
                assert_eq!(path, empty);
                assert!(reason.contains("no certificate"), "{reason}");
            }
            other => panic!("expected a file error, got {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
