//! `nagare demo`: the whole pipeline on realistic container logs.
//!
//! It writes CRI-format logs of four made-up pods (nginx access lines, JSON
//! application logs, a Python service with a stack trace, and long JSON lines that
//! the runtime split into partial `P` pieces) into a `/var/log/containers`-style
//! folder, starts this same binary twice, as a forwarder (tail -> forward) and as an
//! aggregator (forward -> file, and Elasticsearch with `--elasticsearch`, CloudWatch
//! Logs with `--cloudwatch`, BigQuery with `--bigquery`), keeps writing while they
//! run, waits until every line has arrived, stops both with SIGTERM, and prints what
//! arrived where.
//!
//! - `cloudwatch`: the CloudWatch Logs sink of `--cloudwatch`, and reading back what
//!   arrived there.
//! - `bigquery`: the BigQuery sink of `--bigquery`, and counting what arrived there.
//! - `progress`: records generated and delivered so far, on standard error while
//!   the demo runs.

#[cfg(feature = "aggregator")]
mod bigquery;
#[cfg(feature = "aggregator")]
mod cloudwatch;
mod progress;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nagare_core::EventTime;

/// Options of `nagare demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Lines written per container (four containers).
    #[arg(long, default_value_t = 2500)]
    pub lines: usize,
    /// Work in this directory instead of a new temporary one (kept afterwards).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Also deliver to this Elasticsearch or OpenSearch URL (index `logstash-*`).
    #[arg(long, value_name = "URL")]
    pub elasticsearch: Option<String>,
    /// Also deliver to CloudWatch Logs at this endpoint
    /// (`https://logs.us-east-1.amazonaws.com`, or an emulator's URL), with the
    /// credentials the AWS SDK finds (environment, profile, ...), and read back what
    /// arrived, per group and stream.
    #[cfg(feature = "aggregator")]
    #[arg(long, value_name = "URL")]
    pub cloudwatch: Option<String>,
    /// The AWS region of --cloudwatch.
    #[cfg(feature = "aggregator")]
    #[arg(
        long,
        value_name = "REGION",
        env = "AWS_REGION",
        default_value = "us-east-1"
    )]
    pub region: String,
    /// Also insert into BigQuery at this endpoint (`https://bigquery.googleapis.com`,
    /// or an emulator's URL), creating a dataset and a table, with Application Default
    /// Credentials (none for an `http://` endpoint), and count what arrived.
    #[cfg(feature = "aggregator")]
    #[arg(long, value_name = "URL")]
    pub bigquery: Option<String>,
    /// The Google Cloud project of --bigquery.
    #[cfg(feature = "aggregator")]
    #[arg(
        long,
        value_name = "PROJECT",
        env = "GOOGLE_CLOUD_PROJECT",
        default_value = "nagare-demo"
    )]
    pub bigquery_project: String,
    /// Keep the temporary directory (logs, configs, output) afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Seconds to wait for every line to arrive.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// How often to report progress on standard error (`0s`: never).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub progress_interval: Duration,
}

/// One made-up container and the lines it logs.
struct Container {
    pod: &'static str,
    namespace: &'static str,
    name: &'static str,
    id: String,
}

impl Container {
    fn file_name(&self) -> String {
        format!(
            "{}_{}_{}-{}.log",
            self.pod, self.namespace, self.name, self.id
        )
    }
}

fn containers() -> Vec<Container> {
    let id = |seed: u64| {
        let mut s = String::new();
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for _ in 0..64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.push(char::from(b"0123456789abcdef"[(x & 15) as usize]));
        }
        s
    };
    vec![
        Container {
            pod: "web-6d4cf56db6-x7k2p",
            namespace: "shop",
            name: "nginx",
            id: id(1),
        },
        Container {
            pod: "checkout-7f9c8d7b5-q4m8n",
            namespace: "shop",
            name: "checkout",
            id: id(2),
        },
        Container {
            pod: "billing-worker-0",
            namespace: "payments",
            name: "worker",
            id: id(3),
        },
        Container {
            pod: "ingest-5b7d9c4f8-zz9xk",
            namespace: "data",
            name: "ingest",
            id: id(4),
        },
    ]
}

/// Appends `n` log records of container `which` (0..4), starting at record `from`,
/// as CRI lines. Returns how many records (after P/F merging) they make.
fn write_lines(
    path: &Path,
    which: usize,
    from: usize,
    n: usize,
    start: EventTime,
) -> anyhow::Result<usize> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut out = String::with_capacity(n * 200);
    let mut records = 0;
    let paths = [
        "/",
        "/cart",
        "/api/v1/products?page=2",
        "/static/app.js",
        "/checkout",
    ];
    let agents = [
        "Mozilla/5.0 (X11; Linux x86_64)",
        "curl/8.5.0",
        "kube-probe/1.30",
    ];
    for i in from..from + n {
        let t = EventTime::new(
            start.secs() + (i / 50) as i64,
            ((i % 50) * 20_000_000) as u32,
        );
        let ts = t.to_rfc3339();
        match which {
            0 => {
                let code = [200, 200, 200, 304, 404, 500][i % 6];
                let _ = writeln!(
                    out,
                    "{ts} stdout F 10.42.{}.{} - - [{}] \"GET {} HTTP/1.1\" {code} {} \"-\" \"{}\"",
                    i % 7,
                    i % 250,
                    clf_time(t),
                    paths[i % paths.len()],
                    512 + i % 4096,
                    agents[i % agents.len()]
                );
                records += 1;
            }
            1 => {
                let level = ["info", "info", "debug", "warn", "error"][i % 5];
                let _ = writeln!(
                    out,
                    "{ts} stdout F {{\"level\":\"{level}\",\"msg\":\"order {}\",\"trace_id\":\"{:016x}\",\"duration_ms\":{},\"user_id\":{},\"ok\":{}}}",
                    if level == "error" {
                        "payment declined"
                    } else {
                        "placed"
                    },
                    i * 7919,
                    i % 900,
                    10_000 + i,
                    level != "error"
                );
                records += 1;
            }
            2 => {
                if i % 25 == 24 {
                    // A Python traceback: one record per line until multiline joins them.
                    let trace = [
                        "Traceback (most recent call last):",
                        "  File \"/app/worker.py\", line 88, in run",
                        "    charge(invoice)",
                        "  File \"/app/billing.py\", line 41, in charge",
                        "    raise PaymentError(f\"card declined for {invoice.id}\")",
                        "billing.PaymentError: card declined for inv-1042",
                    ];
                    for l in trace {
                        let _ = writeln!(out, "{ts} stderr F {l}");
                        records += 1;
                    }
                } else {
                    let _ = writeln!(
                        out,
                        "{ts} stdout F INFO worker: processed invoice inv-{} in {} ms",
                        1000 + i,
                        i % 120
                    );
                    records += 1;
                }
            }
            _ => {
                // Every tenth record is a long JSON line the runtime split in pieces.
                let payload = if i % 10 == 0 {
                    "x".repeat(300)
                } else {
                    format!("batch-{i}")
                };
                let line =
                    format!("{{\"event\":\"ingest\",\"seq\":{i},\"payload\":\"{payload}\"}}");
                if i % 10 == 0 {
                    let (a, rest) = line.split_at(100);
                    let (b, c) = rest.split_at(120);
                    let _ = writeln!(out, "{ts} stdout P {a}");
                    let _ = writeln!(out, "{ts} stdout P {b}");
                    let _ = writeln!(out, "{ts} stdout F {c}");
                } else {
                    let _ = writeln!(out, "{ts} stdout F {line}");
                }
                records += 1;
            }
        }
    }
    f.write_all(out.as_bytes())?;
    Ok(records)
}

fn clf_time(t: EventTime) -> String {
    let (y, m, d) = t.date();
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let sod = t.secs().rem_euclid(86_400);
    format!(
        "{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000",
        months[(m - 1) as usize],
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child `nagare run` that is stopped with SIGTERM when dropped.
struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn start(name: &'static str, config: &Path, dir: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the nagare binary")?;
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(exe)
            .args(["run", "-c"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start the {name}"))?;
        Ok(Self { name, child, log })
    }

    /// SIGTERM, then wait (up to `grace`) for a clean exit.
    fn stop(&mut self, grace: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!(
                    "the {} did not stop within {:?} of SIGTERM (see {})",
                    self.name,
                    grace,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            bail!("the {} exited early ({status}):\n{log}", self.name);
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Counts the records in the file sink's output, by container.
fn count_output(path: &Path) -> (usize, BTreeMap<String, usize>, Option<String>) {
    let mut total = 0;
    let mut by = BTreeMap::new();
    let mut sample = None;
    let Ok(f) = std::fs::File::open(path) else {
        return (0, by, None);
    };
    for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        total += 1;
        let k = &v["record"]["kubernetes"];
        let key = format!(
            "{}/{}/{}",
            k["namespace_name"].as_str().unwrap_or("?"),
            k["pod_name"].as_str().unwrap_or("?"),
            k["container_name"].as_str().unwrap_or("?")
        );
        *by.entry(key).or_insert(0) += 1;
        if sample.is_none() && v["record"]["level"].is_string() {
            sample = Some(line);
        }
    }
    (total, by, sample)
}

/// Runs the demo; the exit code says whether every line arrived.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let mut temp = None;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            let t = tempfile::Builder::new().prefix("nagare-demo-").tempdir()?;
            let p = t.path().to_path_buf();
            temp = Some(t);
            p
        }
    };
    let logs = dir.join("var/log/containers");
    let out = dir.join("out");
    std::fs::create_dir_all(&logs)?;
    std::fs::create_dir_all(&out)?;
    let port = free_port()?;
    let output = out.join("records.ndjson");

    let mut es_sink = String::new();
    if let Some(url) = &args.elasticsearch {
        let _ = write!(
            es_sink,
            "  elasticsearch:\n    type: elasticsearch\n    match: \"kube.**\"\n    endpoints: [\"{url}\"]\n"
        );
    }
    #[cfg(feature = "aggregator")]
    let cloudwatch = match &args.cloudwatch {
        Some(url) => Some(cloudwatch::CloudWatch::new(url, &args.region)?),
        None => None,
    };
    #[cfg(feature = "aggregator")]
    if let Some(cw) = &cloudwatch {
        es_sink.push_str(&cw.sink());
    }
    #[cfg(feature = "aggregator")]
    let bigquery = match &args.bigquery {
        Some(url) => Some(bigquery::BigQuery::new(url, &args.bigquery_project)?),
        None => None,
    };
    #[cfg(feature = "aggregator")]
    if let Some(bq) = &bigquery {
        es_sink.push_str(&bq.sink());
    }
    let aggregator = dir.join("aggregator.yaml");
    std::fs::write(
        &aggregator,
        format!(
            "# The aggregator: forward in, file (and Elasticsearch) out.\n\
             data_dir: {data}\n\
             shutdown_timeout: 20s\n\
             sources:\n  from_nodes:\n    type: forward\n    bind: 127.0.0.1:{port}\n\
             sinks:\n  local_file:\n    type: file\n    match: \"**\"\n    path: {output}\n{es_sink}",
            data = dir.join("data-aggregator").display(),
            output = output.display(),
        ),
    )?;
    let forwarder = dir.join("forwarder.yaml");
    std::fs::write(
        &forwarder,
        format!(
            "# The forwarder: tail container logs, forward them to the aggregator.\n\
             data_dir: {data}\n\
             shutdown_timeout: 20s\n\
             sources:\n  containers:\n    type: tail\n    paths: [\"{logs}/*.log\"]\n    read_from_head: true\n    refresh_interval: 200ms\n    poll_interval: 50ms\n\
             filters:\n  node:\n    type: record_modifier\n    match: \"kube.**\"\n    records:\n      kubernetes.host: demo-node-1\n\
             sinks:\n  aggregator:\n    type: forward\n    match: \"**\"\n    servers:\n      - host: 127.0.0.1\n        port: {port}\n",
            data = dir.join("data-forwarder").display(),
            logs = logs.display(),
        ),
    )?;

    let cs = containers();
    let start = EventTime::now();
    let first = args.lines / 2;
    let mut expected = 0;
    for (i, c) in cs.iter().enumerate() {
        expected += write_lines(&logs.join(c.file_name()), i, 0, first, start)?;
    }
    println!(
        "nagare demo: {} containers writing CRI logs under {}",
        cs.len(),
        logs.display()
    );
    println!(
        "  aggregator: forward 127.0.0.1:{port} -> file {}",
        output.display()
    );
    if let Some(url) = &args.elasticsearch {
        println!("              and elasticsearch {url}");
    }
    #[cfg(feature = "aggregator")]
    if let Some(cw) = &cloudwatch {
        println!("              and {}", cw.describe());
    }
    #[cfg(feature = "aggregator")]
    if let Some(bq) = &bigquery {
        println!("              and {}", bq.describe());
    }
    println!(
        "  forwarder:  tail {}/*.log -> forward 127.0.0.1:{port}",
        logs.display()
    );

    let began = Instant::now();
    let mut progress = progress::Progress::new(args.progress_interval);
    let mut agg = Process::start("aggregator", &aggregator, &dir)?;
    let ready = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        agg.check_alive()?;
        if Instant::now() > ready {
            bail!(
                "the aggregator did not start listening (see {})",
                agg.log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut fwd = Process::start("forwarder", &forwarder, &dir)?;

    // The second half arrives while the forwarder runs, in bursts, as a live node's
    // containers would write it.
    let rest = args.lines - first;
    let bursts = 5;
    for b in 0..bursts {
        let from = first + b * rest / bursts;
        let n = (b + 1) * rest / bursts - b * rest / bursts;
        for (i, c) in cs.iter().enumerate() {
            expected += write_lines(&logs.join(c.file_name()), i, from, n, start)?;
        }
        std::thread::sleep(Duration::from_millis(100));
        progress.tick(expected, count_output(&output).0);
    }

    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut arrived;
    loop {
        arrived = count_output(&output).0;
        progress.tick(expected, arrived);
        if arrived >= expected || Instant::now() > deadline {
            break;
        }
        fwd.check_alive()?;
        agg.check_alive()?;
        std::thread::sleep(Duration::from_millis(50));
    }
    // CloudWatch Logs gets the same records, in its own time.
    #[cfg(feature = "aggregator")]
    let mut in_cloudwatch = None;
    #[cfg(feature = "aggregator")]
    if let Some(cw) = &cloudwatch {
        loop {
            let now = cw.arrived()?;
            let done = now.total >= expected || Instant::now() > deadline;
            in_cloudwatch = Some(now);
            if done {
                break;
            }
            agg.check_alive()?;
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    #[cfg(feature = "aggregator")]
    let in_bigquery = match &bigquery {
        Some(bq) => Some(bq.wait(expected, deadline, || agg.check_alive())?),
        None => None,
    };
    let took = began.elapsed();
    progress.finish();
    let fwd_status = fwd.stop(Duration::from_secs(25))?;
    let agg_status = agg.stop(Duration::from_secs(25))?;
    let (arrived, by, sample) = count_output(&output);

    println!();
    println!(
        "delivered {arrived} of {expected} records in {:.2} s ({:.0} records/s end to end, through two processes)",
        took.as_secs_f64(),
        arrived as f64 / took.as_secs_f64().max(1e-9)
    );
    for (k, n) in &by {
        println!("  {k:<48} {n:>7}");
    }
    if let Some(line) = sample {
        // Through nagare's own map, which keeps the fields in the order stored.
        let stored: nagare_core::Map = serde_json::from_str(&line)?;
        println!("\na record as the aggregator stored it:");
        println!("{}", serde_json::to_string_pretty(&stored)?);
    }
    #[cfg(feature = "aggregator")]
    let cloudwatch_ok = match &in_cloudwatch {
        None => true,
        Some(cw) => {
            println!("\nin CloudWatch Logs: {} of {expected} events", cw.total);
            let width = cw.by_stream.keys().map(|(g, _)| g.len()).max().unwrap_or(0);
            for ((group, stream), n) in &cw.by_stream {
                println!("  {group:<width$}  {stream:<40} {n:>7}");
            }
            if let Some(message) = &cw.sample {
                println!("an event's message as CloudWatch Logs stored it:\n{message}");
            }
            cw.total == expected
        }
    };
    #[cfg(not(feature = "aggregator"))]
    let cloudwatch_ok = true;
    #[cfg(feature = "aggregator")]
    let bigquery_ok = match (&in_bigquery, &bigquery) {
        (Some(arrived), Some(bq)) => bq.report(arrived, expected),
        _ => true,
    };
    #[cfg(not(feature = "aggregator"))]
    let bigquery_ok = true;
    println!(
        "\nforwarder exited {}, aggregator exited {} (SIGTERM: graceful shutdown)",
        fwd_status, agg_status
    );
    if args.keep {
        // Detach the temporary directory so it survives.
        let _ = temp.take().map(tempfile::TempDir::keep);
    }
    if temp.is_none() {
        println!("logs, configs and output are in {}", dir.display());
    }
    let ok = arrived == expected
        && cloudwatch_ok
        && bigquery_ok
        && fwd_status.success()
        && agg_status.success();
    if !ok {
        eprintln!(
            "missing records or a failed exit; process logs: {} and {}",
            fwd.log.display(),
            agg.log.display()
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
