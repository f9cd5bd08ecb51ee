//! Sends `_bulk` requests: one HTTP client (`client.rs`: TLS, credentials: basic
//! auth, an API key or AWS SigV4 by `auth.rs`), the endpoints taken in turn (so a
//! retry goes to the next node), gzip, a timeout per request; and, as the kit's [`Service`], builds a batch's request and says what its
//! answer means (`retry.rs`), a refusal of the credentials with what to check.

use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, DATE, HeaderValue};

use nagare_core::sink::{BatchOutcome, Gzipped, Item, Outcome, Sent, Service};

use super::auth::SignError;
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
    /// How far the server's clock (its `Date` header) is ahead of this machine's,
    /// in seconds, for a 401 or 403 (a signature refused as expired).
    pub clock_skew: Option<i64>,
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

/// A request that could not be sent or got no response.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// No response.
    #[error(transparent)]
    Send(#[from] SendError),
    /// Not sent: it could not be signed (no credentials).
    #[error("{endpoint}: {error}")]
    Sign {
        /// The endpoint it was for.
        endpoint: String,
        /// Why.
        error: SignError,
    },
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
    /// What to check when the cluster refuses the credentials.
    auth_hint: String,
}

impl BulkService {
    /// Counts its requests and their items' statuses into `stats`.
    pub fn with_stats(mut self, stats: BulkStats) -> Self {
        self.stats = Some(stats);
        self
    }

    /// Authenticates with `auth` instead of what the config gives (AWS SigV4, made
    /// by the sink); `hint` says what to check on a 401 or 403.
    pub fn with_auth(mut self, auth: Auth, hint: String) -> Self {
        self.auth = auth;
        self.auth_hint = hint;
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
            auth_hint: auth.hint(),
            auth,
            compress: config.compress,
            op_type: config.op_type(),
            stats: None,
        })
    }

    /// Sends `request` to the next endpoint in turn.
    pub async fn post(&mut self, request: &BulkRequest) -> Result<BulkResponse, PostError> {
        let url = self.urls[self.next % self.urls.len()].clone();
        self.next = self.next.wrapping_add(1);
        let endpoint = url.trim_end_matches("/_bulk").to_string();
        let send_error = |error| SendError {
            endpoint: endpoint.clone(),
            error,
        };
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
        let mut http = self.auth.apply(builder).build().map_err(send_error)?;
        self.auth
            .sign(&mut http)
            .await
            .map_err(|error| PostError::Sign {
                endpoint: endpoint.clone(),
                error,
            })?;
        let response = self.client.execute(http).await.map_err(send_error)?;
        let status = response.status().as_u16();
        let clock_skew = match status {
            401 | 403 => response
                .headers()
                .get(DATE)
                .and_then(|d| d.to_str().ok())
                .and_then(clock_skew),
            _ => None,
        };
        let body = response.bytes().await.map_err(send_error)?;
        Ok(BulkResponse {
            endpoint,
            status,
            body,
            clock_skew,
        })
    }
}

/// Seconds the clock of a server that sent `date` (an HTTP date) is ahead of ours.
fn clock_skew(date: &str) -> Option<i64> {
    let theirs = jiff::fmt::rfc2822::parse(date).ok()?.timestamp();
    Some(theirs.as_second() - jiff::Timestamp::now().as_second())
}

impl Service<Arc<str>> for BulkService {
    type Request = BulkRequest;

    fn build(&mut self, _index: &Arc<str>, items: &mut [Item<Arc<str>>]) -> BulkRequest {
        request_builder::build(self.compress, items.iter().map(|i| i.bytes.as_slice()))
    }

    /// Gzipped bodies are gzipped by the kit as each batch fills.
    fn gzip_level(&self) -> Option<u32> {
        self.compress.then_some(request_builder::GZIP_LEVEL)
    }

    fn build_gzipped(
        &mut self,
        _index: &Arc<str>,
        _items: &mut [Item<Arc<str>>],
        gzipped: Gzipped,
    ) -> BulkRequest {
        request_builder::build_gzipped(gzipped)
    }

    fn restore(&mut self, request: BulkRequest, items: &mut [Item<Arc<str>>]) {
        if let Some(lengths) = &request.item_lengths {
            Gzipped::restore(&request.body, lengths, items);
        }
    }

    async fn send(&mut self, request: &mut BulkRequest) -> Sent {
        match self.post(request).await {
            Ok(response) => {
                let mut outcome =
                    classify(response.status, &response.body, request.items, self.op_type);
                if let Some(stats) = &self.stats {
                    stats.answered(request.items, &outcome);
                }
                let explain = |reason: &mut String| {
                    if let Some(skew) = response.clock_skew.filter(|s| s.abs() >= 60) {
                        reason.push_str(&format!(
                            "; the server's clock is {skew} s {} this machine's: a signature is valid for 5 minutes, set the clock right (NTP)",
                            if skew > 0 { "ahead of" } else { "behind" }
                        ));
                    }
                    if let Some(key) = self.auth.signed_with() {
                        reason.push_str("; signed with ");
                        reason.push_str(&key);
                    }
                    reason.push_str("; ");
                    reason.push_str(&self.auth_hint);
                };
                match &mut outcome {
                    BatchOutcome::Blocked { reason, .. } => explain(reason),
                    // Items refused to these credentials (their index is not theirs to
                    // write): the hint for the first, which the log shows.
                    BatchOutcome::Items(outcomes) => {
                        if let Some(Outcome::Blocked { reason, .. }) = outcomes
                            .iter_mut()
                            .find(|o| matches!(o, Outcome::Blocked { .. }))
                        {
                            explain(reason);
                        }
                    }
                    _ => {}
                }
                Sent {
                    outcome,
                    destination: response.endpoint,
                }
            }
            Err(PostError::Sign { endpoint, error }) => Sent {
                // Nothing can be sent until credentials can be had: wait, never
                // dead-letter.
                outcome: BatchOutcome::Blocked {
                    status: None,
                    reason: format!("{error}; {}", self.auth_hint),
                },
                destination: endpoint,
            },
            Err(PostError::Send(e)) => {
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

#[cfg(test)]
mod tests {
    use super::clock_skew;

    #[test]
    fn the_clock_skew_is_read_from_an_http_date() {
        let ahead = jiff::Timestamp::now().as_second() + 900;
        let date = jiff::fmt::rfc2822::to_string(
            &jiff::Timestamp::from_second(ahead)
                .unwrap()
                .to_zoned(jiff::tz::TimeZone::UTC),
        )
        .unwrap()
        .replace("+0000", "GMT");
        let skew = clock_skew(&date).expect("a skew");
        assert!((899..=901).contains(&skew), "{date}: {skew}");
        assert_eq!(
            clock_skew("Sun, 06 Nov 1994 08:49:37 GMT").map(|s| s < 0),
            Some(true)
        );
        assert_eq!(clock_skew("yesterday"), None);
    }
}
