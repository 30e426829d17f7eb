//! TLS for `mqtts://` and `wss://` brokers: a rustls client configuration per class, built
//! from the class's PEM files (CA to trust, and for mutual TLS a client certificate chain and
//! key), parsed with rustls-pki-types. Without a CA file the system's trust store is used.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::RunError;
use crate::scenario::TlsFiles;

/// Builds the client configuration of a class.
pub fn client_config(files: Option<&TlsFiles>) -> Result<Arc<rustls::ClientConfig>, RunError> {
    let roots = match files.and_then(|f| f.ca.as_deref()) {
        Some(ca) => roots_from(ca)?,
        None => system_roots()?,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| RunError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let config = match files.map(|f| (&f.cert, &f.key)) {
        Some((Some(cert), Some(key))) => {
            let chain = certs_from(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                RunError::Tls(format!(
                    "{}: no private key read ({e}); give a PEM file with a PKCS#8, PKCS#1 or \
                     SEC1 key",
                    key.display()
                ))
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| RunError::Tls(format!("client certificate and key: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn certs_from(path: &Path) -> Result<Vec<CertificateDer<'static>>, RunError> {
    let err = |why: String| RunError::Tls(format!("{}: {why}", path.display()));
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

fn roots_from(path: &Path) -> Result<RootCertStore, RunError> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from(path)? {
        roots.add(cert).map_err(|e| {
            RunError::Tls(format!(
                "{}: not a usable CA certificate: {e}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, RunError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(RunError::Tls(
            "no trusted certificate authorities: set tls.ca in the class to the PEM file of the \
             CA that signed the broker's certificate"
                .into(),
        ));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem\n").unwrap_or_else(|e| panic!("{e}"));
        let files = TlsFiles {
            ca: Some(empty.clone()),
            cert: None,
            key: None,
        };
        let err = client_config(Some(&files)).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("empty.pem") && e.contains("no certificate")),
            "{err:?}"
        );
    }
}
