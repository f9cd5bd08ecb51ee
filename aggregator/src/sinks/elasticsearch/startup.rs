//! What the sink does once before its first `_bulk`: learn which API the cluster
//! speaks (`api_version: auto` asks `GET /`), and install the index template.
//!
//! A cluster that does not answer (down, 5xx, 429) is asked again with backoff
//! until it does, or until the sink stops (aborted, or its buffer closed with
//! nothing to deliver): nothing could be delivered meanwhile anyway, and the chunks
//! wait in the buffer. A cluster that refuses to say (401,
//! 403, 404 on `GET /`) is taken for Elasticsearch 8, with a warning; a template the
//! cluster refuses is logged as an error and the sink goes on without it.

use std::time::Duration;

use nagare_core::retry::Backoff;
use reqwest::Method;

use super::client::{Auth, error_chain};
use super::config::ElasticsearchConfig;
use super::template::TemplateRequest;
use super::version::{self, ApiVersion, Cluster};

/// The HTTP pieces start-up requests use.
#[derive(Debug)]
pub struct Startup<'a> {
    /// The sink's name, for logs.
    pub sink: &'a str,
    /// The sink's config.
    pub config: &'a ElasticsearchConfig,
    /// The client.
    pub client: &'a reqwest::Client,
    /// Base URLs.
    pub endpoints: &'a [String],
    /// Credentials.
    pub auth: &'a Auth,
    /// What to check when the credentials cannot be had or are refused (for SigV4:
    /// where they come from, the role, the region and service).
    pub hint: &'a str,
}

/// How often a cluster that cannot be reached at start is logged, after the first
/// failure.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// A failure worth trying again (no answer, 5xx, 429).
#[derive(Debug)]
struct Transient(String);

impl Startup<'_> {
    /// Learns the cluster's API and installs the template; `None` if `stopped`
    /// resolved first.
    pub async fn run(&self, stopped: impl Future<Output = ()>) -> Option<Cluster> {
        tokio::pin!(stopped);
        let backoff = Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            ..Backoff::default()
        };
        let mut attempt = 0u32;
        // Logged at the first failure, then once a minute with the attempts since.
        let mut logged: Option<tokio::time::Instant> = None;
        let mut unlogged = 0u32;
        // What `GET /` said, kept when the template is what failed: asked once.
        let mut known: Option<Cluster> = None;
        loop {
            let endpoint = &self.endpoints[attempt as usize % self.endpoints.len()];
            match self.once(endpoint, &mut known).await {
                Ok(cluster) => return Some(cluster),
                Err(Transient(why)) => {
                    let now = tokio::time::Instant::now();
                    if logged.is_none_or(|at| now.duration_since(at) >= LOG_EVERY) {
                        tracing::warn!(
                            sink = %self.sink,
                            endpoint = %endpoint,
                            error = %why,
                            attempts = attempt + 1,
                            failed_unlogged = unlogged,
                            "cannot reach Elasticsearch at start (to learn its version and install the template); trying again, said again once a minute"
                        );
                        logged = Some(now);
                        unlogged = 0;
                    } else {
                        unlogged += 1;
                    }
                    let wait = backoff.delay(attempt);
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        () = &mut stopped => return None,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    async fn once(
        &self,
        endpoint: &str,
        known: &mut Option<Cluster>,
    ) -> Result<Cluster, Transient> {
        let cluster = match (Cluster::configured(self.config.api_version), *known) {
            (Some(cluster), _) | (None, Some(cluster)) => cluster,
            // OpenSearch Serverless does not serve `GET /`: not asked.
            (None, None) if self.config.serverless() => Cluster::configured(ApiVersion::Opensearch)
                .expect("an explicit api_version names its cluster"),
            (None, None) => self.detect(endpoint).await?,
        };
        *known = Some(cluster);
        if let Some(template) = self.config.template.as_ref().filter(|t| t.install) {
            let (ilm, ism) = (template.ilm_policy.is_some(), template.ism_policy.is_some());
            if (ilm && cluster.is_opensearch()) || (ism && !cluster.is_opensearch()) {
                tracing::warn!(
                    sink = %self.sink,
                    %cluster,
                    "the template's {} does not apply to this cluster and is left out; use {}",
                    if ilm { "ilm_policy" } else { "ism_policy" },
                    if ilm { "ism_policy on OpenSearch" } else { "ilm_policy on Elasticsearch" },
                );
            }
            match template.request(self.config, cluster) {
                Ok(request) => self.install(endpoint, &request, template.overwrite).await?,
                Err(why) => tracing::error!(
                    sink = %self.sink,
                    error = %why,
                    "cannot read the index template; going on without it"
                ),
            }
        }
        Ok(cluster)
    }

    /// `GET /`: the distribution and version.
    async fn detect(&self, endpoint: &str) -> Result<Cluster, Transient> {
        let (status, body) = self.call(Method::GET, endpoint, "/", None).await?;
        if version::refused(status) {
            tracing::warn!(
                sink = %self.sink,
                endpoint = %endpoint,
                status,
                auth = %self.auth.describe(),
                "GET / is not allowed (Serverless, or a user without the `monitor` privilege), so the cluster's version is unknown; going on as with Elasticsearch 8 (set `api_version` to say otherwise)"
            );
            return Ok(Cluster::fallback());
        }
        if !(200..300).contains(&status) {
            return Err(Transient(format!(
                "GET / answered {status}: {}",
                excerpt(&body)
            )));
        }
        match Cluster::from_root(&body) {
            Ok(cluster) => {
                tracing::info!(sink = %self.sink, endpoint = %endpoint, %cluster, "cluster version detected");
                Ok(cluster)
            }
            Err(why) => {
                tracing::warn!(
                    sink = %self.sink,
                    endpoint = %endpoint,
                    error = %why,
                    "cannot read the cluster's version; going on as with Elasticsearch 8 (set `api_version` to say otherwise)"
                );
                Ok(Cluster::fallback())
            }
        }
    }

    /// `GET` (which every version serves for both kinds of template, where `HEAD`
    /// came later) then, where there is none or `overwrite`, `PUT`.
    async fn install(
        &self,
        endpoint: &str,
        request: &TemplateRequest,
        overwrite: bool,
    ) -> Result<(), Transient> {
        let path = &request.path;
        let (status, answer) = self.call(Method::GET, endpoint, path, None).await?;
        let exists = match status {
            200 => true,
            404 => false,
            401 | 403 => {
                self.not_allowed(path, status);
                return Ok(());
            }
            other => {
                tracing::error!(
                    sink = %self.sink,
                    template = %path,
                    status = other,
                    reason = %excerpt(&answer),
                    "cannot tell whether the index template is there; going on without installing it"
                );
                return Ok(());
            }
        };
        if exists && !overwrite {
            tracing::info!(sink = %self.sink, template = %path, "index template already there; left as it is (`template.overwrite: true` replaces it)");
            return Ok(());
        }
        let body = serde_json::to_vec(&request.body).unwrap_or_default();
        let (status, answer) = self.call(Method::PUT, endpoint, path, Some(body)).await?;
        match status {
            200..=299 => {
                tracing::info!(sink = %self.sink, template = %path, replaced = exists, "index template installed");
                Ok(())
            }
            401 | 403 => {
                self.not_allowed(path, status);
                Ok(())
            }
            400..=499 => {
                tracing::error!(
                    sink = %self.sink,
                    template = %path,
                    status,
                    reason = %excerpt(&answer),
                    "the cluster refused the index template; going on without it (new indices get dynamic mappings)"
                );
                Ok(())
            }
            other => Err(Transient(format!(
                "PUT {path} answered {other}: {}",
                excerpt(&answer)
            ))),
        }
    }

    fn not_allowed(&self, path: &str, status: u16) {
        tracing::warn!(
            sink = %self.sink,
            template = %path,
            status,
            auth = %self.auth.describe(),
            "not allowed to install the index template (it needs the `manage_index_templates` privilege); going on without it"
        );
    }

    async fn call(
        &self,
        method: Method,
        endpoint: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, bytes::Bytes), Transient> {
        let url = format!("{endpoint}{path}");
        let mut request = self.auth.apply(self.client.request(method.clone(), &url));
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let fail = |e: reqwest::Error| Transient(format!("{method} {url}: {}", error_chain(&e)));
        let mut request = request.build().map_err(fail)?;
        self.auth
            .sign(&mut request)
            .await
            .map_err(|e| Transient(format!("{method} {url}: {e}; {}", self.hint)))?;
        let response = self.client.execute(request).await.map_err(fail)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(fail)?;
        if status == 429 || status >= 500 {
            return Err(Transient(format!(
                "{method} {url} answered {status}: {}",
                excerpt(&body)
            )));
        }
        Ok((status, body))
    }
}

/// The start of an answer, for logs.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(300).collect()
}
