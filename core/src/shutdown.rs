//! Graceful shutdown: one token every task watches, and the signals that trip it.
//!
//! Order on SIGTERM or SIGINT: sources stop reading and flush what they hold; then
//! each sink's buffer is closed and the sink drains it (bounded by a timeout); then
//! the process exits 0. The composition of those steps lives in the binary; this
//! module gives the token and the signal wait.

pub use tokio_util::sync::CancellationToken as Shutdown;

/// Installs the handlers for SIGTERM and SIGINT (Ctrl-C) now, and returns a future
/// that resolves with the name of the first one received. Called before anything
/// starts, so that a signal that comes while the pipeline starts (a pod deleted
/// right after its start) stops it gracefully rather than killing the process. Must
/// be called within a tokio runtime.
pub fn signal() -> impl Future<Output = &'static str> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        async move {
            let (Ok(mut term), Ok(mut int)) = handlers else {
                tracing::error!("cannot install signal handlers; stop the process with SIGKILL");
                std::future::pending::<()>().await;
                unreachable!()
            };
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
