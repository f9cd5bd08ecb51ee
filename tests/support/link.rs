//! Both ends of a forward link run in-process, as the binary wires them (for the tests
//! of the forward link): the forwarder's `forward` sink draining a buffer the test
//! pushes chunks into, and the aggregator's forward source routing every tag into a
//! buffer the test takes chunks from.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use nagare_aggregator::sources::forward::{ForwardServer, ForwardSourceConfig};
use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::pattern::TagPattern;
use nagare_core::router::RouterBuilder;
use nagare_core::shutdown::Shutdown;
use nagare_core::testing::{sink_context, source_context};
use nagare_forwarder::sinks::forward::{self as forward_sink, ForwardSinkConfig, ForwardSinkError};
use tokio::task::JoinHandle;

/// How long a stop may take.
const STOP_WAIT: Duration = Duration::from_secs(15);

/// The forwarder side: chunks pushed into `buffer` are sent by the sink task.
pub struct Forwarder {
    pub buffer: Buffer,
    pub abort: Shutdown,
    pub task: JoinHandle<Result<(), ForwardSinkError>>,
}

/// Starts the sink `name` with a default memory buffer.
pub fn start_forwarder(name: &str, config: ForwardSinkConfig) -> Forwarder {
    let buffer = Buffer::new(name, &BufferConfig::default());
    let (ctx, abort) = sink_context(name, &buffer, Path::new(""));
    Forwarder {
        task: tokio::spawn(forward_sink::run(config, ctx)),
        buffer,
        abort,
    }
}

impl Forwarder {
    /// Aborts the sink (what it has not sent stays in its buffer) and waits for it.
    pub async fn stop(self) {
        self.abort.cancel();
        let _ = tokio::time::timeout(STOP_WAIT, self.task).await;
    }
}

/// The aggregator side: the forward source `from_nodes`, every tag routed to `buffer`.
pub struct Aggregator {
    pub addr: SocketAddr,
    pub buffer: Buffer,
    pub shutdown: Shutdown,
    /// Panics with the server's error, should it fail.
    pub task: JoinHandle<()>,
}

/// A forward source config with the defaults, listening on `bind` (port 0: any).
pub fn listening_on(bind: SocketAddr) -> ForwardSourceConfig {
    ForwardSourceConfig {
        bind,
        ..ForwardSourceConfig::default()
    }
}

/// Binds a forward server on `config` and runs it, every event going into `buffer`.
pub async fn start_aggregator(config: &ForwardSourceConfig, buffer: Buffer) -> Aggregator {
    let mut routes = RouterBuilder::new();
    routes.sink("collected", TagPattern::new("**").unwrap(), buffer.clone());
    let (ctx, shutdown) = source_context("from_nodes", routes.build(), Path::new(""));
    let server = ForwardServer::bind(config).await.unwrap();
    Aggregator {
        addr: server.local_addr(),
        buffer,
        shutdown,
        task: tokio::spawn(async move {
            if let Err(e) = server.run(ctx).await {
                panic!("the forward server failed: {e}");
            }
        }),
    }
}

impl Aggregator {
    /// Stops the server and checks it ended without an error.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(STOP_WAIT, self.task)
            .await
            .expect("the server did not stop")
            .unwrap();
    }
}
