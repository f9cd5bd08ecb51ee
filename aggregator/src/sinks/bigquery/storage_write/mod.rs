//! `method: storage_write`: rows sent over gRPC with the BigQuery Storage Write API,
//! exactly once through crashes with committed streams (`write_stream: committed`),
//! at least once with the table's `_default` stream (`write_stream: default`).
//!
//! - [`descriptor`]: the table schema as the protobuf writer schema;
//! - [`encode`]: a record as one protobuf row of it, and as the sink's item;
//! - [`client`]: the `BigQueryWrite` gRPC client (streams, appends);
//! - [`journal`]: the offsets journal, appends recorded durably before they are sent;
//! - [`recovery`]: the journal shared by the workers, and the streams a run left
//!   open finalized before the next run appends;
//! - [`service`]: the kit service, batches of rows as appends, and what each answer
//!   means for each row;
//! - [`claims`]: rows waiting for another worker's append, and the stream of an
//!   append abandoned by its worker finalized;
//! - [`retry`]: what refusals of whole calls mean.

pub mod claims;
pub mod client;
pub mod descriptor;
pub mod encode;
pub mod journal;
pub mod recovery;
pub mod retry;
pub mod service;
pub mod sink;
