//! Sources of the aggregator: where events enter it.
//!
//! - [`forward`]: the Fluentd Forward Protocol server that forwarders, Fluentd and
//!   Fluent Bit send to.

pub mod forward;
