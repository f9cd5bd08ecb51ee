//! The `buffer:` section of a sink: where chunks wait, how big they grow, when they
//! are handed to the sink, and how the sink retries them. Names and meanings follow
//! Fluentd's `<buffer>` section.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::component::Invalid;
use crate::compression::Compression;
use crate::config::{ByteSize, HumanDuration};
use crate::retry::{Backoff, RetryLimit, RetryPolicy};

/// Where a buffer keeps its chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BufferKind {
    /// In memory: fastest; chunks not yet confirmed are lost if the process dies.
    #[default]
    Memory,
    /// In files under `path`, compressed: a chunk is committed once it is written and
    /// fsynced, and survives a crash or a restart.
    File,
}

/// What a full buffer does with a new chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowAction {
    /// The producer waits until there is room: the tailer pauses, the forward server
    /// stops reading (so its clients' acks wait). Nothing is lost.
    #[default]
    Block,
    /// The oldest queued chunk is discarded to make room.
    DropOldestChunk,
    /// The new chunk is discarded.
    DropNewest,
}

/// When chunks are handed to the sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlushMode {
    /// `interval` for a file buffer, `immediate` for a memory buffer.
    #[default]
    Default,
    /// Chunks of one tag are appended to a staged chunk, which is queued when it
    /// reaches `chunk_limit_size` or `chunk_limit_records`, or is `flush_interval` old.
    Interval,
    /// Every chunk a source emits is queued as it is.
    Immediate,
}

/// When a file buffer fsyncs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Every append is fsynced before the push returns: a committed chunk survives a
    /// crash of the machine, not only of nagare.
    #[default]
    PerChunk,
    /// Nothing is fsynced: a committed chunk is in the operating system's page cache,
    /// which survives a crash of nagare but not a power loss or kernel crash.
    Never,
}

/// How the waits between retries grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryType {
    /// `retry_wait`, then times `retry_exponential_backoff_base` per retry, up to
    /// `retry_max_interval`.
    #[default]
    ExponentialBackoff,
    /// `retry_wait` every time.
    Periodic,
}

/// The `buffer:` section of a sink.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Where chunks are kept: `memory` or `file`.
    #[serde(rename = "type", default)]
    pub kind: BufferKind,
    /// The folder of a file buffer. Default: `<data_dir>/buffer/<sink name>`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Most bytes held at once: staged, queued and in flight together (for a file
    /// buffer, bytes on disk, after compression).
    #[serde(default = "default_total_limit_size")]
    pub total_limit_size: ByteSize,
    /// A staged chunk is queued once it holds this many bytes of encoded events.
    /// Unset: the sink's own default where it has one (`bigquery`: 1 MiB), else
    /// [`DEFAULT_CHUNK_LIMIT_SIZE`]; read it with [`BufferConfig::chunk_limit`].
    #[serde(default)]
    pub chunk_limit_size: Option<ByteSize>,
    /// A staged chunk is queued once it holds this many events. Unset: no limit.
    #[serde(default)]
    pub chunk_limit_records: Option<u32>,
    /// When chunks are handed to the sink: `default`, `interval` or `immediate`.
    #[serde(default)]
    pub flush_mode: FlushMode,
    /// A staged chunk is queued once it is this old.
    #[serde(default = "default_flush_interval")]
    pub flush_interval: HumanDuration,
    /// At shutdown, hand staged and queued chunks to the sink before stopping.
    /// Default: true for a memory buffer (or they would be lost), false for a file
    /// buffer (they are sent after the restart).
    #[serde(default)]
    pub flush_at_shutdown: Option<bool>,
    /// How many deliveries the sink runs at once, where it can.
    #[serde(default = "default_flush_thread_count")]
    pub flush_thread_count: usize,
    /// What to do with a new chunk when the buffer is full.
    #[serde(default)]
    pub overflow_action: OverflowAction,
    /// How a file buffer compresses chunks: `zstd` (at `compress_level`) or `none`
    /// (stored as they are).
    #[serde(default = "default_compress")]
    pub compress: Compression,
    /// The zstd level (1 is fast; up to 19 is smaller and slower).
    #[serde(default = "default_compress_level")]
    pub compress_level: i32,
    /// When a file buffer fsyncs: `per_chunk` or `never`.
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// How the waits between retries grow: `exponential_backoff` or `periodic`.
    #[serde(default)]
    pub retry_type: RetryType,
    /// The first wait before a retry.
    #[serde(default = "default_retry_wait")]
    pub retry_wait: HumanDuration,
    /// The factor each wait grows by (`exponential_backoff`).
    #[serde(default = "default_retry_exponential_backoff_base")]
    pub retry_exponential_backoff_base: f64,
    /// The longest wait between retries.
    #[serde(default = "default_retry_max_interval")]
    pub retry_max_interval: HumanDuration,
    /// Randomize each wait by up to 12.5 %, so that many senders that failed
    /// together do not retry together.
    #[serde(default = "default_retry_randomize")]
    pub retry_randomize: bool,
    /// Give up on a chunk (send it to the dead-letter output) once delivery has been
    /// failing for this long.
    #[serde(default = "default_retry_timeout")]
    pub retry_timeout: HumanDuration,
    /// Give up on a chunk after this many retries. Unset: only `retry_timeout`
    /// applies.
    #[serde(default)]
    pub retry_max_times: Option<u32>,
    /// Never give up: `retry_timeout` and `retry_max_times` are ignored.
    #[serde(default)]
    pub retry_forever: bool,
}

fn default_total_limit_size() -> ByteSize {
    ByteSize(64 * 1024 * 1024)
}

/// `chunk_limit_size` where neither the config nor the sink sets one.
pub const DEFAULT_CHUNK_LIMIT_SIZE: ByteSize = ByteSize(8 * 1024 * 1024);

fn default_flush_interval() -> HumanDuration {
    HumanDuration::secs(1)
}

fn default_flush_thread_count() -> usize {
    1
}

fn default_compress() -> Compression {
    Compression::Zstd
}

fn default_compress_level() -> i32 {
    1
}

fn default_retry_wait() -> HumanDuration {
    HumanDuration::secs(1)
}

fn default_retry_exponential_backoff_base() -> f64 {
    2.0
}

fn default_retry_max_interval() -> HumanDuration {
    HumanDuration::secs(60)
}

fn default_retry_randomize() -> bool {
    true
}

fn default_retry_timeout() -> HumanDuration {
    HumanDuration::secs(72 * 3600)
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            kind: BufferKind::default(),
            path: None,
            total_limit_size: default_total_limit_size(),
            chunk_limit_size: None,
            chunk_limit_records: None,
            flush_mode: FlushMode::default(),
            flush_interval: default_flush_interval(),
            flush_at_shutdown: None,
            flush_thread_count: default_flush_thread_count(),
            overflow_action: OverflowAction::default(),
            compress: default_compress(),
            compress_level: default_compress_level(),
            fsync: FsyncPolicy::default(),
            retry_type: RetryType::default(),
            retry_wait: default_retry_wait(),
            retry_exponential_backoff_base: default_retry_exponential_backoff_base(),
            retry_max_interval: default_retry_max_interval(),
            retry_randomize: default_retry_randomize(),
            retry_timeout: default_retry_timeout(),
            retry_max_times: None,
            retry_forever: false,
        }
    }
}

impl BufferConfig {
    /// A file buffer in `path` with the other settings at their defaults.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            kind: BufferKind::File,
            path: Some(path.into()),
            ..Self::default()
        }
    }

    /// The size at which a staged chunk is queued: `chunk_limit_size`, or
    /// [`DEFAULT_CHUNK_LIMIT_SIZE`] where neither the config nor the sink set one.
    pub fn chunk_limit(&self) -> ByteSize {
        self.chunk_limit_size.unwrap_or(DEFAULT_CHUNK_LIMIT_SIZE)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.kind == BufferKind::Memory && self.path.is_some() {
            return Err(Invalid::new(
                "path",
                "a memory buffer has no folder; remove `path` or set `type: file`",
            ));
        }
        if let Some(p) = &self.path
            && p.as_os_str().is_empty()
        {
            return Err(Invalid::new(
                "path",
                "give the folder for the buffer's files",
            ));
        }
        if self.total_limit_size.0 == 0 {
            return Err(Invalid::new("total_limit_size", "must be more than 0"));
        }
        let chunk_limit = self.chunk_limit();
        if chunk_limit.0 == 0 || chunk_limit.0 > u64::from(u32::MAX) {
            return Err(Invalid::new(
                "chunk_limit_size",
                "must be more than 0 and less than 4GiB",
            ));
        }
        if chunk_limit > self.total_limit_size {
            return Err(Invalid::new(
                "chunk_limit_size",
                format!(
                    "`{}` is larger than total_limit_size (`{}`); a chunk must fit in the buffer",
                    chunk_limit, self.total_limit_size
                ),
            ));
        }
        if self.chunk_limit_records == Some(0) {
            return Err(Invalid::new(
                "chunk_limit_records",
                "must be at least 1; remove it for no limit",
            ));
        }
        if self.flush_interval.0.is_zero() {
            return Err(Invalid::new(
                "flush_interval",
                "must be more than 0; use `flush_mode: immediate` to queue every chunk at once",
            ));
        }
        if !(1..=64).contains(&self.flush_thread_count) {
            return Err(Invalid::new(
                "flush_thread_count",
                "must be between 1 and 64",
            ));
        }
        if self.compress == Compression::Gzip {
            return Err(Invalid::new(
                "compress",
                "a file buffer stores chunks with `zstd` or `none`, not `gzip`",
            ));
        }
        if !(-7..=22).contains(&self.compress_level) {
            return Err(Invalid::new(
                "compress_level",
                "zstd levels go from -7 (fastest) to 22 (smallest); 1 is a good default",
            ));
        }
        if self.retry_wait.0.is_zero() {
            return Err(Invalid::new("retry_wait", "must be more than 0"));
        }
        if self.retry_max_interval.0 < self.retry_wait.0 {
            return Err(Invalid::new(
                "retry_max_interval",
                format!("must be at least retry_wait ({})", self.retry_wait),
            ));
        }
        if !(self.retry_exponential_backoff_base > 1.0
            && self.retry_exponential_backoff_base <= 100.0)
        {
            return Err(Invalid::new(
                "retry_exponential_backoff_base",
                "must be more than 1 (and at most 100); use `retry_type: periodic` for equal waits",
            ));
        }
        if self.retry_timeout.0.is_zero() {
            return Err(Invalid::new(
                "retry_timeout",
                "must be more than 0; use `retry_max_times: 0` to never retry",
            ));
        }
        if self.retry_forever && self.retry_max_times.is_some() {
            return Err(Invalid::new(
                "retry_max_times",
                "contradicts `retry_forever: true`; keep one of them",
            ));
        }
        Ok(())
    }

    /// The folder of a file buffer: `path`, or `<data_dir>/buffer/<sink name>`.
    pub fn folder(&self, data_dir: &Path, sink: &str) -> PathBuf {
        self.path.clone().unwrap_or_else(|| {
            data_dir
                .join("buffer")
                .join(crate::dead_letter::safe_name(sink))
        })
    }

    /// Whether staged chunks wait for `flush_interval` (else every chunk is queued at
    /// once).
    pub fn stages(&self) -> bool {
        match self.flush_mode {
            FlushMode::Interval => true,
            FlushMode::Immediate => false,
            FlushMode::Default => self.kind == BufferKind::File,
        }
    }

    /// Whether chunks are handed to the sink at shutdown.
    pub fn flushes_at_shutdown(&self) -> bool {
        self.flush_at_shutdown
            .unwrap_or(self.kind == BufferKind::Memory)
    }

    /// The retry policy these settings describe.
    pub fn retry_policy(&self) -> RetryPolicy {
        let wait: Duration = self.retry_wait.into();
        RetryPolicy {
            backoff: Backoff {
                initial: wait,
                max: self.retry_max_interval.into(),
                multiplier: match self.retry_type {
                    RetryType::ExponentialBackoff => self.retry_exponential_backoff_base,
                    RetryType::Periodic => 1.0,
                },
                jitter: if self.retry_randomize { 0.125 } else { 0.0 },
            },
            limit: if self.retry_forever {
                RetryLimit::FOREVER
            } else {
                RetryLimit {
                    timeout: Some(self.retry_timeout.into()),
                    max_times: self.retry_max_times,
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> BufferConfig {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_follow_the_buffer_type() {
        let memory = BufferConfig::default();
        assert!(!memory.stages());
        assert!(memory.flushes_at_shutdown());
        let file = parse("type: file\n");
        assert!(file.stages());
        assert!(!file.flushes_at_shutdown());
        assert_eq!(
            file.folder(Path::new("/var/lib/nagare"), "es/main"),
            Path::new("/var/lib/nagare/buffer/es_main")
        );
        assert_eq!(file.retry_policy(), RetryPolicy::default());
        file.validate().unwrap();
    }

    #[test]
    fn fluentd_retry_keys() {
        let c = parse(
            "type: file\npath: /b\nretry_type: periodic\nretry_wait: 5s\nretry_max_times: 3\nretry_randomize: false\n",
        );
        let p = c.retry_policy();
        assert_eq!(p.backoff.delay(4), Duration::from_secs(5));
        assert_eq!(p.limit.max_times, Some(3));
        let forever = parse("retry_forever: true\n").retry_policy();
        assert_eq!(forever.limit, RetryLimit::FOREVER);
    }

    #[test]
    fn refuses_what_cannot_work() {
        for (yaml, key) in [
            ("path: /x\n", "path"),
            ("chunk_limit_size: 128MiB\n", "chunk_limit_size"),
            ("chunk_limit_records: 0\n", "chunk_limit_records"),
            ("flush_thread_count: 0\n", "flush_thread_count"),
            (
                "retry_wait: 10s\nretry_max_interval: 1s\n",
                "retry_max_interval",
            ),
            (
                "retry_forever: true\nretry_max_times: 3\n",
                "retry_max_times",
            ),
            (
                "retry_exponential_backoff_base: 1\n",
                "retry_exponential_backoff_base",
            ),
            ("compress_level: 40\n", "compress_level"),
            // The one compression type has gzip; a file buffer's chunks do not.
            ("compress: gzip\n", "compress"),
        ] {
            assert_eq!(parse(yaml).validate().unwrap_err().key, key, "{yaml}");
        }
        assert!(serde_norway::from_str::<BufferConfig>("flush_intervall: 1s\n").is_err());
    }
}
