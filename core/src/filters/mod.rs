//! Filters that any tier can run: they change or drop records by tag.
//!
//! - [`record_modifier`]: add, overwrite and remove fields (Fluent Bit's
//!   `record_modifier`, Fluentd's `record_transformer` without Ruby).
//! - [`grep`]: keep or drop events by regular expressions on fields (Fluentd's `grep`).
//!
//! Each filter has a config (`config` section of the filter entry) and implements
//! [`Filter`](crate::router::Filter).

pub mod grep;
pub mod record_modifier;
