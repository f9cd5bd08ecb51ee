//! [`ProxyServer`]: the HTTP server under the testkit's proxies ([`FaultProxy`],
//! [`AwsProxy`]): it reads each request whole, hands it to the proxy's blocking
//! handler (which relays through [`http`](crate::http)) and frames the answer.
//!
//! It runs on a runtime of its own, on a thread of its own, so a test may start and
//! drop a proxy from sync code or from inside its own runtime.
//!
//! [`FaultProxy`]: crate::FaultProxy
//! [`AwsProxy`]: crate::AwsProxy

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use crate::http::{self, Response};

/// A request as a proxy's handler gets it.
#[derive(Debug)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path and query (`/_bulk?refresh=true`).
    pub target: String,
    /// Every header, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body, whole.
    pub body: Vec<u8>,
}

/// What a proxy and its handler share: where it relays to, and its state (faults
/// queued, requests seen) behind a lock.
#[derive(Debug)]
pub struct Shared<S> {
    /// The upstream's base URL, without a trailing `/`.
    pub upstream: String,
    state: Mutex<S>,
}

impl<S: Default> Shared<S> {
    /// Relaying to `upstream`, with a fresh state.
    pub fn new(upstream: &str) -> Arc<Self> {
        Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            state: Mutex::new(S::default()),
        })
    }
}

impl<S> Shared<S> {
    /// The state; a handler that panicked holding it leaves it usable.
    pub fn lock(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What answers a request: called off the runtime, so it may block.
type Handler = dyn Fn(Request) -> Response + Send + Sync;

/// A server on a free port of 127.0.0.1; stops when dropped.
#[derive(Debug)]
pub struct ProxyServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl ProxyServer {
    /// Starts a server named `name` (its thread, and its own errors) answering with
    /// `handler`.
    pub fn start(
        name: &'static str,
        handler: impl Fn(Request) -> Response + Send + Sync + 'static,
    ) -> ProxyServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("bind the {name}: {e}"));
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("a bound address");
        let handler: Arc<Handler> = Arc::new(handler);
        let (stop, stopped) = oneshot::channel();
        let server = std::thread::Builder::new()
            .name(name.replace(' ', "-"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a proxy's runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("a proxy's listener");
                    tokio::select! {
                        _ = stopped => {}
                        () = accept(listener, name, handler) => {}
                    }
                });
            })
            .unwrap_or_else(|e| panic!("start the {name} thread: {e}"));
        ProxyServer {
            addr,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Dropping the runtime there ends every connection.
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}

/// Accepts connections and serves each (keep-alive) on a task of its own.
async fn accept(listener: tokio::net::TcpListener, name: &'static str, handler: Arc<Handler>) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let handler = handler.clone();
                async move { respond(request, name, handler).await }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(conn), service)
                .await;
        });
    }
}

/// Reads a request whole, answers it (off the runtime: relaying blocks), and turns the
/// answer into hyper's response, which frames it with a `Content-Length`.
async fn respond(
    request: hyper::Request<hyper::body::Incoming>,
    name: &'static str,
    handler: Arc<Handler>,
) -> Result<hyper::Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = request.into_parts();
    let response = match body.collect().await {
        Ok(body) => {
            let request = Request {
                method: parts.method.to_string(),
                target: parts
                    .uri
                    .path_and_query()
                    .map_or_else(|| parts.uri.path().to_string(), |pq| pq.to_string()),
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                        (k.as_str().to_string(), value)
                    })
                    .collect(),
                body: body.to_bytes().to_vec(),
            };
            tokio::task::spawn_blocking(move || handler(request))
                .await
                .unwrap_or_else(|e| text_response(502, format!("{name}: {e}")))
        }
        Err(e) => text_response(400, format!("{name}: cannot read the request: {e}")),
    };
    if response.status == CUT {
        // An error from the service makes hyper close the connection unanswered.
        return Err(std::io::Error::other(format!("{name}: connection cut")));
    }
    let mut out = hyper::Response::builder().status(response.status);
    for (k, v) in response
        .headers
        .iter()
        .filter(|(k, _)| !http::is_framing(k))
    {
        out = out.header(k, v);
    }
    Ok(out
        .body(Full::new(Bytes::from(response.body)))
        .unwrap_or_else(|e| {
            let mut r = hyper::Response::new(Full::new(Bytes::from(format!(
                "{name}: cannot relay the response: {e}"
            ))));
            *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
            r
        }))
}

/// The status a handler answers with to have the connection closed without an
/// answer, as when a connection is cut mid-request.
pub const CUT: u16 = 0;

/// A plain-text answer.
pub fn text_response(status: u16, text: String) -> Response {
    Response {
        status,
        headers: vec![("Content-Type".into(), "text/plain".into())],
        body: text.into_bytes(),
    }
}
