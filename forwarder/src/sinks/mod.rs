//! Sinks of the forwarder: where its chunks leave the node.
//!
//! - [`forward`]: the Fluentd Forward Protocol client that ships chunks to the
//!   aggregators.

pub mod forward;
