//! `nagare health`: asks a running process's admin API whether it is alive
//! (`/healthz`) or ready (`/readyz`), and exits 0 or 1 accordingly. Container health
//! checks that run a command inside the image (an ECS task's `healthCheck`, Docker's
//! `HEALTHCHECK`) use it, as the image has no curl or wget.

use std::time::Duration;

use anyhow::Context;

use crate::top::Client;

/// Options of `nagare health`.
#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The admin API of the process to ask (its `api.bind`).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:24220")]
    pub url: String,
    /// Ask whether it is ready (`/readyz`: config loaded, sources listening, buffers
    /// recovered) instead of alive (`/healthz`).
    #[arg(long)]
    pub ready: bool,
    /// How long to wait for the answer (`2s`, `500ms`).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// What the process answered when it is healthy (or ready); why not otherwise.
pub fn run(args: &HealthArgs) -> anyhow::Result<String> {
    let client = Client::new(&args.url).map_err(anyhow::Error::msg)?;
    let path = if args.ready { "/readyz" } else { "/healthz" };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let answer = runtime.block_on(async {
        tokio::time::timeout(args.timeout, client.get(path))
            .await
            .map_err(|_| {
                format!(
                    "{}{path} did not answer within {}",
                    args.url,
                    humantime::format_duration(args.timeout)
                )
            })?
    });
    let body = answer.map_err(anyhow::Error::msg)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}
