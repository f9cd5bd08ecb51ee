//! `nagare tap PATTERN`: the events flowing through a running nagare process whose
//! tags match a Fluentd pattern, as NDJSON on standard output, read from its
//! admin API's `/api/v1/tap` (see [`api`](crate::api)): at the sources (before the
//! filters), after the filters, or on their way into one sink. The process never
//! waits for a tap: copies it cannot queue are dropped and counted in the last
//! line.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, anyhow};
use http_body_util::BodyExt;

use crate::api::DEFAULT_BIND;
use crate::top::Client;

/// Where in the pipeline to tap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum At {
    /// As the sources emit them, before the filters.
    Source,
    /// After the filters (the default).
    AfterFilters,
    /// On their way into the buffer of the sink named by --sink.
    Sink,
}

/// `nagare tap`'s arguments.
#[derive(Debug, clap::Args)]
pub struct TapArgs {
    /// The tags to show, as a Fluentd pattern (`kube.**`, `app.{web,api}`).
    #[arg(default_value = "**")]
    pub pattern: String,
    /// The admin API of the process.
    #[arg(long, default_value_t = format!("http://{DEFAULT_BIND}"))]
    pub url: String,
    /// Where to tap.
    #[arg(long, value_enum, default_value_t = At::AfterFilters)]
    pub at: At,
    /// The sink, with `--at sink`.
    #[arg(long, value_name = "NAME")]
    pub sink: Option<String>,
    /// Stop after this many events.
    #[arg(long, short = 'n')]
    pub limit: Option<u64>,
    /// Stop after this long (`30s`, `5m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// At most this many events per second; the others are skipped (and counted).
    #[arg(long)]
    pub rate: Option<u64>,
    /// The bearer token, when the process has `api.token`.
    #[arg(long, env = "NAGARE_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl TapArgs {
    /// The request path with its query.
    fn path(&self) -> anyhow::Result<String> {
        let mut query = format!("/api/v1/tap?pattern={}", encode(&self.pattern));
        match (self.at, &self.sink) {
            (At::Sink, Some(sink)) => query += &format!("&at=sink&sink={}", encode(sink)),
            (At::Sink, None) => return Err(anyhow!("--at sink needs --sink NAME")),
            (_, Some(_)) => return Err(anyhow!("--sink goes with --at sink")),
            (At::Source, None) => query += "&at=source",
            (At::AfterFilters, None) => query += "&at=after-filters",
        }
        for (key, value) in [("limit", self.limit), ("rate", self.rate)] {
            if let Some(v) = value {
                query += &format!("&{key}={v}");
            }
        }
        if let Some(d) = self.duration {
            query += &format!("&duration={}ms", d.as_millis());
        }
        Ok(query)
    }
}

/// Percent-encodes what a query value cannot hold as it is.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'*' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Streams the tap to standard output until its limits are reached, the process
/// stops, or standard output is closed.
pub fn run(args: &TapArgs) -> anyhow::Result<()> {
    let path = args.path()?;
    let client = Client::new(&args.url).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let response = client
            .open(&path, args.token.as_deref())
            .await
            .map_err(anyhow::Error::msg)?;
        let status = response.status();
        let mut body = response.into_body();
        if status != hyper::StatusCode::OK {
            let text = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(anyhow!(
                "{}{path} answered {status}: {}",
                args.url,
                String::from_utf8_lossy(&text)
            ));
        }
        let mut out = std::io::stdout().lock();
        while let Some(frame) = body.frame().await {
            let frame = frame.with_context(|| format!("reading the tap from {}", args.url))?;
            if let Some(data) = frame.data_ref() {
                match out.write_all(data).and_then(|()| out.flush()) {
                    Ok(()) => {}
                    // `nagare tap | head`: the reader has what it wanted.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(e).context("writing to standard output"),
                }
            }
        }
        Ok(())
    })
}
