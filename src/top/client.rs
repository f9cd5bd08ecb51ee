//! Reading a nagare process: the HTTP GETs, what `/api/v1/components` answers, and
//! the model the screen shows, with rates from the difference between two polls.
//!
//! The fetch is the only part that does I/O; [`Model::update`] and everything below
//! it are pure, so rates, sorting and error states are unit-tested without a server.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

/// The largest response read: a component list of thousands of components fits.
const MAX_BODY: usize = 16 << 20;

/// What `GET /api/v1/components` answers.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Snapshot {
    /// The nagare version of the process.
    #[serde(default)]
    pub version: String,
    /// Every source, filter and sink, in the order of the config.
    pub components: Vec<ComponentStats>,
}

/// One component as the API shows it. Everything past the four counters is optional,
/// so an older or newer process is shown with what it has.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct ComponentStats {
    /// The component's name in the config.
    pub id: String,
    /// `source`, `filter` or `sink`.
    pub kind: String,
    /// Its `type` in the config (`tail`, `forward`, `elasticsearch`, ...).
    pub r#type: String,
    /// The tag pattern it takes, for filters and sinks.
    #[serde(default, rename = "match")]
    pub pattern: Option<String>,
    /// Events taken in since the start.
    #[serde(default)]
    pub received_events: u64,
    /// Bytes taken in since the start.
    #[serde(default)]
    pub received_bytes: u64,
    /// Events passed on (or delivered, for a sink) since the start.
    #[serde(default)]
    pub sent_events: u64,
    /// Bytes passed on (or delivered) since the start.
    #[serde(default)]
    pub sent_bytes: u64,
    /// Errors since the start, when the process counts them.
    #[serde(default)]
    pub errors: Option<u64>,
    /// Events discarded since the start, when the process counts them.
    #[serde(default)]
    pub discarded: Option<u64>,
    /// A sink's buffer, when it has one.
    #[serde(default)]
    pub buffer: Option<BufferStats>,
    /// Gauges of the component's own (`files_open`, `servers_up`, ...).
    #[serde(default)]
    pub details: BTreeMap<String, f64>,
}

/// A sink's buffer, as far as the process reports it.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Default)]
pub struct BufferStats {
    /// Chunks queued.
    #[serde(default)]
    pub chunks: Option<u64>,
    /// Bytes queued.
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Chunks sent and not yet confirmed.
    #[serde(default)]
    pub in_flight_chunks: Option<u64>,
    /// The buffer's limit in bytes.
    #[serde(default)]
    pub limit_bytes: Option<u64>,
    /// Age of the oldest queued chunk.
    #[serde(default)]
    pub oldest_chunk_age_seconds: Option<f64>,
}

impl BufferStats {
    /// How full the buffer is, 0.0 to 1.0, when both its size and limit are known.
    pub fn fill(&self) -> Option<f64> {
        match (self.bytes, self.limit_bytes) {
            (Some(bytes), Some(limit)) if limit > 0 => Some(bytes as f64 / limit as f64),
            _ => None,
        }
    }
}

/// One successful poll.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When it was taken (monotonic, for rates).
    pub at: Instant,
    /// What the process answered.
    pub snapshot: Snapshot,
    /// The process's start (`process_start_time_seconds`), when it serves it.
    pub started: Option<SystemTime>,
}

/// A poll's outcome, with the wall-clock time the header shows.
#[derive(Debug, Clone)]
pub struct Poll {
    /// When the poll finished.
    pub wall: SystemTime,
    /// The sample, or why there is none.
    pub result: Result<Sample, String>,
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    /// The component as last read.
    pub stats: ComponentStats,
    /// Events in per second since the previous poll (none on the first poll or
    /// after the process restarted).
    pub events_in: Option<f64>,
    /// Events out per second.
    pub events_out: Option<f64>,
    /// Bytes in per second.
    pub bytes_in: Option<f64>,
    /// Bytes out per second.
    pub bytes_out: Option<f64>,
}

/// Per-second rate of a counter between two polls; none when there is no earlier
/// value, no time passed, or the counter went down (the process restarted).
pub fn rate(previous: Option<u64>, current: u64, elapsed: Duration) -> Option<f64> {
    let previous = previous?;
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 || current < previous {
        return None;
    }
    Some((current - previous) as f64 / seconds)
}

/// The table's rows for `current`, with rates against `previous` (matched by kind and
/// id, so a component added by a restart starts without a rate).
pub fn rows(previous: Option<&Sample>, current: &Sample) -> Vec<Row> {
    let elapsed = previous
        .map(|p| current.at.saturating_duration_since(p.at))
        .unwrap_or_default();
    current
        .snapshot
        .components
        .iter()
        .map(|c| {
            let before = previous.and_then(|p| {
                p.snapshot
                    .components
                    .iter()
                    .find(|b| b.id == c.id && b.kind == c.kind)
            });
            Row {
                events_in: rate(
                    before.map(|b| b.received_events),
                    c.received_events,
                    elapsed,
                ),
                events_out: rate(before.map(|b| b.sent_events), c.sent_events, elapsed),
                bytes_in: rate(before.map(|b| b.received_bytes), c.received_bytes, elapsed),
                bytes_out: rate(before.map(|b| b.sent_bytes), c.sent_bytes, elapsed),
                stats: c.clone(),
            }
        })
        .collect()
}

/// The column the table is sorted by, in the order the sort key cycles through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Sources, then filters, then sinks (the pipeline's order).
    Kind,
    /// The component's name.
    Id,
    /// The component's type.
    Type,
    /// Events in per second, highest first.
    EventsIn,
    /// Events out per second, highest first.
    EventsOut,
    /// Bytes in per second, highest first.
    BytesIn,
    /// Bytes out per second, highest first.
    BytesOut,
    /// Errors, most first.
    Errors,
    /// Buffer fill, fullest first.
    Buffer,
}

impl SortKey {
    const ALL: [SortKey; 9] = [
        SortKey::Kind,
        SortKey::Id,
        SortKey::Type,
        SortKey::EventsIn,
        SortKey::EventsOut,
        SortKey::BytesIn,
        SortKey::BytesOut,
        SortKey::Errors,
        SortKey::Buffer,
    ];

    /// The next column to sort by (`forward`) or the previous one.
    pub fn cycle(self, forward: bool) -> SortKey {
        let n = Self::ALL.len();
        let at = Self::ALL.iter().position(|k| *k == self).unwrap_or(0);
        Self::ALL[if forward {
            (at + 1) % n
        } else {
            (at + n - 1) % n
        }]
    }

    /// How the header names it.
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Kind => "kind",
            SortKey::Id => "id",
            SortKey::Type => "type",
            SortKey::EventsIn => "events in/s",
            SortKey::EventsOut => "events out/s",
            SortKey::BytesIn => "bytes in/s",
            SortKey::BytesOut => "bytes out/s",
            SortKey::Errors => "errors",
            SortKey::Buffer => "buffer",
        }
    }
}

fn kind_rank(kind: &str) -> u8 {
    match kind {
        "source" => 0,
        "filter" => 1,
        "sink" => 2,
        _ => 3,
    }
}

/// Numbers compare highest first; a missing value comes last.
fn descending(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => b.total_cmp(&a),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn compare(key: SortKey, a: &Row, b: &Row) -> Ordering {
    let (x, y) = (&a.stats, &b.stats);
    let primary = match key {
        SortKey::Kind => kind_rank(&x.kind).cmp(&kind_rank(&y.kind)),
        SortKey::Id => x.id.cmp(&y.id),
        SortKey::Type => x.r#type.cmp(&y.r#type),
        SortKey::EventsIn => descending(a.events_in, b.events_in),
        SortKey::EventsOut => descending(a.events_out, b.events_out),
        SortKey::BytesIn => descending(a.bytes_in, b.bytes_in),
        SortKey::BytesOut => descending(a.bytes_out, b.bytes_out),
        SortKey::Errors => descending(x.errors.map(|e| e as f64), y.errors.map(|e| e as f64)),
        SortKey::Buffer => descending(
            x.buffer.and_then(|b| b.fill()),
            y.buffer.and_then(|b| b.fill()),
        ),
    };
    primary
        .then_with(|| kind_rank(&x.kind).cmp(&kind_rank(&y.kind)))
        .then_with(|| x.id.cmp(&y.id))
}

/// Everything the screen shows.
#[derive(Debug, Clone)]
pub struct Model {
    /// The admin API's base URL.
    pub url: String,
    /// How often it is polled.
    pub interval: Duration,
    /// The process's version, from the last answer.
    pub version: Option<String>,
    /// When the process started, from the last answer that said.
    pub started: Option<SystemTime>,
    /// When the last poll (successful or not) finished.
    pub refreshed: Option<SystemTime>,
    /// When the last successful poll finished.
    pub last_success: Option<SystemTime>,
    /// Why the last poll failed; none when it succeeded.
    pub error: Option<String>,
    /// Polls failed in a row.
    pub failures: u32,
    /// The rows of the last successful poll, in the process's order.
    pub rows: Vec<Row>,
    /// The column sorted by.
    pub sort: SortKey,
    /// Whether the sort is reversed.
    pub reverse: bool,
    previous: Option<Sample>,
}

impl Model {
    /// Nothing read yet from `url`.
    pub fn new(url: &str, interval: Duration) -> Model {
        Model {
            url: url.to_string(),
            interval,
            version: None,
            started: None,
            refreshed: None,
            last_success: None,
            error: None,
            failures: 0,
            rows: Vec::new(),
            sort: SortKey::Kind,
            reverse: false,
            previous: None,
        }
    }

    /// Takes in a poll: new rows and rates, or the error (the last rows stay, so a
    /// blip does not blank the screen).
    pub fn update(&mut self, poll: Poll) {
        self.refreshed = Some(poll.wall);
        match poll.result {
            Ok(sample) => {
                self.rows = rows(self.previous.as_ref(), &sample);
                self.version = Some(sample.snapshot.version.clone());
                self.started = sample.started;
                self.last_success = Some(poll.wall);
                self.error = None;
                self.failures = 0;
                self.previous = Some(sample);
            }
            Err(error) => {
                self.error = Some(error);
                self.failures = self.failures.saturating_add(1);
            }
        }
    }

    /// The rows in the order shown.
    pub fn sorted_rows(&self) -> Vec<&Row> {
        let mut rows: Vec<&Row> = self.rows.iter().collect();
        rows.sort_by(|a, b| compare(self.sort, a, b));
        if self.reverse {
            rows.reverse();
        }
        rows
    }
}

/// The HTTP client of one admin API.
#[derive(Debug, Clone)]
pub struct Client {
    /// `host:port`, to connect to and for the Host header.
    authority: String,
    /// The URL's path without its trailing `/` (empty for the root).
    prefix: String,
    /// The URL as given, for messages.
    url: String,
}

impl Client {
    /// A client of the admin API at `url` (`http://host:port`, optionally with a path
    /// prefix for a proxy).
    pub fn new(url: &str) -> Result<Client, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("--url {url:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "--url {url:?}: the admin API speaks plain http, not {other}"
                ));
            }
            None => return Err(format!("--url {url:?} needs a scheme: http://{url}")),
        }
        let Some(authority) = uri.authority() else {
            return Err(format!("--url {url:?} has no host"));
        };
        let authority = match authority.port_u16() {
            Some(_) => authority.to_string(),
            None => format!("{}:80", authority.host()),
        };
        Ok(Client {
            authority,
            prefix: uri.path().trim_end_matches('/').to_string(),
            url: url.to_string(),
        })
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One poll: the component list, and the process's start time from `/metrics`
    /// (missing from it is not an error).
    pub async fn sample(&self) -> Result<Sample, String> {
        let body = self.get("/api/v1/components").await?;
        let snapshot: Snapshot = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "{}{}/api/v1/components did not answer nagare's component list: {e}",
                self.url, self.prefix
            )
        })?;
        let at = Instant::now();
        let started = self
            .get("/metrics")
            .await
            .ok()
            .and_then(|m| start_time(&String::from_utf8_lossy(&m)));
        Ok(Sample {
            at,
            snapshot,
            started,
        })
    }

    /// The body of `GET path`; an error unless the answer is `200 OK`.
    pub async fn get(&self, path: &str) -> Result<Bytes, String> {
        let target = format!("{}{path}", self.prefix);
        let response = self.open(path, None).await?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading {}{target}: {e}", self.url))?
            .to_bytes();
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&body);
            return Err(format!(
                "{}{target} answered {status}: {}",
                self.url,
                text.chars().take(200).collect::<String>()
            ));
        }
        Ok(body)
    }

    /// Sends `GET path` (with `Authorization: Bearer <token>` when there is one)
    /// and returns the response as it starts, its body to be read as it comes.
    pub async fn open(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let target = format!("{}{path}", self.prefix);
        let cannot = |e: &dyn std::fmt::Display| format!("cannot reach {}: {e}", self.url);
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| cannot(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| cannot(&e))?;
        tokio::spawn(connection);
        let mut request = Request::get(target.as_str())
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::USER_AGENT, "nagare");
        if let Some(token) = token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("cannot build the request for {target}: {e}"))?;
        sender.send_request(request).await.map_err(|e| cannot(&e))
    }
}

/// `process_start_time_seconds` in a Prometheus exposition.
pub fn start_time(exposition: &str) -> Option<SystemTime> {
    let value: f64 = exposition
        .lines()
        .find_map(|l| l.strip_prefix("process_start_time_seconds "))?
        .trim()
        .parse()
        .ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(value))
}
