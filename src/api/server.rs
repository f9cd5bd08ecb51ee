//! The server: hyper, one task per connection, nothing on the data path.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use nagare_core::buffer::Buffer;
use nagare_core::config::Secret;
use nagare_core::metrics::{self, ComponentMetrics, Metrics};
use nagare_core::router::Taps;
use nagare_core::shutdown::Shutdown;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::tap::TapRequest;

/// What is not ready yet, shared by the start-up and the server: what the start
/// (or the stop) waits for, and buffers that are full and hold their sources back.
#[derive(Debug, Clone, Default)]
pub struct Health {
    waiting: Arc<Mutex<Vec<String>>>,
    buffers: Arc<Mutex<Vec<(String, Buffer)>>>,
}

impl Health {
    /// Not ready until `reason` is cleared by [`ready`](Health::ready).
    pub fn waiting_for(&self, reason: impl Into<String>) {
        let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        w.push(reason.into());
    }

    /// Stops watching the buffer of sink `sink` (a reload removed or replaced it).
    pub fn unwatch_buffer(&self, sink: &str) {
        self.buffers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(s, _)| s != sink);
    }

    /// Everything waited for is done.
    pub fn ready(&self) {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Not ready while `buffer`, in front of sink `sink`, is full and a source
    /// waits for room in it (`overflow_action: block`): the process accepts nothing
    /// more then.
    pub fn watch_buffer(&self, sink: &str, buffer: Buffer) {
        self.unwatch_buffer(sink);
        self.buffers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((sink.to_string(), buffer));
    }

    /// Why not ready; empty when ready.
    pub fn reasons(&self) -> Vec<String> {
        let mut reasons = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let buffers = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
        for (sink, buffer) in buffers.iter() {
            if buffer.is_blocking() {
                reasons.push(format!(
                    "room in the buffer of sink `{sink}`: it is full and its sources wait (overflow_action: block)"
                ));
            }
        }
        reasons
    }
}

/// One component as `/api/v1/components` shows it.
#[derive(Debug, Clone)]
pub struct ComponentEntry {
    /// Its counters (and labels: name, kind, type).
    pub metrics: ComponentMetrics,
    /// The tag pattern it takes (`match`), for filters and sinks.
    pub pattern: Option<String>,
    /// The buffer in front of it, for sinks.
    pub buffer: Option<Buffer>,
}

/// A sink's buffer as `/api/v1/components` shows it.
#[derive(Serialize)]
struct BufferJson {
    chunks: usize,
    bytes: usize,
    in_flight_chunks: usize,
    limit_bytes: u64,
    oldest_chunk_age_seconds: f64,
}

impl BufferJson {
    fn of(buffer: &Buffer) -> Self {
        let s = buffer.stats();
        BufferJson {
            chunks: s.staged_chunks + s.queued_chunks + s.in_flight_chunks,
            bytes: s.staged_bytes + s.queued_bytes + s.in_flight_bytes,
            in_flight_chunks: s.in_flight_chunks,
            limit_bytes: buffer.config().total_limit_size.0,
            oldest_chunk_age_seconds: s.oldest_chunk_age.map_or(0.0, |a| a.as_secs_f64()),
        }
    }
}

#[derive(Serialize)]
struct ComponentJson<'a> {
    id: &'a str,
    kind: &'a str,
    r#type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none", rename = "match")]
    pattern: Option<&'a str>,
    #[serde(flatten)]
    totals: metrics::Totals,
    errors: u64,
    discarded: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    buffer: Option<BufferJson>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    details: BTreeMap<&'static str, f64>,
}

/// What the server answers with: a whole JSON or text body, or a stream (a tap).
type Body = BoxBody<Bytes, Infallible>;

/// A reload asked for over the API, and where its outcome goes: what changed
/// (JSON), or why nothing did.
#[derive(Debug)]
pub struct ReloadRequest {
    /// The answer.
    pub reply: oneshot::Sender<Result<serde_json::Value, String>>,
}

struct State {
    metrics: Metrics,
    health: Health,
    components: Mutex<Vec<ComponentEntry>>,
    version: &'static str,
    /// Where reloads are asked for, and the token they and taps need.
    reload: std::sync::OnceLock<(mpsc::Sender<ReloadRequest>, Option<Secret>)>,
    /// The router's taps, for `/api/v1/tap`.
    taps: std::sync::OnceLock<Arc<Taps>>,
}

/// The running admin server.
#[derive(Clone)]
pub struct AdminServer {
    state: Arc<State>,
    address: SocketAddr,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl AdminServer {
    /// Listens on `listener` until `stop`, serving `metrics` and `health`.
    pub fn start(
        listener: TcpListener,
        metrics: Metrics,
        health: Health,
        version: &'static str,
        stop: Shutdown,
    ) -> std::io::Result<AdminServer> {
        let address = listener.local_addr()?;
        let state = Arc::new(State {
            metrics,
            health,
            components: Mutex::default(),
            version,
            reload: std::sync::OnceLock::new(),
            taps: std::sync::OnceLock::new(),
        });
        let server = AdminServer {
            state: state.clone(),
            address,
        };
        tokio::spawn(serve(listener, state, stop));
        Ok(server)
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves `POST /api/v1/reload` by sending requests to `reload`, behind `token`
    /// when there is one.
    pub fn with_reload(self, reload: mpsc::Sender<ReloadRequest>, token: Option<Secret>) -> Self {
        let _ = self.state.reload.set((reload, token));
        self
    }

    /// Serves `GET /api/v1/tap` with the router's `taps`.
    pub fn set_taps(&self, taps: Arc<Taps>) {
        let _ = self.state.taps.set(taps);
    }

    /// Takes the component `kind` `id` off `/api/v1/components` (a reload removed
    /// or replaced it).
    pub fn remove_component(&self, kind: &str, id: &str) {
        self.state
            .components
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|c| {
                let labels = c.metrics.labels();
                !(labels.component_kind == kind && labels.component_id == id)
            });
    }

    /// Takes every component of `kind` off `/api/v1/components`.
    pub fn remove_kind(&self, kind: &str) {
        self.state
            .components
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|c| c.metrics.labels().component_kind != kind);
    }

    /// Shows the component `kind` `id` with its new `match` (a reload re-routed it).
    pub fn set_pattern(&self, kind: &str, id: &str, pattern: &str) {
        let mut components = self
            .state
            .components
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for c in components.iter_mut() {
            let labels = c.metrics.labels();
            if labels.component_kind == kind && labels.component_id == id {
                c.pattern = Some(pattern.to_string());
            }
        }
    }

    /// Shows `component` in `/api/v1/components`.
    pub fn add_component(&self, component: ComponentEntry) {
        self.state
            .components
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(component);
    }
}

async fn serve(listener: TcpListener, state: Arc<State>, stop: Shutdown) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin API: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move {
                    if req.method() == Method::POST && req.uri().path() == "/api/v1/reload" {
                        return Ok::<_, Infallible>(reload(&state, &req).await);
                    }
                    if req.method() == Method::GET && req.uri().path() == "/api/v1/tap" {
                        return Ok::<_, Infallible>(tap(&state, &req));
                    }
                    Ok::<_, Infallible>(route(&state, &req))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "admin API connection ended with an error");
            }
        });
    }
}

/// `POST /api/v1/reload`: asks the topology to reload and answers what it did.
async fn reload(state: &State, req: &Request<Incoming>) -> Response<Body> {
    let Some((sender, token)) = state.reload.get() else {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": "this process does not reload"}),
        );
    };
    if let Some(token) = token
        && !authorized(req, token)
    {
        let mut response = json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": "POST /api/v1/reload needs the header `Authorization: Bearer <api.token>`"}),
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let (reply, answer) = oneshot::channel();
    // Token checked above.
    if sender.send(ReloadRequest { reply }).await.is_err() {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": "shutting down"}),
        );
    }
    match answer.await {
        Ok(Ok(changes)) => json(
            StatusCode::OK,
            &serde_json::json!({"status": "reloaded", "changes": changes}),
        ),
        Ok(Err(error)) => json(
            StatusCode::UNPROCESSABLE_ENTITY,
            &serde_json::json!({"status": "not reloaded", "error": error}),
        ),
        Err(_) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": "shutting down"}),
        ),
    }
}

/// `GET /api/v1/tap`: the events at a point of the pipeline, streamed as NDJSON.
fn tap(state: &State, req: &Request<Incoming>) -> Response<Body> {
    let token = state.reload.get().and_then(|(_, t)| t.as_ref());
    if let Some(refused) = unauthorized(req, token) {
        return refused;
    }
    let Some(taps) = state.taps.get() else {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": "the pipeline is not running yet"}),
        );
    };
    let request = match TapRequest::from_query(req.uri().query().unwrap_or_default()) {
        Ok(r) => r,
        Err(error) => {
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": error}),
            );
        }
    };
    let mut response = Response::new(super::tap::start(taps, request).boxed());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

/// The `401` answer when `token` is set and `req` does not carry it.
fn unauthorized(req: &Request<Incoming>, token: Option<&Secret>) -> Option<Response<Body>> {
    let token = token?;
    if authorized(req, token) {
        return None;
    }
    let mut response = json(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({"error": format!("{} needs the header `Authorization: Bearer <api.token>`", req.uri().path())}),
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Some(response)
}

/// Whether `req` carries `Authorization: Bearer <token>`, compared in constant
/// time.
fn authorized(req: &Request<Incoming>, token: &Secret) -> bool {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .as_bytes();
    let expected = token.expose().as_bytes();
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn route(state: &State, req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"error": format!("{} {} is not served here; use GET (POST only for /api/v1/reload)", req.method(), req.uri().path())}),
        );
    }
    match req.uri().path() {
        "/healthz" => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        "/readyz" => {
            let reasons = state.health.reasons();
            if reasons.is_empty() {
                json(StatusCode::OK, &serde_json::json!({"status": "ready"}))
            } else {
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"status": "not ready", "waiting_for": reasons}),
                )
            }
        }
        "/metrics" => {
            let mut response =
                Response::new(Full::new(Bytes::from(state.metrics.render())).boxed());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            response
        }
        "/api/v1/components" => {
            let components = state
                .components
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let list: Vec<ComponentJson<'_>> = components
                .iter()
                .map(|c| {
                    let labels = c.metrics.labels();
                    ComponentJson {
                        id: &labels.component_id,
                        kind: &labels.component_kind,
                        r#type: &labels.component_type,
                        pattern: c.pattern.as_deref(),
                        totals: c.metrics.totals(),
                        errors: c.metrics.errors_total(),
                        discarded: c.metrics.discarded_total(),
                        buffer: c.buffer.as_ref().map(BufferJson::of),
                        details: c.metrics.details(),
                    }
                })
                .collect();
            json(
                StatusCode::OK,
                &serde_json::json!({"version": state.version, "components": list}),
            )
        }
        other => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({
                "error": format!("no such endpoint: {other}"),
                "endpoints": ["/healthz", "/readyz", "/metrics", "/api/v1/components", "/api/v1/tap", "POST /api/v1/reload"],
            }),
        ),
    }
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
