//! The `tail` source: follows files (container logs by default), frames their lines
//! (CRI, docker json-file or raw), and emits one event per log line, tagged after the
//! file's path as Fluentd's `in_tail` does.
//!
//! - [`config`]: [`TailConfig`], the source's keys and their defaults.
//! - [`discover`]: glob expansion with excludes; the tag of a path.
//! - [`file`](mod@file): one followed file: handle, identity (device + inode), offset, framing.
//! - [`record`]: the record built for each message.
//! - [`source`]: the runtime, [`run`].
//!
//! # Files
//!
//! The globs are expanded every `refresh_interval`; followed files are read every
//! `poll_interval` in blocks of 256 KiB. Files are told apart by device and inode, so
//! a file renamed by rotation is not read twice, and a new file under the old name is
//! read from its start. A file whose path no longer leads to it (rotated away,
//! deleted) is read to its end and then let go. A file that became shorter than what
//! was read (copytruncate) is read again from its start.
//!
//! # Records
//!
//! | field | when | value |
//! |---|---|---|
//! | `stream` | CRI and docker lines | `stdout` or `stderr` |
//! | `logtag` | CRI lines | `F` (pieces `P` … `F` are merged into one message) |
//! | `log` (`log_key`) | the message is not a JSON object, or `keep_log` | the message text |
//! | the message's fields | `merge_json` and the message is a JSON object | at the top level, or under `merge_json_key` |
//! | `_truncated` | the message was longer than `max_line_bytes` | `true`; the record holds one piece of it (a piece emitted before the message's end has logtag `P`) |
//! | `_malformed` | the line did not have the file's framing | `true`; the whole line is the text |
//! | `_invalid_utf8` | the message was not valid UTF-8 | `true`; invalid bytes became U+FFFD |
//! | `kubernetes` | `kubernetes_metadata` and the file name is `<pod>_<namespace>_<container>-<id>.log` | `{pod_name, namespace_name, container_name, container_id}` |
//!
//! A merged JSON field named like a field the source sets for that record is
//! replaced by the source's value. The event time is the line's CRI or docker time,
//! or the time it was read (raw and malformed lines). A CRI or docker message keeps
//! the time of its first piece.
//!
//! # Chunks
//!
//! Each file fills one chunk for its tag; the chunk is emitted when it reaches
//! `chunk_limit_size` and whenever the file has been read to its current end.
//! Emitting waits for room in the sinks' buffers, so a full buffer pauses reading.
//! At shutdown the chunks being filled are emitted; a message whose last piece has
//! not been written yet stays unemitted.

pub mod config;
pub mod discover;
pub mod file;
pub mod record;
pub mod source;

#[cfg(test)]
mod tests;

pub use config::{TailConfig, TailFormat};
pub use record::{INVALID_UTF8_KEY, MALFORMED_KEY, TRUNCATED_KEY};
pub use source::{TailError, run};
