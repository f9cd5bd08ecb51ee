//! Stand-ins for the AWS credential endpoints a pod or an instance asks, which
//! cannot run here: the container credentials endpoint of ECS and EKS Pod Identity,
//! and the EC2 instance metadata service (IMDSv2). Each is faithful to its
//! documented exchange and records what it was asked.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// A request as the stand-ins see it: method, path, and headers (names
/// lower-cased).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
}

/// Every request so far.
pub type Seen = Arc<Mutex<Vec<Request>>>;

/// Serves HTTP/1.1 on 127.0.0.1, one connection at a time, each answered by
/// `answer` with a status line (`200 OK`), extra headers and a body, then closed.
/// Returns the port and the requests seen.
fn serve(
    answer: impl Fn(&Request) -> (&'static str, Vec<(&'static str, String)>, String) + Send + 'static,
) -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut parts = request_line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            let mut headers = HashMap::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
                }
            }
            let request = Request {
                method,
                path,
                headers,
            };
            let (status, extra, body) = answer(&request);
            record.lock().unwrap().push(request);
            let extra: String = extra
                .iter()
                .map(|(name, value)| format!("{name}: {value}\r\n"))
                .collect();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

/// The container credentials endpoint of ECS (and of EKS Pod Identity's agent): a
/// GET of the path in `AWS_CONTAINER_CREDENTIALS_FULL_URI`, with the token of
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN` (or the contents of
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`) in the `Authorization` header, answered
/// with `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "RoleArn"}` (an
/// ISO 8601 expiry). A request with another token gets 401.
pub struct CredentialsEndpoint {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Every request so far.
    pub seen: Seen,
}

impl CredentialsEndpoint {
    /// Serves `credentials` to requests that carry `token`.
    pub fn start(token: &'static str, credentials: Value) -> CredentialsEndpoint {
        Self::start_rotating(token, vec![credentials])
    }

    /// Serves the first of `sessions` to the first request that carries `token`, the
    /// next to the next, and the last to every one after: as the endpoint hands out
    /// the role's new session once the old one nears its expiry.
    pub fn start_rotating(token: &'static str, sessions: Vec<Value>) -> CredentialsEndpoint {
        assert!(!sessions.is_empty(), "at least one session");
        let served = std::sync::atomic::AtomicUsize::new(0);
        let (port, seen) = serve(move |request| {
            let json = vec![("Content-Type", "application/json".to_string())];
            if request.headers.get("authorization").map(String::as_str) == Some(token) {
                let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let credentials = &sessions[n.min(sessions.len() - 1)];
                ("200 OK", json, credentials.to_string())
            } else {
                (
                    "401 Unauthorized",
                    json,
                    json!({"message": "bad token"}).to_string(),
                )
            }
        });
        CredentialsEndpoint { port, seen }
    }
}

/// The EC2 instance metadata service, version 2: `PUT /latest/api/token` with an
/// `X-aws-ec2-metadata-token-ttl-seconds` header gives a session token (echoing the
/// TTL header); a GET must carry it in `X-aws-ec2-metadata-token`, else 401.
/// `GET /latest/meta-data/iam/security-credentials/` names the instance profile's
/// role, and `.../security-credentials/<role>` gives its credentials as
/// `{"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId", "SecretAccessKey",
/// "Token", "Expiration", "LastUpdated"}`. Any other path is 404.
pub struct Imds {
    /// Its port on 127.0.0.1 (for `AWS_EC2_METADATA_SERVICE_ENDPOINT`).
    pub port: u16,
    /// Every request so far.
    pub seen: Seen,
}

impl Imds {
    /// The session token it hands out.
    pub const TOKEN: &'static str = "AQAEAHn1x2imds-session-token==";
    const CREDENTIALS: &'static str = "/latest/meta-data/iam/security-credentials/";

    /// Serves `credentials` (`AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration`)
    /// as the credentials of the role `role`.
    pub fn start(role: &'static str, credentials: Value) -> Imds {
        let (port, seen) = serve(move |request| {
            let text = || vec![("Content-Type", "text/plain".to_string())];
            match (request.method.as_str(), request.path.as_str()) {
                ("PUT", "/latest/api/token") => {
                    match request.headers.get("x-aws-ec2-metadata-token-ttl-seconds") {
                        Some(ttl) => (
                            "200 OK",
                            vec![
                                ("Content-Type", "text/plain".to_string()),
                                ("X-aws-ec2-metadata-token-ttl-seconds", ttl.clone()),
                            ],
                            Self::TOKEN.to_string(),
                        ),
                        None => ("400 Bad Request", text(), String::new()),
                    }
                }
                ("GET", _)
                    if request
                        .headers
                        .get("x-aws-ec2-metadata-token")
                        .map(String::as_str)
                        != Some(Self::TOKEN) =>
                {
                    ("401 Unauthorized", text(), String::new())
                }
                ("GET", path) if path == Self::CREDENTIALS => ("200 OK", text(), role.to_string()),
                ("GET", path) if path.strip_prefix(Self::CREDENTIALS) == Some(role) => {
                    let mut body = credentials.clone();
                    body["Code"] = json!("Success");
                    body["Type"] = json!("AWS-HMAC");
                    body["LastUpdated"] = json!("2026-01-01T00:00:00Z");
                    (
                        "200 OK",
                        vec![("Content-Type", "application/json".to_string())],
                        body.to_string(),
                    )
                }
                _ => ("404 Not Found", text(), String::new()),
            }
        });
        Imds { port, seen }
    }
}
