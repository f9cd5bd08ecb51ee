//! `BigQueryProxy`: a fault injector between a sink and local-bigquery.
//!
//! local-bigquery answers every `tabledata.insertAll` faithfully but cannot be made
//! to fail on demand, so this proxy relays requests to it and, for the insertAll
//! requests a test chose, answers as a loaded BigQuery does. It is not a server of
//! its own: everything it does not fault is local-bigquery's own answer.
//!
//! - [`InsertFault::Reject`]: the request is answered with a status and BigQuery's
//!   error body (`{"error": {"code", "message", "errors": [{"reason"}], "status"}}`,
//!   as documented for 403 `rateLimitExceeded`, 429, 500 `backendError`), and nothing
//!   is forwarded, so nothing is stored.
//! - [`InsertFault::Cut`]: the connection is closed without an answer, the request
//!   not forwarded.
//! - [`InsertFault::CutAfter`]: the request is forwarded (its rows are stored), then
//!   the connection is closed without an answer: the client cannot know, and sends
//!   them again.
//!
//! Faults are queued and consumed one per insertAll request, in order; with the
//! queue empty, requests pass through. Every insertAll request is logged
//! ([`InsertExchange`]) with the `insertId`s it carried.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::http::{self, Response};
use crate::proxy_server::{self, CUT, ProxyServer, Request, text_response};

/// A fault to apply to one insertAll request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertFault {
    /// Answer with this status and error reason (`rateLimitExceeded`); forward nothing.
    Reject(u16, &'static str),
    /// Close the connection unanswered; forward nothing.
    Cut,
    /// Forward the request, then close the connection unanswered.
    CutAfter,
}

/// One insertAll request seen by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertExchange {
    /// The request path (`/bigquery/v2/projects/P/datasets/D/tables/T/insertAll`).
    pub path: String,
    /// The `insertId` of each row, in order.
    pub insert_ids: Vec<Option<String>>,
    /// The body's other keys (`skipInvalidRows`, `ignoreUnknownValues`, `kind`).
    pub flags: Value,
    /// The fault applied, if any.
    pub fault: Option<InsertFault>,
    /// The status the client got ([`CUT`] for none).
    pub status: u16,
    /// Whether the body came gzip-compressed.
    pub gzip: bool,
}

#[derive(Debug, Default)]
struct State {
    faults: VecDeque<InsertFault>,
    log: Vec<InsertExchange>,
    others: Vec<(String, String, Value)>,
}

type Shared = proxy_server::Shared<State>;

/// The proxy; stops when dropped.
#[derive(Debug)]
pub struct BigQueryProxy {
    shared: Arc<Shared>,
    server: ProxyServer,
}

impl BigQueryProxy {
    /// Starts a proxy on a free port of 127.0.0.1 relaying to `upstream`.
    pub fn start(upstream: &str) -> BigQueryProxy {
        let shared = Shared::new(upstream);
        let handler = shared.clone();
        let server = ProxyServer::start("bigquery proxy", move |r| handle(r, &handler));
        BigQueryProxy { shared, server }
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Queues a fault for the next insertAll request that has none yet.
    pub fn push(&self, fault: InsertFault) {
        self.shared.lock().faults.push_back(fault);
    }

    /// Faults queued and not yet applied.
    pub fn pending_faults(&self) -> usize {
        self.shared.lock().faults.len()
    }

    /// Every insertAll request seen so far.
    pub fn inserts(&self) -> Vec<InsertExchange> {
        self.shared.lock().log.clone()
    }

    /// Every other request seen so far: method, path and JSON body (`Null` if none).
    pub fn others(&self) -> Vec<(String, String, Value)> {
        self.shared.lock().others.clone()
    }
}

fn handle(request: Request, shared: &Shared) -> Response {
    let path = request.target.split('?').next().unwrap_or("").to_string();
    if request.method != "POST" || !path.ends_with("/insertAll") {
        let body = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        shared
            .lock()
            .others
            .push((request.method.clone(), path, body));
        return forward(shared, &request);
    }
    let gzip = http::header(&request.headers, "content-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let mut json = request.body.clone();
    if gzip {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&request.body[..])
            .read_to_end(&mut out)
            .is_ok()
        {
            json = out;
        }
    }
    let mut body: Value = serde_json::from_slice(&json).unwrap_or(Value::Null);
    let insert_ids = body["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| r["insertId"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(o) = body.as_object_mut() {
        o.remove("rows");
    }
    let fault = shared.lock().faults.pop_front();
    let response = match &fault {
        None => forward(shared, &request),
        Some(InsertFault::Reject(status, reason)) => {
            let message = format!("{reason}: injected by nagare-testkit's BigQueryProxy");
            let error = json!({ "error": {
                "code": status,
                "message": message,
                "errors": [{ "message": message, "domain": "global", "reason": reason }],
                "status": if *status == 429 || *reason == "rateLimitExceeded" { "RESOURCE_EXHAUSTED" } else { "UNAVAILABLE" },
            }});
            Response {
                status: *status,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: error.to_string().into_bytes(),
            }
        }
        Some(InsertFault::Cut) => text_response(CUT, String::new()),
        Some(InsertFault::CutAfter) => {
            let _ = forward(shared, &request);
            text_response(CUT, String::new())
        }
    };
    shared.lock().log.push(InsertExchange {
        path,
        insert_ids,
        flags: body,
        fault,
        status: response.status,
        gzip,
    });
    response
}

/// Relays a request to local-bigquery; a relay failure becomes a 502.
fn forward(shared: &Shared, request: &Request) -> Response {
    match http::send(
        &shared.upstream,
        &request.method,
        &request.target,
        &request.headers,
        &request.body,
    ) {
        Ok(r) => r,
        Err(e) => text_response(
            502,
            format!("bigquery proxy: upstream {} failed: {e}", shared.upstream),
        ),
    }
}
