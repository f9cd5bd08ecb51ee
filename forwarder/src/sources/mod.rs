//! Sources: where events enter a forwarder.
//!
//! - [`tail`]: follows log files (container logs) and emits their lines as events.

pub mod tail;
