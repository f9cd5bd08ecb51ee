//! `AwsProxy`: a recording and fault-injecting proxy for AWS JSON-protocol requests
//! (`X-Amz-Target: Logs_20140328.PutLogEvents` ...), between a sink and moto; the
//! query protocol's requests (STS `Action=AssumeRole` ...) are recorded too.
//!
//! moto does not enforce PutLogEvents' limits (events per call, bytes per call, the
//! 24 h span, event size), so tests assert every call the sink made from this proxy's
//! record: each request's operation and decoded JSON body, and the status it got. It
//! relays requests unchanged, signature included (it forwards the `Host` the client
//! signed), so moto still checks signatures.
//!
//! Faults are answered in place of moto, as CloudWatch answers: a status and an AWS
//! JSON error body `{"__type": "ThrottlingException", "message": ...}`.
//! - [`AwsFault::Once`]: queued, consumed by the next request of its operation.
//! - [`AwsFault::WhenContains`]: every request of its operation whose body holds a
//!   text, for as long as the test runs (a poisoned event inside a batch).
//!
//! The server loop mirrors [`crate::fault_proxy`]'s (a hyper server on a thread and
//! runtime of its own, relaying through [`crate::http`]); the two differ in what they
//! parse and fault, so each keeps its own.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::http::{self, Response};
use crate::proxy_server::{self, ProxyServer, Request};

/// An AWS error answered instead of relaying a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    /// The HTTP status (400, 500, 503 ...).
    pub status: u16,
    /// The error type, `__type` in the body (`ThrottlingException` ...).
    pub kind: String,
}

impl AwsError {
    /// An error of type `kind` with `status`.
    pub fn new(status: u16, kind: &str) -> AwsError {
        AwsError {
            status,
            kind: kind.to_string(),
        }
    }
}

/// A fault to apply to requests of one operation (`PutLogEvents`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsFault {
    /// The next request of `operation` gets `error`.
    Once {
        /// The operation, without the service prefix.
        operation: String,
        /// What it is answered.
        error: AwsError,
    },
    /// Every request of `operation` whose body contains `needle` gets `error`.
    WhenContains {
        /// The operation, without the service prefix.
        operation: String,
        /// Text searched in the raw request body.
        needle: String,
        /// What it is answered.
        error: AwsError,
    },
}

/// One request seen by the proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsExchange {
    /// The operation (`PutLogEvents`), from `X-Amz-Target` after the dot.
    pub operation: String,
    /// The request body, decoded (`Null` if it was not JSON).
    pub body: Value,
    /// The error answered by the proxy, if any.
    pub fault: Option<AwsError>,
    /// The status the client got.
    pub status: u16,
}

#[derive(Debug, Default)]
struct State {
    faults: Vec<AwsFault>,
    log: Vec<AwsExchange>,
}

type Shared = proxy_server::Shared<State>;

/// The proxy; stops when dropped.
#[derive(Debug)]
pub struct AwsProxy {
    shared: Arc<Shared>,
    server: ProxyServer,
}

impl AwsProxy {
    /// Starts a proxy on a free port of 127.0.0.1 relaying to `upstream`.
    pub fn start(upstream: &str) -> AwsProxy {
        let shared = Shared::new(upstream);
        let handler = shared.clone();
        let server = ProxyServer::start("AWS proxy", move |request| handle(&handler, request));
        AwsProxy { shared, server }
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Adds a fault.
    pub fn push(&self, fault: AwsFault) {
        self.shared.lock().faults.push(fault);
    }

    /// Queues `error` for the next request of `operation`.
    pub fn fail_once(&self, operation: &str, error: AwsError) {
        self.push(AwsFault::Once {
            operation: operation.to_string(),
            error,
        });
    }

    /// `Once` faults not yet applied.
    pub fn pending_faults(&self) -> usize {
        self.shared
            .lock()
            .faults
            .iter()
            .filter(|f| matches!(f, AwsFault::Once { .. }))
            .count()
    }

    /// Every request seen so far.
    pub fn log(&self) -> Vec<AwsExchange> {
        self.shared.lock().log.clone()
    }

    /// The requests of `operation` seen so far.
    pub fn calls(&self, operation: &str) -> Vec<AwsExchange> {
        self.log()
            .into_iter()
            .filter(|e| e.operation == operation)
            .collect()
    }
}

fn error_response(error: &AwsError) -> Response {
    let body = json!({
        "__type": error.kind,
        "message": "answered by nagare-testkit's AwsProxy",
    });
    Response {
        status: error.status,
        headers: vec![("Content-Type".into(), "application/x-amz-json-1.1".into())],
        body: body.to_string().into_bytes(),
    }
}

fn handle(shared: &Shared, request: Request) -> Response {
    let Request {
        method,
        target,
        mut headers,
        body,
    } = request;
    // The JSON protocol names the operation in a header; the query protocol (STS,
    // IAM) in the form's `Action`, whose fields are then recorded as a JSON object.
    let form: Option<serde_json::Map<String, Value>> = http::header(&headers, "content-type")
        .filter(|t| t.starts_with("application/x-www-form-urlencoded"))
        .map(|_| {
            form_urlencoded::parse(&body)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect()
        });
    let operation = http::header(&headers, "x-amz-target")
        .and_then(|t| t.split('.').nth(1))
        .or_else(|| form.as_ref()?.get("Action")?.as_str())
        .unwrap_or_default()
        .to_string();
    let fault = if operation.is_empty() {
        None
    } else {
        take_fault(shared, &operation, &body)
    };
    let response = match &fault {
        Some(error) => error_response(error),
        None => {
            // The client signed the proxy's `Host`; relay it so the signature holds.
            let host = http::header(&headers, "host").map(str::to_string);
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case("host"));
            relay(shared, &method, &target, &headers, host.as_deref(), &body)
        }
    };
    if !operation.is_empty() {
        shared.lock().log.push(AwsExchange {
            operation,
            body: form
                .map(Value::Object)
                .unwrap_or_else(|| serde_json::from_slice(&body).unwrap_or(Value::Null)),
            fault,
            status: response.status,
        });
    }
    response
}

fn take_fault(shared: &Shared, operation: &str, body: &[u8]) -> Option<AwsError> {
    let mut state = shared.lock();
    let text = String::from_utf8_lossy(body);
    let at = state.faults.iter().position(|f| match f {
        AwsFault::Once { operation: op, .. } => op == operation,
        AwsFault::WhenContains {
            operation: op,
            needle,
            ..
        } => op == operation && text.contains(needle.as_str()),
    })?;
    match &state.faults[at] {
        AwsFault::Once { error, .. } => {
            let error = error.clone();
            state.faults.remove(at);
            Some(error)
        }
        AwsFault::WhenContains { error, .. } => Some(error.clone()),
    }
}

fn relay(
    shared: &Shared,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    host: Option<&str>,
    body: &[u8],
) -> Response {
    match http::send_with_host(&shared.upstream, method, target, headers, host, body) {
        Ok(r) => r,
        Err(e) => error_response(&AwsError::new(
            502,
            &format!("proxy: upstream {} failed: {e}", shared.upstream),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::moto::Moto;

    #[test]
    fn records_relays_signed_requests_and_injects_faults() {
        let moto = Moto::shared();
        let proxy = AwsProxy::start(moto.url());
        let group = Moto::unique("/testkit/proxy");
        let key = moto.credentials();
        let call = |op: &str, body: Value| {
            let target = format!("Logs_20140328.{op}");
            let headers = [
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", target.as_str()),
            ];
            crate::moto::signed(
                &proxy.url(),
                key,
                "logs",
                &headers,
                body.to_string().as_bytes(),
            )
            .expect("a response")
        };
        proxy.fail_once("CreateLogGroup", AwsError::new(400, "ThrottlingException"));
        let throttled = call("CreateLogGroup", json!({ "logGroupName": group }));
        assert_eq!(throttled.status, 400);
        assert_eq!(throttled.json()["__type"], "ThrottlingException");
        assert!(
            !moto.log_groups().contains(&group),
            "a faulted call is not relayed"
        );
        // Relayed with the signature intact: moto accepts it.
        let created = call("CreateLogGroup", json!({ "logGroupName": group }));
        assert_eq!(created.status, 200, "{}", created.text());
        assert!(moto.log_groups().contains(&group));
        proxy.push(AwsFault::WhenContains {
            operation: "CreateLogStream".into(),
            needle: "poison".into(),
            error: AwsError::new(400, "InvalidParameterException"),
        });
        for _ in 0..2 {
            let bad = call(
                "CreateLogStream",
                json!({ "logGroupName": group, "logStreamName": "poison" }),
            );
            assert_eq!(bad.status, 400);
        }
        let log = proxy.calls("CreateLogStream");
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].body["logStreamName"], "poison");
        assert_eq!(proxy.calls("CreateLogGroup").len(), 2);
        assert_eq!(proxy.pending_faults(), 0);
    }
}
