//! Buffer configuration, shared by every sink.

use serde::Deserialize;

use crate::config::ByteSize;

/// Where a buffer keeps its chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BufferKind {
    /// In memory: fastest; chunks not yet confirmed are lost if the process dies.
    #[default]
    Memory,
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

/// The `buffer:` section of a sink.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Where chunks are kept: `memory`.
    #[serde(rename = "type", default)]
    pub kind: BufferKind,
    /// Most bytes of chunks held at once, queued and in flight together.
    #[serde(default = "default_total_limit_size")]
    pub total_limit_size: ByteSize,
    /// What to do with a new chunk when the buffer is full.
    #[serde(default)]
    pub overflow_action: OverflowAction,
}

fn default_total_limit_size() -> ByteSize {
    ByteSize(64 * 1024 * 1024)
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            kind: BufferKind::default(),
            total_limit_size: default_total_limit_size(),
            overflow_action: OverflowAction::default(),
        }
    }
}
