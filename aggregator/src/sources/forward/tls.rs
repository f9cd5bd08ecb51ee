//! TLS for the forward server: rustls with the aws-lc-rs provider (the one the
//! rest of nagare's TLS uses), certificates and keys from PEM files.

use std::sync::Arc;

use nagare_core::tls::{KeyFile, PemError, load_certs, load_key, load_roots};
use rustls::server::WebPkiClientVerifier;
use thiserror::Error;

use super::config::ServerTlsConfig;

/// Why the TLS settings cannot be used.
#[derive(Debug, Error)]
pub enum TlsSetupError {
    /// A PEM file could not be read or holds nothing usable.
    #[error(transparent)]
    File(#[from] PemError),
    /// rustls refused the combination (a key that does not belong to the
    /// certificate, say).
    #[error("{0}")]
    Config(String),
}

/// Builds the server's TLS settings, reading every file now so that a mistake fails
/// the start.
pub(super) fn server_config(
    config: &ServerTlsConfig,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = load_certs("tls.cert_path", &config.cert_path)?;
    let key = load_key(KeyFile {
        setting: "tls.private_key_path",
        path: &config.private_key_path,
        passphrase_setting: "tls.private_key_passphrase",
        passphrase: config.private_key_passphrase.as_ref(),
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Config(e.to_string()))?;
    let builder = match &config.ca_path {
        Some(ca) => {
            let roots = load_roots("tls.ca_path", ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if config.client_cert_auth {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| PemError::new("tls.ca_path", ca, e))?,
            )
        }
        None => builder.with_no_client_auth(),
    };
    let server = builder.with_single_cert(certs, key).map_err(|e| {
        TlsSetupError::Config(format!(
            "the certificate in {} and the key in {} cannot be used together: {e}; check that the key is the certificate's own",
            config.cert_path.display(),
            config.private_key_path.display()
        ))
    })?;
    Ok(Arc::new(server))
}
