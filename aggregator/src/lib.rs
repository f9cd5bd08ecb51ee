//! nagare-aggregator: the server side of a nagare deployment.
//!
//! - [`sources`]: where events enter: the Forward Protocol server (`forward`) and
//!   the HTTP input (`http`).
//! - [`sinks`]: where events leave: `elasticsearch`, `cloudwatch_logs`, `file`,
//!   `stdout`, and the shared dead-letter file.
//! - [`aws`]: the `aws:` block (region, profile, role to assume, STS endpoint) of
//!   the sinks that call AWS.
//! - [`gcp`]: Google credentials (key file, metadata server, none) and the access
//!   tokens of the sinks that call Google APIs.
//!
//! Each component lives in its own folder (`config.rs`, `source.rs` or `sink.rs`,
//! and the files of its job) and is run by the binary from its config.

pub mod aws;
pub mod gcp;
pub mod sinks;
pub mod sources;
