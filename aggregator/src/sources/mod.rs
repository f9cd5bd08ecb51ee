//! Sources of the aggregator: where events enter it.
//!
//! - [`forward`]: the Fluentd Forward Protocol server that forwarders, Fluentd and
//!   Fluent Bit send to.
//! - [`http`]: records over HTTP (Fluentd `in_http` compatible), for apps and sidecars
//!   that cannot speak forward.

pub mod forward;
pub mod http;
