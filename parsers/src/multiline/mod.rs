//! Multiline: joins the lines of one logical event (a stack trace) back together,
//! as pure state machines: no I/O, no clock.
//!
//! A [`MultilineRules`] is compiled once from a [`MultilineConfig`]: the built-in
//! stack-trace rules of Java, Python, Go, Ruby and Node.js, and/or a custom rule
//! (a start regex and a continuation regex). A [`Multiline`] holds the state of one
//! stream (the tail source keeps one per file and stream, after CRI / docker
//! partial lines are merged); it takes one [`Line`] at a time and calls back with
//! complete [`Message`]s:
//!
//! - a line that starts no event and continues none comes out at once, borrowed;
//! - a line that starts one (`java.lang.IllegalStateException: boom`) is held, and
//!   the lines that continue it (`\tat com.example.App.main(App.java:5)`) are
//!   joined to it with `\n`, until a line does not continue it, or `max_lines` /
//!   `max_bytes` is reached, or the caller calls [`Multiline::poll`] after
//!   `flush_timeout` without a new line ([`Multiline::deadline`] says when), or
//!   [`Multiline::flush`] at the end.
//!
//! The rules are state machines in the manner of Fluentd's `detect_exceptions` and
//! Fluent Bit's multiline parsers: each rule says "in state A, a line matching R
//! moves to state B"; a line that matches no rule of the current state ends the
//! event.
//!
//! ```yaml
//! multiline:
//!   languages: [java, python, go]
//!   max_lines: 1000
//!   flush_timeout: 1s
//! ```

mod config;
mod detector;
mod rules;

pub use config::{CustomRule, Language, MultilineConfig};
pub use detector::{Line, Message, Multiline, MultilineRules};

#[cfg(test)]
mod tests;
