//! A stand-in for the container credentials endpoint, which cannot run here.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// A stand-in for the container credentials endpoint of ECS (and of EKS Pod
/// Identity), which cannot run here. It is faithful to the documented exchange: a
/// GET of the path in `AWS_CONTAINER_CREDENTIALS_FULL_URI`, with the token of
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN` in the `Authorization` header, answered with
/// `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "RoleArn"}` (an ISO 8601
/// expiry). A request with another token gets 401. Every request's path and
/// `Authorization` value are recorded.
pub struct CredentialsEndpoint {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The path and `Authorization` header of each request so far.
    pub seen: Seen,
}

/// The path and `Authorization` header of each request.
pub type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

impl CredentialsEndpoint {
    /// Serves `credentials` to requests that carry `token`.
    pub fn start(token: &'static str, credentials: Value) -> CredentialsEndpoint {
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
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                let mut authorization = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("authorization")
                    {
                        authorization = Some(value.trim().to_string());
                    }
                }
                let ok = authorization.as_deref() == Some(token);
                record.lock().unwrap().push((path, authorization));
                let (status, body) = if ok {
                    ("200 OK", credentials.to_string())
                } else {
                    (
                        "401 Unauthorized",
                        json!({"message": "bad token"}).to_string(),
                    )
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        CredentialsEndpoint { port, seen }
    }
}
