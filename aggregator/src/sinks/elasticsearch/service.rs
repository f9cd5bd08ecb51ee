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
    /// For a 401 or 403 to a SigV4-signed request that the server refused for the
    /// signature's time: how far its clock is from this machine's.
    pub clock_skew: Option<ClockSkew>,
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
        let date = response
            .headers()
            .get(DATE)
            .and_then(|d| d.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await.map_err(send_error)?;
        let clock_skew = match (status, &self.auth) {
            (401 | 403, Auth::Aws(_)) => clock_skew(&body, date.as_deref()),
            _ => None,
        };
        Ok(BulkResponse {
            endpoint,
            status,
            body,
            clock_skew,
        })
    }
}

/// How a SigV4 request was refused for its time: the server says the signature
/// expired or is not yet current, as AWS words it:
///
/// ```text
/// Signature expired: 20240115T103000Z is now earlier than 20240115T103500Z (20240115T104000Z - 5 min.)
/// Signature not yet current: 20240115T105000Z is still later than 20240115T104500Z (20240115T104000Z + 5 min.)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSkew {
    /// Seconds the server's clock is ahead of this machine's (behind when
    /// negative): from the server's time in its message, else its `Date` header;
    /// `None` when it gave neither.
    pub seconds: Option<i64>,
}

/// The [`ClockSkew`] of a 401 or 403 to a signed request whose `body` says the
/// signature expired or is not yet current; `date` is the answer's `Date` header.
fn clock_skew(body: &[u8], date: Option<&str>) -> Option<ClockSkew> {
    let text = String::from_utf8_lossy(body);
    let at = text
        .find("Signature expired")
        .or_else(|| text.find("Signature not yet current"))?;
    let theirs = server_time(&text[at..]).or_else(|| {
        let date = jiff::fmt::rfc2822::parse(date?).ok()?;
        Some(date.timestamp().as_second())
    });
    Some(ClockSkew {
        seconds: theirs.map(|t| t - jiff::Timestamp::now().as_second()),
    })
}

/// The server's time in AWS's message: the `YYYYMMDDTHHMMSSZ` after the `(`.
fn server_time(message: &str) -> Option<i64> {
    let open = message.find('(')?;
    let stamp = message.get(open + 1..open + 17)?;
    let time = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", stamp).ok()?;
    Some(
        time.to_zoned(jiff::tz::TimeZone::UTC)
            .ok()?
            .timestamp()
            .as_second(),
    )
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
                    match response.clock_skew.map(|s| s.seconds) {
                        Some(Some(skew)) => reason.push_str(&format!(
                            "; the server's clock is {} s {} this machine's: a signature is valid for 5 minutes, set the clock right (NTP)",
                            skew.abs(),
                            if skew >= 0 { "ahead of" } else { "behind" }
                        )),
                        Some(None) => reason.push_str(
                            "; the server says the signature's time is off: a signature is valid for 5 minutes, check this machine's clock (NTP)",
                        ),
                        None => {}
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

    /// `YYYYMMDDTHHMMSSZ`, `offset` seconds from now.
    fn stamp(offset: i64) -> String {
        let t = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + offset).unwrap();
        t.strftime("%Y%m%dT%H%M%SZ").to_string()
    }

    fn http_date(offset: i64) -> String {
        let t = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + offset).unwrap();
        jiff::fmt::rfc2822::to_string(&t.to_zoned(jiff::tz::TimeZone::UTC))
            .unwrap()
            .replace("+0000", "GMT")
    }

    fn near(skew: Option<super::ClockSkew>, want: i64) -> bool {
        skew.and_then(|s| s.seconds)
            .is_some_and(|s| (want - 1..=want + 1).contains(&s))
    }

    #[test]
    fn the_skew_is_read_from_aws_words_for_an_expired_signature() {
        // This machine 15 minutes behind: its signature expired.
        let body = format!(
            r#"{{"message":"Signature expired: {} is now earlier than {} ({} - 5 min.)"}}"#,
            stamp(0),
            stamp(600),
            stamp(900)
        );
        assert!(near(clock_skew(body.as_bytes(), None), 900), "{body}");
        // This machine 10 minutes ahead: not yet current. The message wins over Date.
        let body = format!(
            r#"{{"message":"Signature not yet current: {} is still later than {} ({} + 5 min.)"}}"#,
            stamp(0),
            stamp(-300),
            stamp(-600)
        );
        assert!(
            near(clock_skew(body.as_bytes(), Some(&http_date(5))), -600),
            "{body}"
        );
    }

    #[test]
    fn without_the_server_time_in_its_words_the_date_header_tells_the_skew() {
        let body = br#"{"message":"Signature expired: 20240115T103000Z is now earlier than 20240115T103500Z"}"#;
        assert!(near(clock_skew(body, Some(&http_date(900))), 900));
        let skew = clock_skew(body, Some("yesterday")).expect("expired");
        assert_eq!(skew.seconds, None, "said expired, with no time to tell by");
    }

    #[test]
    fn other_refusals_say_nothing_of_the_clock() {
        let wrong_key = br#"{"message":"The request signature we calculated does not match the signature you provided."}"#;
        assert_eq!(clock_skew(wrong_key, Some(&http_date(900))), None);
        assert_eq!(clock_skew(b"", Some(&http_date(-900))), None);
    }
}
