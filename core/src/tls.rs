//! PEM files for TLS (certificates, private keys, CA bundles), read the same way by
//! every component that speaks TLS, with errors that name the setting and the file.

use std::path::Path;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// A PEM file that could not be read or holds nothing usable.
#[derive(Debug, Error)]
#[error("cannot use {what} {path}: {reason}")]
pub struct PemError {
    /// Which setting named the file (`tls.cert_path`).
    pub what: &'static str,
    /// The file.
    pub path: String,
    /// Why.
    pub reason: String,
}

impl PemError {
    /// The error for the file `path` of the setting `what`.
    pub fn new(what: &'static str, path: &Path, reason: impl ToString) -> Self {
        Self {
            what,
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Every certificate of a PEM file; an error if it holds none.
pub fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| PemError::new(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::new(what, path, e))?;
    if certs.is_empty() {
        return Err(PemError::new(
            what,
            path,
            "no `-----BEGIN CERTIFICATE-----` block in it",
        ));
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1, unencrypted).
pub fn load_key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        PemError::new(
            what,
            path,
            format!("{e} (an unencrypted PKCS#8, PKCS#1 or SEC1 PEM key is needed)"),
        )
    })
}

/// The certificates of a CA bundle as trust roots.
pub fn load_roots(what: &'static str, path: &Path) -> Result<RootCertStore, PemError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(what, path)? {
        roots.add(cert).map_err(|e| PemError::new(what, path, e))?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_setting_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = load_certs("tls.ca_path", &empty).unwrap_err().to_string();
        assert!(e.starts_with("cannot use tls.ca_path "), "{e}");
        assert!(
            e.contains("empty.pem") && e.contains("BEGIN CERTIFICATE"),
            "{e}"
        );
        let e = load_key("tls.private_key_path", &empty)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tls.private_key_path") && e.contains("unencrypted"),
            "{e}"
        );
        let missing = dir.path().join("missing.pem");
        let e = load_roots("tls.ca_path", &missing).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
