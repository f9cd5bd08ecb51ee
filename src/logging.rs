//! nagare's own logs, through `tracing`: text for people, JSON for pipelines.

use std::io::IsTerminal;

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
    })?
    // yup-oauth2 logs token requests and responses, access tokens included, at debug:
    // never below warn, whatever the level asked for.
    .add_directive("yup_oauth2=warn".parse()?);
    let no_color = std::env::var_os("NO_COLOR");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour(std::io::stderr().is_terminal(), no_color.as_deref()))
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

/// Whether text logs are coloured. Colour codes are noise, or worse, wherever standard
/// error is not a person's terminal (a file, journald, `kubectl logs`, a log
/// pipeline), so only a terminal gets them, and not even a terminal when `NO_COLOR` is
/// set to anything but the empty string (<https://no-color.org>).
fn colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::colour;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
        assert!(!colour(false, Some(OsStr::new(""))));
    }
}
