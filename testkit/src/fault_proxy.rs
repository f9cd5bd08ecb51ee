//! `FaultProxy`: a fault injector between a sink and osmem-server.
//!
//! osmem answers every `_bulk` faithfully but cannot be made to fail on demand, so
//! this proxy relays requests to it and, for the `_bulk` requests a test chose,
//! answers as a loaded Elasticsearch cluster does. It is not a server of its own:
//! everything it does not fault is osmem's own answer.
//!
//! - [`BulkFault::Reject`]: the whole request is answered with a status (429, 503)
//!   and an Elasticsearch error body, and nothing is forwarded, so nothing is stored.
//! - [`BulkFault::RejectItems`]: the chosen items are cut out of the request before
//!   it is forwarded (so they are really not stored), and the response gets an item
//!   with the chosen status (429 `es_rejected_execution_exception`) in their places,
//!   with `errors: true`, as Elasticsearch answers when a shard's write queue is full
//!   (or 403 `security_exception`, as its security answers an item whose index the
//!   credentials may not write).
//!
//! - [`FaultProxy::answer`]: a call other than `_bulk` (`GET /`, the index
//!   template's `GET` and `PUT`) answered with a chosen status and body until
//!   [`FaultProxy::relay`], as a cluster answers a user without a privilege (403) or
//!   a node in trouble (500).
//!
//! Faults are queued and consumed one per `_bulk` request, in order; with the queue
//! empty, requests pass through. Every `_bulk` request is logged ([`BulkExchange`]),
//! with the `_id`s it carried, so a test can check what was re-sent.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::http::{self, Response};
use crate::proxy_server::{self, ProxyServer, Request, text_response};

/// A fault to apply to one `_bulk` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkFault {
    /// Answer the whole request with this status; forward nothing.
    Reject(u16),
    /// Answer the items at these positions (0-based, in request order) with this
    /// status; forward the others.
    RejectItems {
        /// Positions of the items to reject.
        positions: Vec<usize>,
        /// Their status (429, or a 5xx).
        status: u16,
    },
}

/// One `_bulk` request seen by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkExchange {
    /// The `_id` of each item, in order (`None` for an item without one).
    pub ids: Vec<Option<String>>,
    /// The fault applied, if any.
    pub fault: Option<BulkFault>,
    /// The status the client got.
    pub status: u16,
    /// Whether the request body came gzip-compressed.
    pub gzip: bool,
    /// The request's `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// A call (not a `_bulk`) the proxy answers itself.
#[derive(Debug, Clone)]
struct Answer {
    method: String,
    /// Without the query.
    path: String,
    status: u16,
    body: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    faults: VecDeque<BulkFault>,
    log: Vec<BulkExchange>,
    /// Calls answered here instead of by osmem.
    answers: Vec<Answer>,
    /// The `Authorization` header of every request that is not a `_bulk`.
    other_auth: Vec<(String, Option<String>)>,
}

type Shared = proxy_server::Shared<State>;

/// The proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    shared: Arc<Shared>,
    server: ProxyServer,
}

impl FaultProxy {
    /// Starts a proxy on a free port of 127.0.0.1 relaying to `upstream`
    /// (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> FaultProxy {
        let shared = Shared::new(upstream);
        let handler = shared.clone();
        let server = ProxyServer::start("fault proxy", move |request| handle(request, &handler));
        FaultProxy { shared, server }
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Queues a fault for the next `_bulk` request that has none yet.
    pub fn push(&self, fault: BulkFault) {
        self.shared.lock().faults.push_back(fault);
    }

    /// Faults queued and not yet applied.
    pub fn pending_faults(&self) -> usize {
        self.shared.lock().faults.len()
    }

    /// Every `_bulk` request seen so far.
    pub fn bulk_log(&self) -> Vec<BulkExchange> {
        self.shared.lock().log.clone()
    }

    /// Answers every `GET /` with `status` (401, 403, 404: a user without the
    /// `monitor` privilege, or Serverless) and an Elasticsearch error body.
    pub fn refuse_root(&self, status: u16) {
        let body = json!({"error": {"type": "security_exception", "reason": "action [cluster:monitor/main] is unauthorized"}, "status": status});
        self.answer_root(status, body.to_string().as_bytes());
    }

    /// Answers every `GET /` with `status` and `body` (JSON), such as the recorded
    /// answer of another Elasticsearch version.
    pub fn answer_root(&self, status: u16, body: &[u8]) {
        self.answer("GET", "/", status, body);
    }

    /// Answers every `method path` (not a `_bulk`; the path without its query) with
    /// `status` and `body` (JSON) instead of relaying it: a privilege the user lacks
    /// (403 `security_exception`), or a cluster failing one call (500).
    pub fn answer(&self, method: &str, path: &str, status: u16, body: &[u8]) {
        self.relay(method, path);
        self.shared.lock().answers.push(Answer {
            method: method.to_string(),
            path: path.to_string(),
            status,
            body: body.to_vec(),
        });
    }

    /// Relays `method path` to osmem again after [`answer`](Self::answer).
    pub fn relay(&self, method: &str, path: &str) {
        self.shared
            .lock()
            .answers
            .retain(|a| a.method != method || a.path != path);
    }

    /// `METHOD path` and the `Authorization` header of every request other than
    /// `_bulk`, in order.
    pub fn other_requests(&self) -> Vec<(String, Option<String>)> {
        self.shared.lock().other_auth.clone()
    }
}

/// A `_bulk` request gets its fault, if one is queued; any other passes through.
fn handle(request: Request, shared: &Shared) -> Response {
    if is_bulk(&request.target) && request.method == "POST" {
        bulk(request, shared)
    } else {
        let authorization = request
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.clone());
        let path = request.target.split('?').next().unwrap_or_default();
        let answer = {
            let mut state = shared.lock();
            state.other_auth.push((
                format!("{} {}", request.method, request.target),
                authorization,
            ));
            state
                .answers
                .iter()
                .find(|a| a.method == request.method && a.path == path)
                .map(|a| (a.status, a.body.clone()))
        };
        if let Some((status, body)) = answer {
            return Response {
                status,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body,
            };
        }
        forward(
            shared,
            &request.method,
            &request.target,
            &request.headers,
            &request.body,
        )
    }
}

fn is_bulk(target: &str) -> bool {
    let path = target.split('?').next().unwrap_or(target);
    path == "/_bulk" || path.ends_with("/_bulk")
}

/// Relays a request to osmem; a relay failure becomes a 502.
fn forward(
    shared: &Shared,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Response {
    match http::send(&shared.upstream, method, target, headers, body) {
        Ok(r) => r,
        Err(e) => text_response(
            502,
            format!("fault proxy: upstream {} failed: {e}", shared.upstream),
        ),
    }
}

/// One item of a bulk body: its action line and, unless it is a delete, its source.
struct Item {
    op: String,
    index: Option<String>,
    id: Option<String>,
    lines: Vec<u8>,
}

fn split_items(ndjson: &[u8]) -> Vec<Item> {
    let mut lines = ndjson.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    let mut items = Vec::new();
    while let Some(action) = lines.next() {
        let v: Value = serde_json::from_slice(action).unwrap_or(Value::Null);
        let (op, meta) = v
            .as_object()
            .and_then(|o| o.iter().next())
            .map(|(k, m)| (k.clone(), m.clone()))
            .unwrap_or_else(|| ("index".to_string(), Value::Null));
        let mut bytes = action.to_vec();
        bytes.push(b'\n');
        if op != "delete"
            && let Some(source) = lines.next()
        {
            bytes.extend_from_slice(source);
            bytes.push(b'\n');
        }
        items.push(Item {
            op,
            index: meta["_index"].as_str().map(str::to_string),
            id: meta["_id"].as_str().map(str::to_string),
            lines: bytes,
        });
    }
    items
}

fn error_type(status: u16) -> &'static str {
    match status {
        429 => "es_rejected_execution_exception",
        503 => "unavailable_shards_exception",
        401 | 403 => "security_exception",
        _ => "exception",
    }
}

/// An item's error reason, in the words Elasticsearch uses for `status`.
fn item_reason(status: u16, index: Option<&str>) -> String {
    match status {
        // As Elasticsearch's security answers an item whose index the user may not
        // write (`indices:data/write/bulk[s]` is checked per shard request).
        403 => format!(
            "action [indices:data/write/bulk[s]] is unauthorized for user [nagare] with effective roles [logs_writer] on indices [{}], this action is granted by the index privileges [create_doc,create,write,index,all]",
            index.unwrap_or_default()
        ),
        _ => "rejected execution by nagare-testkit's FaultProxy".into(),
    }
}

fn bulk(request: Request, shared: &Shared) -> Response {
    let gzip = http::header(&request.headers, "content-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let body = if gzip {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&request.body[..])
            .read_to_end(&mut out)
            .is_err()
        {
            // Let osmem judge a body that is not gzip after all.
            return forward(
                shared,
                "POST",
                &request.target,
                &request.headers,
                &request.body,
            );
        }
        out
    } else {
        request.body.clone()
    };
    let items = split_items(&body);
    let fault = shared.lock().faults.pop_front();
    let response = match &fault {
        None => forward(
            shared,
            "POST",
            &request.target,
            &request.headers,
            &request.body,
        ),
        Some(BulkFault::Reject(status)) => {
            let kind = error_type(*status);
            let reason = "rejected by nagare-testkit's FaultProxy";
            let body = json!({
                "error": {
                    "root_cause": [{ "type": kind, "reason": reason }],
                    "type": kind,
                    "reason": reason,
                },
                "status": status,
            });
            Response {
                status: *status,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: body.to_string().into_bytes(),
            }
        }
        Some(BulkFault::RejectItems { positions, status }) => {
            reject_items(shared, &request, &items, positions, *status)
        }
    };
    shared.lock().log.push(BulkExchange {
        ids: items.iter().map(|i| i.id.clone()).collect(),
        fault,
        status: response.status,
        gzip,
        authorization: http::header(&request.headers, "authorization").map(str::to_string),
    });
    response
}

fn reject_items(
    shared: &Shared,
    request: &Request,
    items: &[Item],
    positions: &[usize],
    status: u16,
) -> Response {
    let rejected = |i: usize| positions.contains(&i);
    let mut kept = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if !rejected(i) {
            kept.extend_from_slice(&item.lines);
        }
    }
    let mut upstream_items = Vec::new().into_iter();
    let mut took = json!(0);
    if !kept.is_empty() {
        let headers: Vec<(String, String)> = request
            .headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("content-encoding"))
            .cloned()
            .collect();
        let resp = forward(shared, "POST", &request.target, &headers, &kept);
        if resp.status != 200 {
            return resp;
        }
        let Ok(v) = serde_json::from_slice::<Value>(&resp.body) else {
            return resp;
        };
        took = v["took"].clone();
        upstream_items = v["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter();
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if rejected(i) {
            out.push(json!({
                item.op.clone(): {
                    "_index": item.index,
                    "_id": item.id,
                    "status": status,
                    "error": {
                        "type": error_type(status),
                        "reason": item_reason(status, item.index.as_deref()),
                    },
                }
            }));
        } else if let Some(v) = upstream_items.next() {
            out.push(v);
        }
    }
    let body = json!({ "took": took, "errors": true, "items": out });
    Response {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osmem::Osmem;

    fn bulk_body(ids: &[&str]) -> Vec<u8> {
        let mut body = String::new();
        for id in ids {
            body.push_str(&format!(
                "{{\"index\":{{\"_index\":\"p\",\"_id\":\"{id}\"}}}}\n{{\"v\":1}}\n"
            ));
        }
        body.into_bytes()
    }

    fn post(url: &str, body: &[u8], gzip: bool) -> Response {
        let mut headers = vec![(
            "Content-Type".to_string(),
            "application/x-ndjson".to_string(),
        )];
        let body = if gzip {
            use std::io::Write;
            headers.push(("Content-Encoding".into(), "gzip".into()));
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(body).unwrap();
            enc.finish().unwrap()
        } else {
            body.to_vec()
        };
        http::send(url, "POST", "/_bulk", &headers, &body).unwrap()
    }

    #[test]
    fn injects_whole_and_item_faults_then_passes_through() {
        let os = Osmem::start();
        let proxy = FaultProxy::start(os.url());
        proxy.push(BulkFault::Reject(429));
        proxy.push(BulkFault::RejectItems {
            positions: vec![1],
            status: 429,
        });

        let resp = post(&proxy.url(), &bulk_body(&["a", "b", "c"]), false);
        assert_eq!(resp.status, 429);
        assert_eq!(
            resp.json()["error"]["type"],
            "es_rejected_execution_exception"
        );
        assert_eq!(os.count("p"), 0, "a rejected request stores nothing");

        let resp = post(&proxy.url(), &bulk_body(&["a", "b", "c"]), true);
        assert_eq!(resp.status, 200);
        let v = resp.json();
        assert_eq!(v["errors"], json!(true));
        let statuses: Vec<u64> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["index"]["status"].as_u64().unwrap())
            .collect();
        assert_eq!(statuses, [201, 429, 201]);
        let ids: Vec<String> = os.documents("p").into_iter().map(|d| d.id).collect();
        assert_eq!(ids, ["a", "c"], "the rejected item was not stored");

        let resp = post(&proxy.url(), &bulk_body(&["b"]), false);
        assert_eq!(resp.json()["errors"], json!(false));
        assert_eq!(os.count("p"), 3);

        let log = proxy.bulk_log();
        assert_eq!(log.len(), 3);
        assert_eq!(
            log[1].ids,
            [Some("a".into()), Some("b".into()), Some("c".into())]
        );
        assert!(log[1].gzip);
        assert_eq!((log[2].fault.as_ref(), log[2].status), (None, 200));
        // Other requests pass through untouched.
        let resp = http::send(&proxy.url(), "GET", "/p/_count", &[], b"").unwrap();
        assert_eq!(resp.json()["count"], json!(3));
    }
}
