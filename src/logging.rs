//! nagare's own logs, through `tracing`: text for people, JSON for pipelines.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `NAGARE_LOG` overrides `level`. Logs go to
/// standard error, so the `stdout` sink owns standard output.
pub fn init(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = match std::env::var("NAGARE_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(v.trim()),
        _ => EnvFilter::try_new(level),
    }
    .map_err(|e| {
        anyhow::anyhow!("invalid log level `{level}`: {e}; use error, warn, info, debug or trace")
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
