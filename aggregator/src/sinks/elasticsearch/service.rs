//! Sends `_bulk` requests: one HTTP client (`client.rs`: TLS, credentials), the
//! endpoints taken in turn (so a retry goes to the next node), gzip, a timeout per
//! request; and, as the
//! kit's [`Service`], builds a batch's request and says what its answer means
//! (`retry.rs`).

use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};

use nagare_core::sink::{BatchOutcome, Item, Outcome, Sent, Service};

use super::client::{self, Auth, ClientError, error_chain};
use super::config::{ElasticsearchConfig, OpType};
use super::request_builder::{self, BulkRequest};
use super::retry::classify;
use super::stats::BulkStats;

/// The response to one `_bulk` request.
#[derive(Debug)]
pub struct BulkResponse {
    /// The endpoint that answered.
    pub endpoint: String,
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

/// A request that got no response: connection refused or reset, timeout, TLS.
#[derive(Debug, thiserror::Error)]
#[error("{endpoint}: {}", error_chain(.error))]
pub struct SendError {
    /// The endpoint tried.
    pub endpoint: String,
    /// What failed.
    #[source]
    pub error: reqwest::Error,
}

/// Sends bulk requests to the cluster.
#[derive(Debug)]
pub struct BulkService {
    client: reqwest::Client,
    /// `<endpoint>/_bulk` of each endpoint.
    urls: Vec<String>,
    next: usize,
    auth: Auth,
    compress: bool,
    op_type: OpType,
    stats: Option<BulkStats>,
}

impl BulkService {
    /// Counts its requests and their items' statuses into `stats`.
    pub fn with_stats(mut self, stats: BulkStats) -> Self {
        self.stats = Some(stats);
        self
    }

    /// A service for a validated config.
    pub fn new(config: &ElasticsearchConfig) -> Result<Self, ClientError> {
        let client = client::http_client(config)?;
        let urls = client::endpoints(config)?
            .into_iter()
            .map(|e| format!("{e}/_bulk"))
            .collect();
        let auth = Auth::of(config);
        Ok(Self {
            client,
            urls,
            next: 0,
            auth,
            compress: config.compress,
            op_type: config.op_type(),
            stats: None,
        })
    }

    /// Sends `request` to the next endpoint in turn.
    pub async fn post(&mut self, request: &BulkRequest) -> Result<BulkResponse, SendError> {
        let url = self.urls[self.next % self.urls.len()].clone();
        self.next = self.next.wrapping_add(1);
        let mut builder = self
            .client
            .post(&url)
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            )
            .body(request.body.clone());
        if request.gzip {
            builder = builder.header(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        builder = self.auth.apply(builder);
        let endpoint = url.trim_end_matches("/_bulk").to_string();
        let response = builder.send().await.map_err(|error| SendError {
            endpoint: endpoint.clone(),
            error,
        })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|error| SendError {
            endpoint: endpoint.clone(),
            error,
        })?;
        Ok(BulkResponse {
            endpoint,
            status,
            body,
        })
    }
}

impl Service<Arc<str>> for BulkService {
    type Request = BulkRequest;

    fn build(&mut self, _index: &Arc<str>, items: &mut [Item<Arc<str>>]) -> BulkRequest {
        request_builder::build(self.compress, items.iter().map(|i| i.bytes.as_slice()))
    }

    async fn send(&mut self, request: &mut BulkRequest) -> Sent {
        match self.post(request).await {
            Ok(response) => {
                let outcome =
                    classify(response.status, &response.body, request.items, self.op_type);
                if let Some(stats) = &self.stats {
                    stats.answered(request.items, &outcome);
                }
                Sent {
                    outcome,
                    destination: response.endpoint,
                }
            }
            Err(e) => {
                if let Some(stats) = &self.stats {
                    stats.unanswered();
                }
                Sent {
                    outcome: BatchOutcome::All(Outcome::Retry {
                        status: None,
                        reason: e.to_string(),
                    }),
                    destination: e.endpoint,
                }
            }
        }
    }
}
