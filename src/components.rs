//! Every component this binary can run, each listed once, with the Cargo feature
//! that brings it in. A line here is all the binary needs to know of a component:
//! its config, validation, start and the route graph come from the trait it
//! implements (`nagare_core::component`) through the macros of
//! [`registry`](crate::registry). docs/architecture.md says how to add one.

use crate::registry::{filters, sinks, sources};

sources! {
    #[cfg(feature = "forwarder")] Tail => nagare_forwarder::sources::tail::TailSource,
    #[cfg(feature = "aggregator")] Forward => nagare_aggregator::sources::forward::ForwardServer,
    #[cfg(feature = "aggregator")] Http => nagare_aggregator::sources::http::HttpServer,
}

filters! {
    RecordModifier => nagare_core::filters::record_modifier::RecordModifier,
    Grep => nagare_core::filters::grep::Grep,
    Parser => nagare_parsers::ParserFilter,
}

sinks! {
    #[cfg(feature = "forwarder")] Forward => nagare_forwarder::sinks::forward::ForwardSink,
    #[cfg(feature = "aggregator")] Bigquery => nagare_aggregator::sinks::bigquery::BigQuerySink,
    #[cfg(feature = "aggregator")] CloudwatchLogs => nagare_aggregator::sinks::cloudwatch_logs::CloudWatchLogsSink,
    #[cfg(feature = "aggregator")] Elasticsearch => nagare_aggregator::sinks::elasticsearch::ElasticsearchSink,
    #[cfg(feature = "aggregator")] File => nagare_aggregator::sinks::file::FileSink,
    #[cfg(feature = "aggregator")] Stdout => nagare_aggregator::sinks::stdout::StdoutSink,
    #[cfg(feature = "aggregator")] Null => nagare_aggregator::sinks::null::NullSink,
}
