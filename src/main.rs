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
        /// Reload the config whenever its file changes (as SIGHUP and `POST
        /// /api/v1/reload` do): applied by difference, or refused and the running
        /// pipeline kept.
        #[arg(long)]
        watch_config: bool,
    },
    /// Check a config file and print its route graph: which source feeds which sinks.
    Validate {
        #[command(flatten)]
        config: ConfigSource,
    },
    /// Run a forwarder and an aggregator on generated container logs, delivering into
    /// a local file (or Elasticsearch with --elasticsearch), and print what arrived.
    Demo(nagare::demo::DemoArgs),
    /// Watch a running nagare process: events and bytes per second, totals, errors,
    /// buffers, per source, filter and sink, read from its admin API.
    Top(nagare::top::TopArgs),
    /// Print the events flowing through a running nagare process whose tags match a
    /// pattern, as NDJSON: at the sources, after the filters, or into one sink.
    Tap(nagare::tap::TapArgs),
    /// Exit 0 when a running nagare process answers that it is alive (or ready, with
    /// --ready), 1 otherwise: a health check command for containers.
    Health(nagare::health::HealthArgs),
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
    /// Where the config comes from.
    fn origin(&self) -> config::ConfigOrigin {
        match &self.config {
            Some(path) => config::ConfigOrigin::File(path.clone()),
            None => config::ConfigOrigin::Text {
                name: "NAGARE_CONFIG_YAML".to_string(),
                yaml: self.config_yaml.clone().unwrap_or_default(),
            },
        }
    }

    fn load(&self) -> Result<config::Config, nagare_core::config::ConfigError> {
        self.origin().load().map(|loaded| loaded.config)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            log_level,
            log_format,
            watch_config,
        } => run(config, log_level, log_format, watch_config),
        Command::Validate { config } => validate(config),
        Command::Demo(args) => match nagare::demo::run(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("nagare demo: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Health(args) => match nagare::health::run(&args) {
            Ok(answer) => {
                println!("{answer}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("nagare health: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Tap(args) => match nagare::tap::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("nagare tap: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Top(args) => match nagare::top::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("nagare top: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(
    source: ConfigSource,
    level: Option<String>,
    format: Option<LogFormat>,
    watch_config: bool,
) -> ExitCode {
    let origin = source.origin();
    let loaded = match origin.load() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let level = level.unwrap_or_else(|| loaded.config.log.level.clone());
    if let Err(e) = nagare::logging::init(&level, format.unwrap_or(loaded.config.log.format)) {
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
    let options = nagare::topology::RunOptions { watch_config };
    let result = runtime.block_on(async {
        // The signal handlers first: a SIGTERM while sources start stops them gently.
        let stop = nagare_core::shutdown::signal();
        nagare::topology::run(origin, loaded, options, stop).await
    });
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
                nagare::graph::describe(&source.origin().name(), &config, &router)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
