//! nagare's own logs, through `tracing`: text for people, JSON for pipelines.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `NAGARE_LOG` overrides `level`. Logs go to
/// standard error, so the `stdout` sink owns standard output.
pub fn init(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = filter(level, std::env::var("NAGARE_LOG").ok())?;
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

/// The filter for `level`, or for `nagare_log` (`NAGARE_LOG`) when it is set.
fn filter(level: &str, nagare_log: Option<String>) -> anyhow::Result<EnvFilter> {
    let filter = match nagare_log {
        Some(v) if !v.trim().is_empty() => EnvFilter::try_new(v.trim()),
        _ => EnvFilter::try_new(level),
    }
    .map_err(|e| {
        anyhow::anyhow!("invalid log level `{level}`: {e}; use error, warn, info, debug or trace")
    })?
    // yup-oauth2 logs token requests and responses, access tokens included, at debug:
    // never below warn, whatever the level asked for.
    .add_directive("yup_oauth2=warn".parse()?);
    Ok(filter)
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
    use super::{colour, filter};
    use std::ffi::OsStr;
    use std::sync::{Arc, Mutex};

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
        assert!(!colour(false, Some(OsStr::new(""))));
    }

    /// What a subscriber writes, kept.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Kept {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_oauth_library_logs_no_token_even_at_trace() {
        for nagare_log in [None, Some("trace".to_string())] {
            let kept = Kept::default();
            let writer = kept.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(filter("debug", nagare_log).unwrap())
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                tracing::debug!(target: "yup_oauth2::service_account", "body: ya29.secret");
                tracing::debug!(target: "nagare", "a debug line of nagare");
            });
            let out = String::from_utf8(kept.0.lock().unwrap().clone()).unwrap();
            assert!(out.contains("a debug line of nagare"), "{out}");
            assert!(!out.contains("ya29"), "{out}");
        }
    }
}
