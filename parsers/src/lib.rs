//! nagare-parsers: pure, synchronous parsers that turn log bytes into messages and
//! records. No I/O, no async; parsers borrow from the caller's buffers and allocate
//! only where a result cannot borrow.
//!
//! - [`container`]: container log framing: the line splitter, CRI and docker
//!   json-file lines with their partial-line merging, format detection, and the
//!   Kubernetes names in a `/var/log/containers` file name.
//! - [`formats`]: log formats (json, regex, logfmt, apache2, apache_error, nginx,
//!   nginx_error, syslog, ltsv, csv, tsv, none, multi_format): [`ParserConfig`] and
//!   [`Parser`], one line in, one record (and its time) out.
//! - [`time`]: time fields: strftime patterns, ISO 8601, epoch numbers, zones, and
//!   year-less times.
//! - [`types`]: typed conversion of parsed fields (`types: {code: integer}`).
//! - [`error`]: [`ParseError`], what was wrong with a line and where.
//! - [`filter`]: the `parser` filter ([`ParserFilter`]), Fluentd's `filter_parser`.
//! - [`multiline`]: stack-trace joining (Java, Python, Go, Ruby, Node.js, custom
//!   rules) as pure per-stream state machines.
//! - `fuzzing` (hidden): the checks each fuzz target in `fuzz/` runs, shared with
//!   the test suite's smoke run.

pub mod container;
pub mod error;
pub mod filter;
pub mod formats;
#[doc(hidden)]
pub mod fuzzing;
pub mod multiline;
pub mod time;
pub mod types;

pub use error::ParseError;
pub use filter::{ParserFilter, ParserFilterConfig};
pub use formats::{FormatConfig, Parsed, Parser, ParserConfig};
