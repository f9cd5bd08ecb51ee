//! Google Cloud credentials for the sinks that call Google APIs (BigQuery).
//!
//! Application Default Credentials, in Google's order:
//! 1. a service-account key file: the sink's `credentials_file`, else the file
//!    `GOOGLE_APPLICATION_CREDENTIALS` names. A JWT signed with the key (RS256) is
//!    exchanged for an access token at the key's own `token_uri` (the OAuth 2.0
//!    JWT-bearer grant);
//! 2. else the metadata server of the GCE VM or GKE node (with GKE Workload Identity,
//!    the pod's Kubernetes service account mapped to a Google one), at
//!    `metadata.google.internal`, or at `GCE_METADATA_HOST` (`host:port`) as Google's
//!    own libraries allow;
//! 3. or none at all, for an emulator that checks no `Authorization` header.
//!
//! The signing and the two token requests are yup-oauth2's (on rustls and aws-lc-rs).
//! What is written here is the choice between them, the error messages that name the
//! file or server, and the cache: a token is reused until [`REFRESH_EARLY`] before it
//! expires, so a request never leaves with a token that expires on the way.
//! Nothing here prints a token or a private key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nagare_core::config::Secret;
use tokio::sync::Mutex;
use yup_oauth2::authenticator::{ApplicationDefaultCredentialsTypes, DefaultAuthenticator};
use yup_oauth2::{
    ApplicationDefaultCredentialsAuthenticator, ApplicationDefaultCredentialsFlowOpts,
    ServiceAccountAuthenticator,
};

/// The OAuth scope that lets a token call BigQuery (datasets, tables, insertAll,
/// the Storage Write API).
pub const BIGQUERY_SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

/// How long before its expiry a token is replaced: longer than any request may take
/// with its retries, shorter than the hour Google's tokens last.
pub const REFRESH_EARLY: Duration = Duration::from_secs(5 * 60);

/// How long one token request may take before it is given up.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The metadata server's name on GCE and GKE.
const METADATA_HOST: &str = "metadata.google.internal";

/// The metadata server's token path, for the instance's default service account.
const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// Where the credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsSource {
    /// A service-account key file (JSON, as the Cloud console downloads it).
    KeyFile(PathBuf),
    /// The metadata server's token URL.
    Metadata(String),
    /// No credentials: requests carry no `Authorization` header (emulators).
    None,
}

impl CredentialsSource {
    /// Application Default Credentials: `credentials_file`, else the file
    /// `GOOGLE_APPLICATION_CREDENTIALS` names, else the metadata server
    /// (`GCE_METADATA_HOST`, else `metadata.google.internal`).
    pub fn application_default(credentials_file: Option<&Path>) -> Self {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if let Some(path) = credentials_file {
            CredentialsSource::KeyFile(path.to_path_buf())
        } else if let Some(path) = env("GOOGLE_APPLICATION_CREDENTIALS") {
            CredentialsSource::KeyFile(PathBuf::from(path))
        } else {
            let host = env("GCE_METADATA_HOST").unwrap_or_else(|| METADATA_HOST.to_string());
            CredentialsSource::Metadata(format!("http://{}{METADATA_TOKEN_PATH}", host.trim()))
        }
    }
}

impl fmt::Display for CredentialsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialsSource::KeyFile(path) => {
                write!(f, "service-account key file {}", path.display())
            }
            CredentialsSource::Metadata(url) => write!(f, "metadata server {url}"),
            CredentialsSource::None => f.write_str("no credentials"),
        }
    }
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum GcpAuthError {
    /// The key file could not be read.
    #[error(
        "cannot read the service-account key file {path}: {source}; point `credentials_file` or GOOGLE_APPLICATION_CREDENTIALS at a key file of the service account"
    )]
    KeyFileUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file is not a service-account key, or its private key is unusable.
    #[error(
        "{path} is not a usable service-account key ({source}); it must be the JSON key file of a service account (`\"type\": \"service_account\"` with `client_email`, `private_key` and `token_uri`), as `gcloud iam service-accounts keys create` writes it"
    )]
    KeyFileInvalid {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        source: std::io::Error,
    },
    /// The token endpoint answered with an OAuth error (`invalid_grant`, ...).
    #[error(
        "the token endpoint {token_uri} refused the key of {client_email} in {path}: {error}; check that the key is not deleted or disabled, that the service account exists, and that this machine's clock is right"
    )]
    Refused {
        /// The key file.
        path: PathBuf,
        /// The service account.
        client_email: String,
        /// The key's `token_uri`.
        token_uri: String,
        /// The OAuth error code and description the endpoint sent.
        error: String,
    },
    /// The token endpoint could not be reached or answered with no token.
    #[error(
        "no token from the token endpoint {token_uri} for {client_email} in {path}: {error}; check that this machine can reach {token_uri}"
    )]
    TokenEndpoint {
        /// The key file.
        path: PathBuf,
        /// The service account.
        client_email: String,
        /// The key's `token_uri`.
        token_uri: String,
        /// What went wrong.
        error: String,
    },
    /// The metadata server could not be reached or answered with no token.
    #[error(
        "no token from the metadata server {url}: {error}; on GKE enable Workload Identity on the node pool and bind the pod's Kubernetes service account to a Google service account, elsewhere set `credentials_file` or GOOGLE_APPLICATION_CREDENTIALS"
    )]
    Metadata {
        /// The token URL asked.
        url: String,
        /// What went wrong.
        error: String,
    },
}

/// An access token and when it expires.
#[derive(Clone)]
pub struct Token {
    secret: Secret,
    expires_at: Option<SystemTime>,
}

impl Token {
    /// The token itself, for the `Authorization: Bearer` header and nothing else.
    pub fn expose(&self) -> &str {
        self.secret.expose()
    }

    /// When it expires, if the server said.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// Whether it is within [`REFRESH_EARLY`] of expiring at `now`.
    fn is_due(&self, now: SystemTime) -> bool {
        self.expires_at
            .is_some_and(|at| at.checked_sub(REFRESH_EARLY).is_none_or(|due| due <= now))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("secret", &self.secret)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Tokens from one [`CredentialsSource`], cached until [`REFRESH_EARLY`] before they
/// expire.
pub struct GoogleAuth {
    source: CredentialsSource,
    kind: Kind,
    scopes: Vec<String>,
    /// The current token. An async lock, so callers that find it due wait for one
    /// refresh instead of each asking the server.
    cache: Mutex<Option<Token>>,
}

enum Kind {
    ServiceAccount {
        client_email: String,
        token_uri: String,
        auth: DefaultAuthenticator,
    },
    Metadata {
        auth: DefaultAuthenticator,
    },
    None,
}

impl fmt::Debug for GoogleAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("GoogleAuth");
        d.field("source", &self.source);
        if let Kind::ServiceAccount {
            client_email,
            token_uri,
            ..
        } = &self.kind
        {
            d.field("client_email", client_email)
                .field("token_uri", token_uri);
        }
        d.field("scopes", &self.scopes).finish_non_exhaustive()
    }
}

impl GoogleAuth {
    /// Credentials from `source` for `scopes`. A key file is read and its private key
    /// parsed here, so a bad file is refused at startup; no token is asked for yet.
    pub async fn new(source: CredentialsSource, scopes: &[&str]) -> Result<Self, GcpAuthError> {
        let kind = match &source {
            CredentialsSource::KeyFile(path) => {
                let bytes = tokio::fs::read(path).await.map_err(|source| {
                    GcpAuthError::KeyFileUnreadable {
                        path: path.clone(),
                        source,
                    }
                })?;
                let invalid = |source| GcpAuthError::KeyFileInvalid {
                    path: path.clone(),
                    source,
                };
                let key = yup_oauth2::parse_service_account_key(bytes).map_err(invalid)?;
                let (client_email, token_uri) = (key.client_email.clone(), key.token_uri.clone());
                let auth = ServiceAccountAuthenticator::builder(key)
                    .with_timeout(TOKEN_TIMEOUT)
                    .build()
                    .await
                    .map_err(invalid)?;
                Kind::ServiceAccount {
                    client_email,
                    token_uri,
                    auth,
                }
            }
            CredentialsSource::Metadata(url) => {
                let opts = ApplicationDefaultCredentialsFlowOpts {
                    metadata_url: Some(url.clone()),
                };
                // yup-oauth2 builds the metadata flow only through its own ADC
                // chooser, which prefers GOOGLE_APPLICATION_CREDENTIALS; the source was
                // chosen without it set, so the key-file arm is taken only if it was
                // set since, and is then what ADC means.
                let builder = match ApplicationDefaultCredentialsAuthenticator::builder(opts).await
                {
                    ApplicationDefaultCredentialsTypes::InstanceMetadata(b) => {
                        b.with_timeout(TOKEN_TIMEOUT).build().await
                    }
                    ApplicationDefaultCredentialsTypes::ServiceAccount(b) => {
                        b.with_timeout(TOKEN_TIMEOUT).build().await
                    }
                };
                let auth = builder.map_err(|e| GcpAuthError::Metadata {
                    url: url.clone(),
                    error: e.to_string(),
                })?;
                Kind::Metadata { auth }
            }
            CredentialsSource::None => Kind::None,
        };
        Ok(GoogleAuth {
            source,
            kind,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            cache: Mutex::new(None),
        })
    }

    /// Where the tokens come from.
    pub fn source(&self) -> &CredentialsSource {
        &self.source
    }

    /// A token valid for at least [`REFRESH_EARLY`] more (unless the server gives
    /// shorter ones), or `None` with [`CredentialsSource::None`].
    pub async fn token(&self) -> Result<Option<Token>, GcpAuthError> {
        if matches!(self.kind, Kind::None) {
            return Ok(None);
        }
        let mut cache = self.cache.lock().await;
        if let Some(token) = cache.as_ref()
            && !token.is_due(SystemTime::now())
        {
            return Ok(Some(token.clone()));
        }
        let token = self.fetch().await?;
        *cache = Some(token.clone());
        Ok(Some(token))
    }

    /// A new token from the server, never yup-oauth2's cached one: its cache keeps a
    /// token until one minute before expiry, ours refreshes earlier.
    async fn fetch(&self) -> Result<Token, GcpAuthError> {
        let scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        let auth = match &self.kind {
            Kind::ServiceAccount { auth, .. } | Kind::Metadata { auth, .. } => auth,
            Kind::None => unreachable!("token() answers None without fetching"),
        };
        let access = auth
            .force_refreshed_token(&scopes)
            .await
            .map_err(|e| self.error(e))?;
        let secret = access
            .token()
            .ok_or_else(|| self.error(yup_oauth2::Error::MissingAccessToken))?;
        let expires_at = access.expiration_time().map(|at| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(at.unix_timestamp().max(0) as u64)
        });
        Ok(Token {
            secret: Secret::new(secret),
            expires_at,
        })
    }

    /// What `e`, from a token request, means: which file or server, what was refused.
    fn error(&self, e: yup_oauth2::Error) -> GcpAuthError {
        match (&self.kind, &self.source) {
            (
                Kind::ServiceAccount {
                    client_email,
                    token_uri,
                    ..
                },
                CredentialsSource::KeyFile(path),
            ) => {
                let (path, client_email, token_uri) =
                    (path.clone(), client_email.clone(), token_uri.clone());
                match e {
                    // An OAuth error body (`{"error": "invalid_grant", ...}`).
                    yup_oauth2::Error::AuthError(error) => GcpAuthError::Refused {
                        path,
                        client_email,
                        token_uri,
                        error: error.to_string(),
                    },
                    e => GcpAuthError::TokenEndpoint {
                        path,
                        client_email,
                        token_uri,
                        error: e.to_string(),
                    },
                }
            }
            (_, source) => GcpAuthError::Metadata {
                url: match source {
                    CredentialsSource::Metadata(url) => url.clone(),
                    other => other.to_string(),
                },
                error: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_due_five_minutes_before_it_expires() {
        let now = SystemTime::now();
        let token = |secs: u64| Token {
            secret: Secret::new("ya29.secret"),
            expires_at: Some(now + Duration::from_secs(secs)),
        };
        assert!(token(60).is_due(now));
        assert!(token(300).is_due(now));
        assert!(!token(301).is_due(now));
        assert!(!token(3600).is_due(now));
        let forever = Token {
            secret: Secret::new("ya29.secret"),
            expires_at: None,
        };
        assert!(!forever.is_due(now));
    }

    #[test]
    fn debug_prints_no_token() {
        let token = Token {
            secret: Secret::new("ya29.secret"),
            expires_at: None,
        };
        assert!(!format!("{token:?}").contains("ya29"), "{token:?}");
    }

    #[test]
    fn the_key_file_comes_first_then_the_environment() {
        let file = Path::new("/etc/nagare/key.json");
        assert_eq!(
            CredentialsSource::application_default(Some(file)),
            CredentialsSource::KeyFile(file.into())
        );
    }
}
