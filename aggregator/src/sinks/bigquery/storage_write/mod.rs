//! `method: storage_write`: rows sent over gRPC with the BigQuery Storage Write API,
//! exactly once through crashes with committed streams.
//!
//! - [`descriptor`]: the table schema as the protobuf writer schema;
//! - [`encode`]: a record as one protobuf row of it.

pub mod client;
pub mod descriptor;
pub mod encode;
pub mod journal;
pub mod service;
