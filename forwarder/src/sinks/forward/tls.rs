//! TLS to the servers: rustls with the aws-lc-rs provider (the one the rest of
//! nagare's TLS uses), CAs and client certificates from PEM files.

use std::sync::Arc;

use nagare_core::tls::{KeyFile, PemError, load_certs, load_key, load_roots};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use thiserror::Error;

use super::config::ClientTlsConfig;

/// Why the TLS settings cannot be used.
#[derive(Debug, Error)]
pub enum ClientTlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error(transparent)]
    File(#[from] PemError),
    /// rustls refused the combination.
    #[error("{0}")]
    Config(String),
}

/// Builds the client's TLS settings, reading every file now so that a mistake fails
/// the start.
pub(super) fn client_config(
    config: &ClientTlsConfig,
) -> Result<Arc<rustls::ClientConfig>, ClientTlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientTlsError::Config(e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = match &config.ca_path {
        Some(ca) if !config.insecure_skip_verify => {
            let roots = load_roots("tls.ca_path", ca)?;
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| PemError::new("tls.ca_path", ca, e))?;
            Arc::new(Verifier {
                webpki: Some(webpki),
                verify_hostname: config.verify_hostname,
                provider,
            })
        }
        _ => Arc::new(Verifier {
            webpki: None,
            verify_hostname: false,
            provider,
        }),
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let client = match (&config.cert_path, &config.private_key_path) {
        (Some(cert), Some(key)) => {
            let certs = load_certs("tls.cert_path", cert)?;
            let key = load_key(KeyFile {
                setting: "tls.private_key_path",
                path: key,
                passphrase_setting: "tls.private_key_passphrase",
                passphrase: config.private_key_passphrase.as_ref(),
            })?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                ClientTlsError::Config(format!(
                    "the client certificate in {} and the key cannot be used together: {e}",
                    cert.display()
                ))
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(client))
}

/// The name to verify a server's certificate against.
pub(super) fn server_name(
    config: &ClientTlsConfig,
    host: &str,
) -> Result<ServerName<'static>, ClientTlsError> {
    let name = config.server_name.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_string()).map_err(|e| {
        ClientTlsError::Config(format!(
            "`{name}` is not a host name or IP address a certificate can be checked against: {e}"
        ))
    })
}

/// WebPKI verification, optionally without the name check, or none at all
/// (`insecure_skip_verify`).
#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    verify_hostname: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.verify_hostname => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
