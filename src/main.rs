//! The `nagare` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nagare::config::{self, LogFormat};

/// jemalloc rather than the C library's allocator: chunks of megabytes are allocated
/// and freed all the time (a chunk lives from the source until its destination
/// confirms it), and glibc hands such memory back to the kernel and faults it in
/// again; jemalloc keeps it for reuse. The benchmarks in `benches/` that measure the
/// pipeline use the same allocator.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A log pipeline for Kubernetes in the shape of Fluentd: tail container logs on
/// every node, forward them to aggregators, deliver them to Elasticsearch.
#[derive(Debug, Parser)]
#[command(name = "nagare", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipeline a config file describes (forwarder, aggregator or both).
    Run {
        #[command(flatten)]
        config: ConfigSource,
        /// Log level or filter, overriding the config's `log.level`.
        #[arg(long, value_name = "LEVEL")]
        log_level: Option<String>,
        /// Log format, overriding the config's `log.format`.
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Check a config file and print its route graph: which source feeds which sinks.
    Validate {
        #[command(flatten)]
        config: ConfigSource,
    },
    /// Run a forwarder and an aggregator on generated container logs, delivering into
    /// a local file (or Elasticsearch with --elasticsearch), and print what arrived.
    Demo(nagare::demo::DemoArgs),
}

/// Where the config comes from: a file, or (for platforms that hand a container
/// environment variables but no files, such as an ECS task definition) the YAML text
/// itself.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct ConfigSource {
    /// The YAML config file.
    #[arg(short, long, value_name = "FILE", env = "NAGARE_CONFIG")]
    config: Option<PathBuf>,
    /// The YAML config itself, as text (instead of --config).
    #[arg(
        long,
        value_name = "YAML",
        env = "NAGARE_CONFIG_YAML",
        hide_env_values = true
    )]
    config_yaml: Option<String>,
}

impl ConfigSource {
    /// Where the config came from, as errors and `validate` name it.
    fn origin(&self) -> String {
        match &self.config {
            Some(path) => path.display().to_string(),
            None => "NAGARE_CONFIG_YAML".to_string(),
        }
    }

    fn load(&self) -> Result<config::Config, nagare_core::config::ConfigError> {
        match (&self.config, &self.config_yaml) {
            (Some(path), _) => config::load(path),
            (None, text) => {
                let doc = nagare_core::config::ConfigDocument::from_text(
                    &self.origin(),
                    text.as_deref().unwrap_or_default(),
                    |name| std::env::var(name).ok(),
                )?;
                config::parse(&doc)
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            log_level,
            log_format,
        } => run(config, log_level, log_format),
        Command::Validate { config } => validate(config),
        Command::Demo(args) => match nagare::demo::run(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("nagare demo: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(source: ConfigSource, level: Option<String>, format: Option<LogFormat>) -> ExitCode {
    let config = match source.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let level = level.unwrap_or_else(|| config.log.level.clone());
    if let Err(e) = nagare::logging::init(&level, format.unwrap_or(config.log.format)) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(nagare::topology::run(
        config,
        nagare_core::shutdown::signal(),
    ));
    // Every component has stopped. A write still running on the blocking pool is one
    // that cannot finish (standard output is a pipe whose reader is stopped); what it
    // held was not acked, so the process does not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "nagare failed");
            ExitCode::FAILURE
        }
    }
}

fn validate(source: ConfigSource) -> ExitCode {
    let config = match source.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match nagare::topology::build_router(
        &config,
        false,
        &nagare_core::metrics::Metrics::new(env!("CARGO_PKG_VERSION")),
    ) {
        Ok((router, _)) => {
            print!(
                "{}",
                nagare::graph::describe(&source.origin(), &config, &router)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
