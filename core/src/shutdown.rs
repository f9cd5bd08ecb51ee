//! Graceful shutdown: one token every task watches, and the signals that trip it.
//!
//! Order on SIGTERM or SIGINT: sources stop reading and flush what they hold; then
//! each sink's buffer is closed and the sink drains it (bounded by a timeout); then
//! the process exits 0. The composition of those steps lives in the binary; this
//! module gives the token and the signal wait.

pub use tokio_util::sync::CancellationToken as Shutdown;

/// Waits for SIGTERM or SIGINT (Ctrl-C) and returns the signal's name.
pub async fn signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; stop the process with SIGKILL");
            std::future::pending::<()>().await;
            unreachable!()
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
