//! The `tail` source's configuration.

use nagare_core::component::Invalid;
use nagare_core::config::{ByteSize, HumanDuration};
use serde::Deserialize;

use nagare_parsers::multiline::MultilineConfig;

use super::record::RESERVED_KEYS;
use crate::filters::kubernetes::KubernetesConfig;

/// How the lines of a followed file are framed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TailFormat {
    /// Decided per file from its first line: CRI or docker json-file; a file whose
    /// first line is neither is read as `raw`.
    #[default]
    Auto,
    /// containerd / CRI-O: `<time> <stream> <P|F> <message>`, `P` pieces merged.
    Cri,
    /// Docker's json-file driver, 16 KiB pieces merged.
    Docker,
    /// Each line is the message; the event time is the time it was read.
    Raw,
}

/// Follows files matching globs (container logs by default) and emits one event per
/// log line, as Fluentd's `in_tail` and Fluent Bit's `tail` do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailConfig {
    /// Globs of the files to follow, e.g. `/var/log/containers/*.log`.
    pub paths: Vec<String>,
    /// Globs of files not to follow, even when `paths` matches them.
    #[serde(default)]
    pub exclude_paths: Vec<String>,
    /// On the very first start (no checkpoints yet), read the files present from
    /// their beginning; when false they are read from their end. Files that appear
    /// later, and files that appeared while the source was not running, are always
    /// read from their beginning; files with a checkpoint resume from it.
    #[serde(default = "default_read_from_head")]
    pub read_from_head: bool,
    /// The events' tag. A `*` is replaced by the file's path with `/` turned into `.`
    /// and the leading `/` dropped, as in Fluentd's `in_tail`.
    #[serde(default = "default_tag")]
    pub tag: String,
    /// How lines are framed: `auto`, `cri`, `docker` or `raw`.
    #[serde(default)]
    pub format: TailFormat,
    /// How often the globs are expanded again to find new files.
    #[serde(default = "default_refresh_interval")]
    pub refresh_interval: HumanDuration,
    /// How often followed files are checked for new data (with `watch`, a write
    /// wakes the source at once as well).
    #[serde(default = "default_poll_interval")]
    pub poll_interval: HumanDuration,
    /// Be told by the kernel (inotify) when files are created, renamed or written,
    /// instead of waiting for the intervals. Polling goes on underneath, and is all
    /// that is used where the kernel cannot watch.
    #[serde(default = "default_watch")]
    pub watch: bool,
    /// Do not start following files last modified longer ago than this (files
    /// already followed are kept). Off by default.
    #[serde(default)]
    pub ignore_older: Option<HumanDuration>,
    /// Most files open at once; files found beyond it wait (with a log line) until
    /// others are let go.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
    /// How long a file that was rotated away or deleted is still watched for new
    /// data once read to its end (a writer may still hold it open briefly).
    #[serde(default = "default_rotate_wait")]
    pub rotate_wait: HumanDuration,
    /// How often delivered offsets are written to the checkpoint file (under
    /// `<data_dir>/tail/<source name>/`). After a crash, lines delivered since the
    /// last write are read again.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: HumanDuration,
    /// How long the checkpoint of a file no longer followed is kept, so that a
    /// restart still recognises it (a rotated file left half read).
    #[serde(default = "default_checkpoint_forget_after")]
    pub checkpoint_forget_after: HumanDuration,
    /// Join the lines of stack traces and other multiline events (after CRI and
    /// docker pieces are merged): `languages` and/or a `custom` rule.
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
    /// Pod metadata from the Kubernetes API server (with `kubernetes_metadata`).
    #[serde(default)]
    pub kubernetes: KubernetesConfig,
    /// When a message is a JSON object, merge its fields into the record.
    #[serde(default = "default_merge_json")]
    pub merge_json: bool,
    /// Put the merged JSON fields under this key instead of at the top level.
    #[serde(default)]
    pub merge_json_key: Option<String>,
    /// After a successful JSON merge, also keep the original text under `log_key`.
    #[serde(default)]
    pub keep_log: bool,
    /// The key that holds a message that was not merged as JSON.
    #[serde(default = "default_log_key")]
    pub log_key: String,
    /// Add `kubernetes: {pod_name, namespace_name, container_name, container_id}`
    /// from the name of a `/var/log/containers` file, and what the API server says
    /// about the pod (see `kubernetes`).
    #[serde(default = "default_kubernetes_metadata")]
    pub kubernetes_metadata: bool,
    /// Longest message kept whole; a longer one is emitted in pieces flagged
    /// `_truncated`. Each line as written in the file (its CRI header or docker
    /// wrapper included) is cut at this size too.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: ByteSize,
    /// A chunk is emitted when it reaches this size, and whenever a file has been
    /// read to its current end.
    #[serde(default = "default_chunk_limit_size")]
    pub chunk_limit_size: ByteSize,
    /// Add the path of the record's file under this key (Fluentd `path_key`, Fluent
    /// Bit `Path_Key`, Vector `file_key`): the path the file was found under by the
    /// globs. Off by default.
    #[serde(default)]
    pub path_key: Option<String>,
    /// Add the byte offset in its file of the record's first byte under this key
    /// (Fluent Bit `Offset_Key`, Vector `offset_key`): for a message merged from CRI
    /// or docker pieces, and for a multiline event, the offset of its first line.
    /// Off by default.
    #[serde(default)]
    pub offset_key: Option<String>,
    /// Add an id unique to the line under this key, the same each time the line is
    /// read again (after a crash, under a rotated name, after a restart):
    /// `<16 hex digits>-<offset>`, the digits a hash of the node's name and the file's
    /// identity, the offset the record's `offset_key` value. Made to be a
    /// destination's document id (the Elasticsearch sink's `id_key`), so a line read
    /// twice is stored once. Off by default.
    #[serde(default)]
    pub event_id_key: Option<String>,
}

fn default_read_from_head() -> bool {
    false
}

fn default_tag() -> String {
    "kube.*".to_string()
}

fn default_refresh_interval() -> HumanDuration {
    HumanDuration::secs(1)
}

fn default_poll_interval() -> HumanDuration {
    HumanDuration::millis(250)
}

fn default_watch() -> bool {
    true
}

fn default_max_open_files() -> usize {
    1024
}

fn default_rotate_wait() -> HumanDuration {
    HumanDuration::secs(5)
}

fn default_checkpoint_interval() -> HumanDuration {
    HumanDuration::secs(1)
}

fn default_checkpoint_forget_after() -> HumanDuration {
    HumanDuration::secs(3600)
}

fn default_merge_json() -> bool {
    true
}

fn default_log_key() -> String {
    "log".to_string()
}

fn default_kubernetes_metadata() -> bool {
    true
}

fn default_max_line_bytes() -> ByteSize {
    ByteSize(16 * 1024 * 1024)
}

fn default_chunk_limit_size() -> ByteSize {
    ByteSize(1024 * 1024)
}

impl TailConfig {
    /// A config following `paths` with every other key at its default.
    pub fn new(paths: Vec<String>) -> Self {
        Self {
            paths,
            exclude_paths: Vec::new(),
            read_from_head: default_read_from_head(),
            tag: default_tag(),
            format: TailFormat::default(),
            refresh_interval: default_refresh_interval(),
            poll_interval: default_poll_interval(),
            watch: default_watch(),
            ignore_older: None,
            max_open_files: default_max_open_files(),
            rotate_wait: default_rotate_wait(),
            checkpoint_interval: default_checkpoint_interval(),
            checkpoint_forget_after: default_checkpoint_forget_after(),
            multiline: None,
            kubernetes: KubernetesConfig::default(),
            merge_json: default_merge_json(),
            merge_json_key: None,
            keep_log: false,
            log_key: default_log_key(),
            kubernetes_metadata: default_kubernetes_metadata(),
            max_line_bytes: default_max_line_bytes(),
            chunk_limit_size: default_chunk_limit_size(),
            path_key: None,
            offset_key: None,
            event_id_key: None,
        }
    }

    /// The keys of the fields the source adds on request (`path_key`, `offset_key`,
    /// `event_id_key`), with the config key that names each.
    pub fn source_keys(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("path_key", &self.path_key),
            ("offset_key", &self.offset_key),
            ("event_id_key", &self.event_id_key),
        ]
        .into_iter()
        .filter_map(|(name, key)| key.as_deref().map(|k| (name, k)))
    }

    /// Checks what serde cannot: globs, the tag, non-zero sizes and intervals, and
    /// keys that would collide with the fields the source adds.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.paths.is_empty() {
            return Err(Invalid::new(
                "paths",
                "no paths to follow; list at least one glob, e.g. `/var/log/containers/*.log`",
            ));
        }
        for (key, globs) in [
            ("paths", &self.paths),
            ("exclude_paths", &self.exclude_paths),
        ] {
            for (i, g) in globs.iter().enumerate() {
                if let Err(e) = glob::Pattern::new(g) {
                    return Err(Invalid::new(
                        format!("{key}.{i}"),
                        format!("`{g}` is not a valid glob: {e}"),
                    ));
                }
            }
        }
        if self.tag.is_empty() {
            return Err(Invalid::new(
                "tag",
                "the tag is empty; use e.g. `kube.*` (the `*` becomes the file's path)",
            ));
        }
        if self.tag.matches('*').count() > 1 {
            return Err(Invalid::new(
                "tag",
                format!(
                    "`{}` has more than one `*`; only one is replaced by the file's path",
                    self.tag
                ),
            ));
        }
        if self.log_key.is_empty() {
            return Err(Invalid::new(
                "log_key",
                "the log key is empty; the default is `log`",
            ));
        }
        if RESERVED_KEYS.contains(&self.log_key.as_str()) {
            return Err(Invalid::new(
                "log_key",
                format!(
                    "`{}` is a field the tail source sets itself; choose another key",
                    self.log_key
                ),
            ));
        }
        if let Some(key) = &self.merge_json_key
            && (key.is_empty() || RESERVED_KEYS.contains(&key.as_str()) || *key == self.log_key)
        {
            return Err(Invalid::new(
                "merge_json_key",
                format!(
                    "`{key}` cannot hold the merged JSON: it is empty, `log_key`, or a field the \
                     tail source sets itself; choose another key or remove it to merge at the top"
                ),
            ));
        }
        let mut taken: Vec<(&str, &str)> = vec![("log_key", self.log_key.as_str())];
        if let Some(key) = &self.merge_json_key {
            taken.push(("merge_json_key", key));
        }
        for (name, key) in self.source_keys() {
            if key.is_empty() {
                return Err(Invalid::new(
                    name,
                    "the key is empty; name the field, or remove the setting",
                ));
            }
            if RESERVED_KEYS.contains(&key) {
                return Err(Invalid::new(
                    name,
                    format!("`{key}` is a field the tail source sets itself; choose another key"),
                ));
            }
            if let Some((other, _)) = taken.iter().find(|(_, k)| *k == key) {
                return Err(Invalid::new(
                    name,
                    format!("`{key}` is already `{other}`; give each field its own key"),
                ));
            }
            taken.push((name, key));
        }
        for (key, size) in [
            ("max_line_bytes", self.max_line_bytes),
            ("chunk_limit_size", self.chunk_limit_size),
        ] {
            if size.0 == 0 {
                return Err(Invalid::new(key, "must be more than 0 bytes"));
            }
        }
        for (key, d) in [
            ("refresh_interval", self.refresh_interval),
            ("poll_interval", self.poll_interval),
            ("checkpoint_interval", self.checkpoint_interval),
        ] {
            if d.0.is_zero() {
                return Err(Invalid::new(key, "must be longer than 0, e.g. `250ms`"));
            }
        }
        if self.max_open_files == 0 {
            return Err(Invalid::new("max_open_files", "must be at least 1"));
        }
        if let Some(ml) = &self.multiline {
            ml.validate()
                .map_err(|e| Invalid::new(format!("multiline.{}", e.key), e.message))?;
        }
        self.kubernetes
            .validate()
            .map_err(|e| Invalid::new(format!("kubernetes.{}", e.key), e.message))?;
        Ok(())
    }
}
