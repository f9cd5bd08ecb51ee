//! The HTTP listener: HTTP/1.1 with keep-alive (hyper), a semaphore capping the
//! connections, and one handler per request that answers only once the records are
//! in the sinks' buffers.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use nagare_core::component::{Invalid, SourceComponent, SourceContext, SourceTags};
use nagare_core::compression::{self, Compression, DecompressError};
use nagare_core::config::Secret;
use nagare_core::{EventTime, Tag, Value};
use subtle::ConstantTimeEq;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::config::HttpSourceConfig;
use super::decode::{self, BadRequest};

/// How long requests still running at shutdown may take to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the HTTP source could not start.
#[derive(Debug, Error)]
pub enum HttpSourceError {
    /// The config has a value that cannot work.
    #[error("invalid http source config at `{}`: {}", .0.key, .0.message)]
    Invalid(#[from] Invalid),
    /// The listening socket could not be opened.
    #[error(
        "cannot listen for HTTP clients on {addr}: {source}; check `bind` (is another process on this port?)"
    )]
    Bind {
        /// The configured `bind` address.
        addr: SocketAddr,
        /// The system's reason.
        source: io::Error,
    },
}

/// A bound HTTP input, ready to [`run`](HttpServer::run).
#[derive(Debug)]
pub struct HttpServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: HttpSourceConfig,
}

struct Shared {
    source: String,
    ctx: SourceContext,
    config: HttpSourceConfig,
}

type Body = Full<Bytes>;

impl HttpServer {
    /// Validates the config and opens the listening socket.
    pub async fn bind(config: &HttpSourceConfig) -> Result<HttpServer, HttpSourceError> {
        config.validate()?;
        let bind_error = |source| HttpSourceError::Bind {
            addr: config.bind,
            source,
        };
        let listener = TcpListener::bind(config.bind).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(HttpServer {
            listener,
            local_addr,
            config: config.clone(),
        })
    }

    /// The address actually listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves requests until `ctx.shutdown`; then stops accepting, lets running
    /// requests finish (for up to 10 seconds) and returns.
    pub async fn run(self, ctx: SourceContext) -> Result<(), HttpSourceError> {
        let HttpServer {
            listener,
            local_addr,
            config,
        } = self;
        let shutdown = ctx.shutdown.clone();
        let name = ctx.name.clone();
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let keepalive: Duration = config.keepalive_timeout.into();
        let shared = Arc::new(Shared {
            source: ctx.name.clone(),
            ctx,
            config,
        });
        let graceful = GracefulShutdown::new();
        tracing::info!(source = %name, addr = %local_addr, "http source listening");
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = permits.clone().acquire_owned() => permit.expect("never closed"),
            };
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(source = %name, error = %e, "cannot accept an HTTP client; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let shared = shared.clone();
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, peer, &shared).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(keepalive)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            let conn = graceful.watch(conn);
            let name = name.clone();
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(source = %name, peer = %peer, error = %e, "HTTP connection ended with an error");
                }
                drop(permit);
            });
        }
        drop(listener);
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(source = %name, "HTTP requests still running after 10 s of shutdown were cut off; their clients get no answer and should send again");
        }
        tracing::info!(source = %name, addr = %local_addr, "http source stopped");
        Ok(())
    }
}

/// The `http` source: built by binding its socket.
impl SourceComponent for HttpServer {
    const TYPE: &'static str = "http";
    type Config = HttpSourceConfig;
    type Error = HttpSourceError;

    fn validate(config: &HttpSourceConfig) -> Result<(), Invalid> {
        config.validate()
    }

    fn describe(config: &HttpSourceConfig) -> SourceTags {
        SourceTags {
            summary: format!("http on {}", config.bind),
            examples: None,
        }
    }

    async fn build(config: HttpSourceConfig, _name: &str) -> Result<Self, HttpSourceError> {
        Self::bind(&config).await
    }

    async fn run(self, ctx: SourceContext) -> Result<(), HttpSourceError> {
        HttpServer::run(self, ctx).await
    }
}

/// Binds the server described by `config` and runs it until `ctx.shutdown`.
pub async fn run(config: HttpSourceConfig, ctx: SourceContext) -> Result<(), HttpSourceError> {
    HttpServer::bind(&config).await?.run(ctx).await
}

fn reply(status: StatusCode, text: impl Into<String>) -> Response<Body> {
    let text = text.into();
    let mut r = Response::new(Full::new(Bytes::from(if text.is_empty() {
        String::new()
    } else {
        format!(
            "{} {}\n{text}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
    })));
    *r.status_mut() = status;
    if !text.is_empty() {
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    r
}

fn authorized(req: &Request<Incoming>, token: &Secret) -> bool {
    let Some(given) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    else {
        return false;
    };
    let want = token.expose().as_bytes();
    let given = given.trim().as_bytes();
    // In constant time, so timing does not tell how much was right.
    want.ct_eq(given).into()
}

async fn handle(req: Request<Incoming>, peer: SocketAddr, shared: &Shared) -> Response<Body> {
    let config = &shared.config;
    if req.method() == Method::OPTIONS {
        let mut r = reply(StatusCode::NO_CONTENT, "");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
        return r;
    }
    if req.method() != Method::POST {
        let mut r = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "send records with POST /<tag>",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
        return r;
    }
    if let Some(token) = &config.bearer_token
        && !authorized(&req, token)
    {
        tracing::warn!(source = %shared.source, peer = %peer, "refused an HTTP request without the right bearer token");
        let mut r = reply(
            StatusCode::UNAUTHORIZED,
            "missing or wrong `Authorization: Bearer <token>`",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    match accept(req, peer, shared).await {
        Ok(()) if config.use_204_response => reply(StatusCode::NO_CONTENT, ""),
        Ok(()) => reply(StatusCode::OK, ""),
        Err((status, text)) => {
            tracing::debug!(source = %shared.source, peer = %peer, status = status.as_u16(), reason = %text, "refused an HTTP request");
            reply(status, text)
        }
    }
}

type Refusal = (StatusCode, String);

fn bad_request(e: BadRequest) -> Refusal {
    (StatusCode::BAD_REQUEST, e.0)
}

async fn accept(req: Request<Incoming>, peer: SocketAddr, shared: &Shared) -> Result<(), Refusal> {
    let config = &shared.config;
    let limit = config.body_size_limit.as_usize();
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than body_size_limit ({}); send fewer records per request",
                config.body_size_limit
            ),
        )
    };
    let tag = decode::tag_from_path(req.uri().path()).map_err(bad_request)?;
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let header = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header(header::CONTENT_TYPE);
    let encoding = header(header::CONTENT_ENCODING);
    let body = match Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(e) => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            ));
        }
    };
    let body = match encoding.as_deref().map(str::trim) {
        None | Some("" | "identity") => body,
        Some(name @ ("gzip" | "x-gzip" | "deflate")) => {
            let (name, unpacked) = if name == "deflate" {
                let zlib = flate2::read::ZlibDecoder::new(&body[..]);
                ("deflate", compression::read_limited(zlib, limit))
            } else {
                (
                    "gzip",
                    compression::decompress(Compression::Gzip, &body, limit),
                )
            };
            match unpacked {
                Ok(body) => Bytes::from(body),
                Err(DecompressError::TooLarge { .. }) => return Err(too_large()),
                Err(DecompressError::Broken(e)) => {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        format!("the {name} body is broken: {e}"),
                    ));
                }
            }
        }
        Some(other) => {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Encoding `{other}` is not supported; send gzip, deflate or none"),
            ));
        }
    };
    let request = decode::Request {
        content_type: content_type.as_deref(),
        query: parts.uri.query(),
        body: &body,
    };
    let events =
        decode::events(&request, &config.time_key, EventTime::now()).map_err(bad_request)?;
    let extra = extra_fields(config, &parts.headers, peer);
    let mut lane = shared.ctx.router.lane(&Tag::from(tag));
    for (time, mut record) in events {
        for (k, v) in &extra {
            record.insert(k.clone(), v.clone());
        }
        lane.push(time, record);
    }
    // The answer waits until the records are in every matching sink's buffer (with a
    // full buffer and `block`, the client waits: backpressure).
    lane.send().await.map_err(|_| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down; send again later".to_string(),
        )
    })
}

fn extra_fields(
    config: &HttpSourceConfig,
    headers: &hyper::HeaderMap,
    peer: SocketAddr,
) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    if config.add_remote_addr {
        out.push((
            "REMOTE_ADDR".to_string(),
            Value::from(peer.ip().to_string()),
        ));
    }
    if config.add_http_headers {
        for (name, value) in headers {
            if name == header::AUTHORIZATION {
                continue;
            }
            let key = format!(
                "HTTP_{}",
                name.as_str().to_ascii_uppercase().replace('-', "_")
            );
            out.push((
                key,
                Value::from(String::from_utf8_lossy(value.as_bytes()).into_owned()),
            ));
        }
    }
    out
}
