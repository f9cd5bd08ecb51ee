//! The `parser` filter: parses one field of each record with a [`Parser`] and puts
//! the result into the record, with the options of Fluentd's `filter_parser`.
//!
//! ```yaml
//! filters:
//!   parse_access_logs:
//!     type: parser
//!     match: "kube.var.log.containers.web-**"
//!     key_name: log
//!     reserve_data: true
//!     remove_key_name_field: true
//!     parse:
//!       format: multi_format
//!       patterns:
//!         - format: json
//!         - format: nginx
//! ```
//!
//! A record whose field does not parse goes to the error route (`@ERROR.<tag>`)
//! with the reason, as with Fluentd's `emit_invalid_record_to_error` (the default);
//! with that option off it passes through unchanged. It is never dropped silently.
//!
//! [`Parser`]: crate::Parser

mod config;
mod runtime;

pub use config::ParserFilterConfig;
pub use runtime::ParserFilter;

#[cfg(test)]
mod tests;
