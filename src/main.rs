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
        /// The YAML config file.
        #[arg(short, long, value_name = "FILE", env = "NAGARE_CONFIG")]
        config: PathBuf,
        /// Log level or filter, overriding the config's `log.level`.
        #[arg(long, value_name = "LEVEL")]
        log_level: Option<String>,
        /// Log format, overriding the config's `log.format`.
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Check a config file and print its route graph: which source feeds which sinks.
    Validate {
        /// The YAML config file.
        #[arg(short, long, value_name = "FILE", env = "NAGARE_CONFIG")]
        config: PathBuf,
    },
    /// Run a forwarder and an aggregator on generated container logs, delivering into
    /// a local file (or Elasticsearch with --elasticsearch), and print what arrived.
    Demo(nagare::demo::DemoArgs),
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

fn run(path: PathBuf, level: Option<String>, format: Option<LogFormat>) -> ExitCode {
    let config = match config::load(&path) {
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

fn validate(path: PathBuf) -> ExitCode {
    let config = match config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match nagare::topology::build_router(&config, false) {
        Ok((router, _)) => {
            print!(
                "{}",
                nagare::graph::describe(&path.display().to_string(), &config, &router)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
