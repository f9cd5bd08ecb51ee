//! A blocking HTTP client for the helpers: enough to query osmem and for the fault
//! proxy to relay requests. It is ureq's, which runs no async runtime of its own, so
//! tests may call the helpers from sync code and from inside a tokio runtime alike.

use std::sync::LazyLock;
use std::time::Duration;

use ureq::config::AutoHeaderValue;

/// An HTTP response, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields in order, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body, as sent (still compressed if it was sent compressed).
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response {} is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The value of header `name` (case-insensitive).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Whether `name` frames a message on one connection, so is not relayed to another.
pub fn is_framing(name: &str) -> bool {
    [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "host",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// One agent for every request. It passes through what a relay must not change:
/// no status is an error, no redirect is followed, no header is added, and no
/// connection is kept, so a server restarted on the same port is reached afresh.
static AGENT: LazyLock<ureq::Agent> = LazyLock::new(|| {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(AutoHeaderValue::None)
        .accept(AutoHeaderValue::None)
        .accept_encoding(AutoHeaderValue::None)
        .max_idle_connections(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
});

/// Sends one request to `base` (`http://127.0.0.1:PORT`) and reads the whole response.
/// `headers` are sent as given, but for the framing ones, which the client sets.
pub fn send(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Response, ureq::Error> {
    send_with_host(base, method, path, headers, None, body)
}

/// `send` with the `Host` header given (a relay keeps its client's, which a SigV4
/// signature covers) instead of the one `base` implies.
pub fn send_with_host(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    host: Option<&str>,
    body: &[u8],
) -> Result<Response, ureq::Error> {
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", base.trim_end_matches('/')));
    if let Some(host) = host {
        request = request.header("host", host);
    }
    for (k, v) in headers.iter().filter(|(k, _)| !is_framing(k)) {
        request = request.header(k, v);
    }
    let response = AGENT.run(request.body(body)?)?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_string(), value)
        })
        .collect();
    let body = response
        .into_body()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// `send` with a JSON body (or none) and a JSON content type.
pub fn send_json(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<Response, ureq::Error> {
    let headers = [("Content-Type".to_string(), "application/json".to_string())];
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    send(base, method, path, &headers, body.as_bytes())
}
