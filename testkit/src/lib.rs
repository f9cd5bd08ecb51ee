//! nagare-testkit: the real servers and clients nagare's tests talk to, started per
//! test on loopback and stopped when the test ends. Dev-only.
//!
//! - [`paths`]: where the repository and `.testenv/` (installed by `scripts/test`) are.
//! - [`wait`]: `free_port`, `wait_until` (and `wait_until_async` for async tests).
//! - [`child`]: [`Child`], the process guard everything below uses (output captured to
//!   files, killed and reaped on drop).
//! - [`http`]: a blocking HTTP client (ureq) for the helpers.
//! - [`osmem`]: [`Osmem`], an osmem-server (OpenSearch REST API in memory) per test.
//! - [`fault_proxy`]: [`FaultProxy`], a fault injector in front of osmem for `_bulk`
//!   (a hyper server relaying through [`http`]).
//! - [`moto`]: [`Moto`], moto's server (CloudWatch Logs, STS, IAM) once per test
//!   binary, with signature checking on, and signed helpers to read what was stored.
//! - [`bigquery`]: [`LocalBigQuery`], local-bigquery (BigQuery's REST API and the
//!   Storage Write API over gRPC, on DuckDB) once per test binary, with helpers to
//!   create datasets and tables, insert, list and query rows.
//! - [`bigquery_proxy`]: [`BigQueryProxy`], a recording and fault-injecting proxy for
//!   insertAll requests (rate limits, 5xx, cut connections) in front of local-bigquery.
//! - [`aws_proxy`]: [`AwsProxy`], a recording and fault-injecting proxy for AWS
//!   JSON-protocol requests (PutLogEvents ...) in front of moto.
//! - [`stall_proxy`]: [`StallProxy`], a TCP relay (gRPC included) that holds the
//!   requests or the answers on demand, then cuts the connections.
//! - [`tls_front`]: [`TlsFront`], a TLS-terminating front (rustls, optionally
//!   requiring client certificates) for a plain HTTP server such as osmem.
//! - [`sigv4_proxy`]: [`SigV4Proxy`], a proxy in front of osmem that checks AWS SigV4
//!   signatures (and API keys) with botocore, once per test binary, a route per test.
//! - [`proxy_server`]: [`ProxyServer`](proxy_server::ProxyServer), the HTTP server
//!   under the proxies.
//! - [`prometheus`]: [`Prometheus`], a real Prometheus server scraping a test's
//!   processes, and [`promtool_check`], its lint of an exposition.
//! - [`faults`]: [`Strace`] (system calls of a running process made to fail) and
//!   [`Tmpfs`] (a small file system that really fills up).
//! - [`clients`]: [`Python`] and [`Node`], the interpreters with the fluent-logger
//!   Forward Protocol clients.
//! - [`logs`]: [`capture_logs`], what the code under test logs, as lines.
//! - [`proc`]: `rss_kib` and `dir_bytes`, memory and disk held, for bounds checks.
//! - [`docs`]: the config examples in components' module docs, for tests to parse.

pub mod aws_proxy;
pub mod bigquery;
pub mod bigquery_proxy;
pub mod child;
pub mod clients;
pub mod docs;
pub mod fault_proxy;
pub mod faults;
pub mod http;
pub mod logs;
pub mod moto;
pub mod osmem;
pub mod paths;
pub mod proc;
pub mod prometheus;
pub mod proxy_server;
pub mod sigv4_proxy;
pub mod stall_proxy;
pub mod tls_front;
pub mod wait;

pub use aws_proxy::{AwsError, AwsExchange, AwsFault, AwsProxy};
pub use bigquery::LocalBigQuery;
pub use bigquery_proxy::{BigQueryProxy, InsertExchange, InsertFault};
pub use child::Child;
pub use clients::{Node, Python};
pub use fault_proxy::{BulkExchange, BulkFault, FaultProxy};
pub use faults::{Strace, Tmpfs};
pub use logs::{LogCapture, capture_logs};
pub use moto::Moto;
pub use osmem::{Document, Osmem};
pub use prometheus::{Prometheus, promtool_check};
pub use sigv4_proxy::{Route, RouteSpec, Seen, SigV4Proxy};
pub use stall_proxy::StallProxy;
pub use tls_front::TlsFront;
pub use wait::{free_port, wait_until, wait_until_async};
