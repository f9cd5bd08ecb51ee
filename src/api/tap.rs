//! `GET /api/v1/tap`: the events passing a point of the running pipeline, as
//! NDJSON, for `nagare tap`.
//!
//! Query: `pattern` (a Fluentd tag pattern, default `**`), `at` (`source`,
//! `after-filters`, or `sink` with `sink=NAME`; default `after-filters`), `limit`
//! (events, then the stream ends), `duration` (`30s`, then it ends), `rate` (events
//! per second at most; the rest are skipped and counted). Each line is
//! `{"tag": ..., "time": RFC 3339, "record": {...}}`; the last one, when the tap
//! ends on its own, is `{"tap": "end", "events": N, "dropped": N, "skipped": N}`
//! (`dropped`: copies the pipeline did not wait for because this reader was
//! behind; `skipped`: over `rate`). The pipeline never waits for a tap.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::channel::{Channel, Sender};
use hyper::body::Bytes;
use nagare_core::chunk::Entries;
use nagare_core::pattern::TagPattern;
use nagare_core::router::{TapPoint, Taps};
use tokio::time::Instant;

/// Chunks a tap may have queued before the pipeline drops its copies.
const QUEUE_CHUNKS: usize = 64;

/// What a tap asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct TapRequest {
    /// Which tags.
    pub pattern: TagPattern,
    /// Where.
    pub point: TapPoint,
    /// At most this many events.
    pub limit: Option<u64>,
    /// For at most this long.
    pub duration: Option<Duration>,
    /// At most this many events per second.
    pub rate: Option<u64>,
}

impl TapRequest {
    /// Reads a request from a URL's query string, or says what is wrong with it.
    pub fn from_query(query: &str) -> Result<TapRequest, String> {
        let mut pattern = "**".to_string();
        let (mut at, mut sink) = ("after-filters".to_string(), None);
        let (mut limit, mut duration, mut rate) = (None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value =
                percent_decode(value).ok_or_else(|| format!("`{key}`: bad percent-encoding"))?;
            match key {
                "pattern" => pattern = value,
                "at" => at = value,
                "sink" => sink = Some(value),
                "limit" => limit = Some(number(key, &value)?),
                "rate" => rate = Some(number(key, &value)?),
                "duration" => {
                    duration = Some(
                        humantime::parse_duration(&value)
                            .map_err(|e| format!("`duration`: {e} (write 30s, 5m)"))?,
                    );
                }
                other => {
                    return Err(format!(
                        "unknown parameter `{other}`: use pattern, at, sink, limit, duration, rate"
                    ));
                }
            }
        }
        let pattern = TagPattern::new(&pattern).map_err(|e| format!("`pattern`: {e}"))?;
        let point = match (at.as_str(), sink) {
            ("source", None) => TapPoint::Source,
            ("after-filters", None) => TapPoint::AfterFilters,
            ("sink", Some(name)) => TapPoint::Sink(name),
            ("sink", None) => return Err("`at=sink` needs `sink=NAME`".to_string()),
            (_, Some(_)) => return Err("`sink` goes with `at=sink`".to_string()),
            (other, None) => {
                return Err(format!(
                    "`at`: `{other}` is not a point; use source, after-filters or sink"
                ));
            }
        };
        Ok(TapRequest {
            pattern,
            point,
            limit,
            duration,
            rate,
        })
    }
}

fn number(key: &str, value: &str) -> Result<u64, String> {
    value
        .parse()
        .map_err(|_| format!("`{key}`: `{value}` is not a whole number"))
}

/// `%XX` and `+` decoded.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// Opens the tap and returns the body its events stream into; the tap closes when
/// its limits are reached or the reader goes away.
pub fn start(taps: &Arc<Taps>, request: TapRequest) -> Channel<Bytes, Infallible> {
    let (sender, body) = Channel::new(16);
    let tap = taps.open(request.pattern.clone(), request.point.clone(), QUEUE_CHUNKS);
    tokio::spawn(run(tap, request, sender));
    body
}

async fn run(mut tap: nagare_core::router::Tap, request: TapRequest, mut out: Sender<Bytes>) {
    let deadline = request.duration.map(|d| Instant::now() + d);
    let (mut events, mut skipped) = (0u64, 0u64);
    let mut window = (Instant::now(), 0u64);
    loop {
        let copy = tokio::select! {
            copy = tap.recv() => match copy {
                Some(copy) => copy,
                None => return,
            },
            _ = sleep_until(deadline) => break,
        };
        let mut lines = Vec::with_capacity(copy.entries.len() * 2);
        for entry in Entries::new(&copy.entries) {
            let Ok((time, record)) = entry else { break };
            if let Some(rate) = request.rate {
                if window.0.elapsed() >= Duration::from_secs(1) {
                    window = (Instant::now(), 0);
                }
                if window.1 >= rate {
                    skipped += 1;
                    continue;
                }
                window.1 += 1;
            }
            lines.extend_from_slice(b"{\"tag\":");
            nagare_core::json::write_str(&mut lines, copy.tag.as_str());
            lines.extend_from_slice(b",\"time\":\"");
            lines.extend_from_slice(time.to_rfc3339().as_bytes());
            lines.extend_from_slice(b"\",\"record\":");
            nagare_core::json::write_map(&mut lines, &record, &[]);
            lines.extend_from_slice(b"}\n");
            events += 1;
            if request.limit.is_some_and(|l| events >= l) {
                break;
            }
        }
        if !lines.is_empty() && out.send_data(Bytes::from(lines)).await.is_err() {
            return;
        }
        if request.limit.is_some_and(|l| events >= l) {
            break;
        }
    }
    let end = serde_json::json!({
        "tap": "end",
        "events": events,
        "dropped": tap.dropped(),
        "skipped": skipped,
    });
    let _ = out.send_data(Bytes::from(format!("{end}\n"))).await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_read_or_refused_with_why() {
        let r = TapRequest::from_query(
            "pattern=kube.%2A%2A&at=sink&sink=es&limit=10&duration=5s&rate=100",
        )
        .unwrap();
        assert_eq!(r.pattern.as_str(), "kube.**");
        assert_eq!(r.point, TapPoint::Sink("es".into()));
        assert_eq!((r.limit, r.rate), (Some(10), Some(100)));
        assert_eq!(r.duration, Some(Duration::from_secs(5)));
        let d = TapRequest::from_query("").unwrap();
        assert_eq!(
            (d.pattern.as_str(), d.point),
            ("**", TapPoint::AfterFilters)
        );
        for (query, says) in [
            ("at=sink", "needs `sink=NAME`"),
            ("at=middle", "not a point"),
            ("limit=ten", "not a whole number"),
            ("colour=red", "unknown parameter `colour`"),
            ("duration=soon", "`duration`"),
        ] {
            let error = TapRequest::from_query(query).unwrap_err();
            assert!(error.contains(says), "{query}: {error}");
        }
    }
}
