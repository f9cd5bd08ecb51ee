//! The HTTP side every request of the sink shares: the endpoints (`endpoints`, or
//! the one `cloud_id` stands for), the client (timeouts, and the `tls:` block's
//! rustls settings), and the credentials (`user`/`password` as basic auth,
//! `api_key` as `Authorization: ApiKey <key>`, or AWS SigV4 with `aws:`).

use std::sync::Arc;

use nagare_core::config::Secret;
use nagare_core::tls::ClientTlsError;
use reqwest::RequestBuilder;
use reqwest::header::{AUTHORIZATION, HeaderValue};

use super::auth::{AwsSigner, SignError};
use super::cloud;
use super::config::ElasticsearchConfig;

/// Why the HTTP client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The `tls:` block's files or settings.
    #[error("tls: {0}")]
    Tls(#[from] ClientTlsError),
    /// reqwest refused the settings.
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    /// `cloud_id` does not decode (caught by validate first).
    #[error("cloud_id: {0}")]
    CloudId(String),
}

/// How requests authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    /// None.
    None,
    /// HTTP basic authentication.
    Basic(String, Secret),
    /// `Authorization: ApiKey <base64 id:key>`.
    ApiKey(Secret),
    /// AWS SigV4 (Amazon OpenSearch Service, managed or Serverless): each request
    /// signed once it is built, body included.
    Aws(Arc<AwsSigner>),
}

impl Auth {
    /// The credentials a validated config gives, but for `aws:` (whose signer is
    /// made from the AWS credentials chain, asynchronously, by the sink).
    pub fn of(config: &ElasticsearchConfig) -> Auth {
        match (&config.api_key, &config.user) {
            (Some(key), _) => Auth::ApiKey(key.clone()),
            (None, Some(user)) => {
                Auth::Basic(user.clone(), config.password.clone().unwrap_or_default())
            }
            (None, None) => Auth::None,
        }
    }

    /// Adds the credentials to a request.
    pub fn apply(&self, request: RequestBuilder) -> RequestBuilder {
        match self {
            Auth::None => request,
            Auth::Basic(user, password) => request.basic_auth(user, Some(password.expose())),
            Auth::ApiKey(key) => match HeaderValue::from_str(&format!("ApiKey {}", key.expose())) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    request.header(AUTHORIZATION, value)
                }
                // Refused at validate: an API key is base64.
                Err(_) => request,
            },
            // Signed once built: see `sign`.
            Auth::Aws(_) => request,
        }
    }

    /// Signs a built request, with `aws:`; nothing to do otherwise.
    pub async fn sign(&self, request: &mut reqwest::Request) -> Result<(), SignError> {
        match self {
            Auth::Aws(signer) => signer.sign_request(request).await,
            _ => Ok(()),
        }
    }

    /// What to check when the cluster refuses these credentials (401, 403), for
    /// all but `aws:` (whose hint `auth::auth_hint` writes).
    pub fn hint(&self) -> String {
        match self {
            Auth::None => {
                "the cluster asks for credentials: set `user` and `password`, or `api_key`".into()
            }
            Auth::Basic(..) => "check `user` and `password` and the user's privileges".into(),
            Auth::ApiKey(_) => "check `api_key` (the base64 `encoded` value), that the key has not expired or been invalidated, and its privileges".into(),
            Auth::Aws(signer) => format!(
                "check the AWS credentials and policies for `{}` in {}",
                signer.service().as_str(),
                signer.region()
            ),
        }
    }

    /// With `aws:`, which access key the last request was signed with (see
    /// [`auth::key_words`](super::auth::key_words)).
    pub fn signed_with(&self) -> Option<String> {
        match self {
            Auth::Aws(signer) => signer.signed_with(),
            _ => None,
        }
    }

    /// What is tried, for logs (never the secret).
    pub fn describe(&self) -> String {
        match self {
            Auth::None => "no credentials".into(),
            Auth::Basic(user, _) => format!("basic auth as `{user}`"),
            Auth::ApiKey(_) => "an API key".into(),
            Auth::Aws(signer) => format!(
                "AWS SigV4 for `{}` in {}",
                signer.service().as_str(),
                signer.region()
            ),
        }
    }
}

/// The base URLs requests go to, without a trailing `/`.
pub fn endpoints(config: &ElasticsearchConfig) -> Result<Vec<String>, ClientError> {
    match &config.cloud_id {
        Some(id) => Ok(vec![cloud::decode(id).map_err(ClientError::CloudId)?]),
        None => Ok(config
            .endpoints
            .iter()
            .map(|e| e.trim_end_matches('/').to_string())
            .collect()),
    }
}

/// The HTTP client for a validated config: its timeouts, and its `tls:` settings
/// (every file read now, so that a mistake fails the start).
pub fn http_client(config: &ElasticsearchConfig) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .timeout(config.request_timeout())
        .connect_timeout(
            config
                .request_timeout()
                .min(std::time::Duration::from_secs(10)),
        )
        .pool_idle_timeout(std::time::Duration::from_secs(60));
    if let Some(tls) = &config.tls {
        let rustls = tls.client_config()?;
        builder = builder.tls_backend_preconfigured((*rustls).clone());
    }
    Ok(builder.build()?)
}

/// An error and its causes, `: `-separated: reqwest's own message alone ("error
/// sending request") does not say that the connection was refused, or why a
/// certificate was not trusted.
pub fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Checks the connection settings: where (`endpoints` or `cloud_id`), who
/// (`user`/`password` or `api_key`) and how (`tls`).
pub fn validate(config: &ElasticsearchConfig) -> Result<(), nagare_core::component::Invalid> {
    use nagare_core::component::Invalid;
    match (&config.cloud_id, config.endpoints.is_empty()) {
        (None, true) => {
            return Err(Invalid::new(
                "endpoints",
                "give at least one endpoint, like `http://elasticsearch:9200` (or `cloud_id` for Elastic Cloud)",
            ));
        }
        (Some(_), false) => {
            return Err(Invalid::new(
                "cloud_id",
                "set either `cloud_id` (Elastic Cloud) or `endpoints`, not both: the Cloud ID already names the endpoint",
            ));
        }
        (Some(id), true) => {
            cloud::decode(id).map_err(|why| Invalid::new("cloud_id", why))?;
        }
        (None, false) => {}
    }
    if let Some(key) = &config.api_key {
        if config.user.is_some() || config.password.is_some() {
            return Err(Invalid::new(
                "api_key",
                "set either `api_key` or `user`/`password`, not both",
            ));
        }
        api_key_problem(key.expose()).map_or(Ok(()), |why| Err(Invalid::new("api_key", why)))?;
    }
    if let Some(tls) = &config.tls {
        tls.validate(false)?;
        if config.cloud_id.is_none() && !config.endpoints.iter().any(|e| e.starts_with("https://"))
        {
            return Err(Invalid::new(
                "tls",
                "no endpoint is https://, so the TLS settings would never be used; make the endpoints https:// or remove `tls`",
            ));
        }
    }
    Ok(())
}

/// Why `key` is not the base64 `id:api_key` value Elasticsearch issues, if it is not.
fn api_key_problem(key: &str) -> Option<String> {
    use base64::Engine;
    let key = key.trim();
    if key.is_empty() {
        return Some(format!(
            "the API key is empty{}",
            nagare_core::config::Secret::EMPTY_HINT
        ));
    }
    if key.contains(':') {
        return Some(
            "this looks like `id:api_key`; give the `encoded` value Elasticsearch returned with the key (the base64 of `id:api_key`)".into(),
        );
    }
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(bytes) if bytes.contains(&b':') => None,
        Ok(_) => Some(
            "the key decodes, but not to `id:api_key`; give the `encoded` value Elasticsearch returned with the key".into(),
        ),
        Err(_) => Some(
            "the key is not base64; give the `encoded` value Elasticsearch returned with the key (the base64 of `id:api_key`)".into(),
        ),
    }
}
