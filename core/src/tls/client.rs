//! The `tls:` block of every component that connects to a server over TLS (the
//! `forward` sink, the `elasticsearch` sink): its config, its checks, and the rustls
//! client settings built from it (aws-lc-rs, the provider the rest of nagare's TLS
//! uses).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;
use thiserror::Error;

use super::{KeyFile, PemError, load_certs, load_key, load_roots};
use crate::component::Invalid;
use crate::config::Secret;

/// TLS to a server.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// PEM file with the CA certificates that server certificates are verified
    /// against. Unset: the system's trust store (components that talk to private
    /// servers, like `forward`, require it).
    #[serde(default)]
    pub ca_path: Option<PathBuf>,
    /// PEM file with a client certificate (and its intermediates), for servers that
    /// verify clients.
    #[serde(default)]
    pub cert_path: Option<PathBuf>,
    /// PEM file with the client certificate's private key: PKCS#8, PKCS#1 or SEC1,
    /// or one of them encrypted with `private_key_passphrase`.
    #[serde(default)]
    pub private_key_path: Option<PathBuf>,
    /// The passphrase of an encrypted `private_key_path` (PKCS#8 `BEGIN ENCRYPTED
    /// PRIVATE KEY`, or OpenSSL's older `Proc-Type: 4,ENCRYPTED` PEM); Fluentd's
    /// `tls_client_private_key_passphrase`.
    #[serde(default)]
    pub private_key_passphrase: Option<Secret>,
    /// The name the server certificate must carry; defaults to the host connected to.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Check that the certificate is for the server's name (Fluentd's
    /// `tls_verify_hostname`). The chain is checked either way.
    #[serde(default = "default_verify_hostname")]
    pub verify_hostname: bool,
    /// Accept any certificate (Fluentd's `tls_insecure_mode`): encryption without
    /// authentication. For tests only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

fn default_verify_hostname() -> bool {
    true
}

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

impl ClientTlsConfig {
    /// Checks what serde cannot; keys are named under `tls.`. With `require_ca`, a
    /// CA file is needed unless `insecure_skip_verify` (servers with private CAs).
    pub fn validate(&self, require_ca: bool) -> Result<(), Invalid> {
        if require_ca && self.ca_path.is_none() && !self.insecure_skip_verify {
            return Err(Invalid::new(
                "tls.ca_path",
                "give the CA that signed the servers' certificates (or insecure_skip_verify: true, for tests only)",
            ));
        }
        if self.cert_path.is_some() != self.private_key_path.is_some() {
            return Err(Invalid::new(
                "tls",
                "a client certificate needs both cert_path and private_key_path",
            ));
        }
        if self.private_key_passphrase.is_some() && self.private_key_path.is_none() {
            return Err(Invalid::new(
                "tls.private_key_passphrase",
                "there is no private_key_path for the passphrase to decrypt; give the client certificate's cert_path and private_key_path, or remove the passphrase",
            ));
        }
        if let Some(name) = &self.server_name
            && ServerName::try_from(name.as_str()).is_err()
        {
            return Err(Invalid::new(
                "tls.server_name",
                format!(
                    "`{name}` is not a host name or IP address a certificate can be checked against"
                ),
            ));
        }
        Ok(())
    }

    /// The client's TLS settings, every file read now so that a mistake fails the
    /// start.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, ClientTlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientTlsError::Config(e.to_string()))?;
        let webpki = if self.insecure_skip_verify {
            None
        } else {
            let roots = match &self.ca_path {
                Some(ca) => load_roots("tls.ca_path", ca)?,
                None => system_roots()?,
            };
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| {
                        ClientTlsError::Config(format!("cannot verify with the CAs: {e}"))
                    })?;
            Some(webpki)
        };
        let server_name = match &self.server_name {
            Some(name) => Some(server_name(name)?),
            None => None,
        };
        let verifier = Arc::new(Verifier {
            webpki,
            verify_hostname: self.verify_hostname,
            server_name,
            provider,
        });
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let client = match (&self.cert_path, &self.private_key_path) {
            (Some(cert), Some(key)) => {
                let certs = load_certs("tls.cert_path", cert)?;
                let key = load_key(KeyFile {
                    setting: "tls.private_key_path",
                    path: key,
                    passphrase_setting: "tls.private_key_passphrase",
                    passphrase: self.private_key_passphrase.as_ref(),
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

    /// The name to verify `host`'s certificate against: `server_name`, or `host`.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, ClientTlsError> {
        server_name(self.server_name.as_deref().unwrap_or(host))
    }
}

fn server_name(name: &str) -> Result<ServerName<'static>, ClientTlsError> {
    ServerName::try_from(name.to_string()).map_err(|e| {
        ClientTlsError::Config(format!(
            "`{name}` is not a host name or IP address a certificate can be checked against: {e}"
        ))
    })
}

/// The system's trust store (the PEM bundle under /etc/ssl, or `SSL_CERT_FILE`).
fn system_roots() -> Result<RootCertStore, ClientTlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_string(), ToString::to_string);
        return Err(ClientTlsError::Config(format!(
            "no CA certificate in the system's trust store ({why}); give tls.ca_path"
        )));
    }
    Ok(roots)
}

/// WebPKI verification, optionally against a configured name, without the name
/// check, or none at all (`insecure_skip_verify`).
#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    verify_hostname: bool,
    /// `server_name`, checked instead of the name connected to.
    server_name: Option<ServerName<'static>>,
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
        let name = self.server_name.as_ref().unwrap_or(server_name);
        match webpki.verify_server_cert(end_entity, intermediates, name, ocsp_response, now) {
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
