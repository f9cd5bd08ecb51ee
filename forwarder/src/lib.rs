//! nagare-forwarder: the node side of a nagare deployment.
//!
//! - [`sources`]: where events enter: the `tail` source (container log files).
//! - [`filters`]: enrichment on the node: Kubernetes pod metadata from the API server
//!   (used by the `tail` source).
//! - [`sinks`]: where chunks leave the node: the Forward Protocol client (`forward`).
//!
//! Each component lives in its own folder (`config.rs`, `source.rs` or `sink.rs`,
//! and the files of its job) and is run by the binary from its config.

pub mod filters;
pub mod sinks;
pub mod sources;
