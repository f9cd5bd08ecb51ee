//! The `tail` source: follows files (container logs by default), frames their lines
//! (CRI, docker json-file or raw), and emits one event per log line, tagged after the
//! file's path as Fluentd's `in_tail` does.
//!
//! - [`config`]: [`TailConfig`], the source's keys and their defaults.
//! - [`discover`]: glob expansion with excludes; the tag of a path.
//! - [`watch`]: kernel notifications (inotify) that wake the source, polling below.
//! - [`file`](mod@file): one followed file: handle, identity (device + inode +
//!   fingerprint of its first bytes), offsets, framing and multiline state.
//! - [`checkpoint`]: the checkpoint store: offsets that move only when the chunk
//!   holding the lines was delivered (its receipt fired), written atomically.
//! - [`record`]: the record built for each message.
//! - [`metrics`]: [`TailMetrics`], the counters the source keeps up to date.
//! - [`source`]: the component ([`TailSource`]) and its loop; [`run`] /
//!   [`run_with_metrics`].
//! - `files`: the set of followed files: discovery, rotation, truncation, recovery
//!   after a restart.
//! - `read`: one file's turn: blocks, lines, framing, multiline.
//! - `emit`: messages into records in the file's lane, and the chunk out with the
//!   receipt that moves the checkpoint.
//!
//! # Files
//!
//! The globs are expanded every `refresh_interval`, and at once when the kernel
//! reports a file created or moved in a watched directory; followed files are read
//! when written (inotify) and every `poll_interval`, in blocks of 256 KiB. Files are
//! told apart by device, inode and a fingerprint of their first 1 KiB, so a file
//! renamed by rotation is not read twice, a new file under the old name is read from
//! its start, and a reused inode is noticed. A file whose path no longer leads to it
//! (rotated away, deleted) is read to its end through its open handle, watched for
//! `rotate_wait`, then let go. A file that became shorter than what was read, or whose
//! first bytes changed (copytruncate), is read again from its start after the rest of
//! its old content is read from the copy beside it.
//!
//! # Checkpoints
//!
//! Each chunk carries a receipt; when it fires (the next hop acknowledged the chunk,
//! or a durable buffer committed it) the file's checkpoint moves past the chunk's
//! lines, and the store writes it every `checkpoint_interval`. A restart resumes each
//! file at its checkpoint, reads files that appeared meanwhile from their start, and
//! finds files rotated meanwhile beside their old path. Delivery is at-least-once: a
//! crash re-sends what was not checkpointed, never less.
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
//! | `path_key` | set | the path the file was found under |
//! | `offset_key` | set | the offset in the file of the record's first line (of a merged message's first piece, of a multiline event's first line) |
//! | `event_id_key` | set | `<16 hex digits>-<offset>`: the file's identity hashed ([`file::event_id_hash`]), and the offset |
//!
//! A merged JSON field named like a field the source sets for that record is
//! replaced by the source's value. A checkpoint is always the start of a record (a
//! held piece or multiline event keeps it at its first line), so a record read again
//! after a crash has the offset, and the event id, it had. The event time is the line's CRI or docker time,
//! or the time it was read (raw and malformed lines). A CRI or docker message keeps
//! the time of its first piece.
//!
//! # Chunks
//!
//! Each file fills one chunk for its tag; the chunk is emitted when it reaches
//! `chunk_limit_size` and whenever the file has been read to its current end.
//! Emitting waits for room in the sinks' buffers, so a full buffer pauses reading
//! (no reads, no memory growth) until there is room. At shutdown the chunks being
//! filled are emitted; a message whose last piece has not been written yet, and a
//! multiline event still open, stay unemitted, before the checkpoint, and are read
//! again whole after the restart.
//!
//! # Multiline and Kubernetes metadata
//!
//! With `multiline`, merged messages pass through one joiner per file and stream
//! (`nagare_parsers::multiline`), which holds a stack trace until it ends or
//! `flush_timeout` passes. With `kubernetes_metadata`, the pod's metadata from the API
//! server ([`crate::filters::kubernetes`]) is encoded once per file and re-encoded when
//! the cache changes; lines of pods annotated `nagare.io/exclude: "true"` are dropped.

pub mod checkpoint;
pub mod config;
pub mod discover;
mod emit;
pub mod file;
mod files;
pub mod metrics;
mod read;
pub mod record;
pub mod source;
pub mod watch;

#[cfg(test)]
mod tests;

pub use config::{TailConfig, TailFormat};
pub use metrics::{FileMetrics, TailMetrics, TailMetricsSnapshot};
pub use record::{INVALID_UTF8_KEY, MALFORMED_KEY, TRUNCATED_KEY};
pub use source::{TailSource, TailSourceError, run, run_with_metrics};
