//! The `file` sink's loop: take what the buffer holds (up to a bound), encode it,
//! append it to its files, fsync them, then ack. A failed write is retried under the
//! buffer's retry policy while the leases stay held, so the buffer pushes back on the
//! sources; once the retries run out, the chunks not written go to the secondary
//! output with the last error, and the sink goes on.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use nagare_core::buffer::Lease;
use nagare_core::component::{Invalid, SinkContext};
use nagare_core::dead_letter;
use nagare_core::retry::{Attempts, Next};

use super::config::{FileConfig, Format};
use super::encoder::encode_chunk;

/// Most chunks written in one batch.
const BATCH_CHUNKS: usize = 256;
/// Bytes of encoded chunks past which no further chunk joins a batch. A batch is
/// acked only once all of it is written and fsynced, so a crash in between writes it
/// again after the restart: this bounds those copies (to this plus one chunk) while
/// still fsyncing about once per MiB.
const BATCH_BYTES: usize = 1024 * 1024;
/// Files kept open at once; past it, all are closed and reopened on demand (a tag
/// per file can mean many files).
const OPEN_FILES: usize = 128;

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum FileSinkError {
    /// A setting is not usable.
    #[error("file sink `{sink}`: `{}`: {}", .invalid.key, .invalid.message)]
    Config {
        /// The sink's name.
        sink: String,
        /// The setting and the problem.
        invalid: Invalid,
    },
}

/// The file an event of `tag` goes to: `{tag}` in `template` replaced by the tag with
/// every character but letters, digits, `.`, `-` and `_` turned into `_` (and a tag of
/// dots alone into `_`), so that no tag names a path outside the folder.
pub fn path_for_tag(template: &str, tag: &str) -> PathBuf {
    if !template.contains("{tag}") {
        return PathBuf::from(template);
    }
    let mut safe: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() || safe.chars().all(|c| c == '.') {
        safe = "_".to_string();
    }
    PathBuf::from(template.replace("{tag}", &safe))
}

/// Runs the sink until its buffer is closed and drained, or `ctx.abort` is cancelled.
pub async fn run(config: FileConfig, ctx: SinkContext) -> Result<(), FileSinkError> {
    config.validate().map_err(|invalid| FileSinkError::Config {
        sink: ctx.name.clone(),
        invalid,
    })?;
    let files = Arc::new(Mutex::new(Files::default()));
    let retrier = ctx.retrier();
    let secondary = ctx.secondary();
    loop {
        let first = tokio::select! {
            biased;
            _ = ctx.abort.cancelled() => return Ok(()),
            lease = ctx.buffer.pop() => lease,
        };
        let Some(first) = first else {
            return Ok(());
        };
        let mut leases = vec![first];
        let mut taken = leases[0].chunk().byte_size();
        while leases.len() < BATCH_CHUNKS && taken < BATCH_BYTES {
            let Some(lease) = ctx.buffer.pop_ready().await else {
                break;
            };
            taken += lease.chunk().byte_size();
            leases.push(lease);
        }
        let Batch { mut outputs, dead } = encode(&config.path, config.format, &leases);
        // Chunks given up on (their events written to the secondary output).
        let mut broken = Vec::new();
        let mut attempts = Attempts::new();
        while !outputs.is_empty() {
            let files = files.clone();
            let write = tokio::task::spawn_blocking(move || {
                let mut files = files.lock().unwrap_or_else(|p| p.into_inner());
                let result = files.append(&mut outputs);
                (outputs, result)
            });
            let joined = tokio::select! {
                biased;
                _ = ctx.abort.cancelled() => return Ok(()),
                joined = write => joined,
            };
            let (rest, result) = match joined {
                Ok(done) => done,
                Err(e) => (Vec::new(), Err((PathBuf::new(), io::Error::other(e)))),
            };
            outputs = rest;
            let Err((path, e)) = result else {
                retrier.succeeded();
                break;
            };
            match retrier.failed(&mut attempts) {
                Next::RetryIn(delay) => {
                    tracing::error!(
                        sink = %ctx.name,
                        path = %path.display(),
                        error = %e,
                        attempt = attempts.failures(),
                        retry_in = ?delay,
                        "cannot append to the file; will try again (check the folder's permissions and free space)"
                    );
                    tokio::select! {
                        biased;
                        _ = ctx.abort.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Next::GiveUp {
                    failures,
                    failing_for,
                } => {
                    // The chunks whose file was not written go to the secondary.
                    let unwritten: Vec<PathBuf> = outputs.drain(..).map(|(p, _)| p).collect();
                    let reason = format!(
                        "gave up after {failures} failed attempts over {}s; last error: cannot append to {}: {e}",
                        failing_for.as_secs(),
                        path.display()
                    );
                    let mut moved = 0;
                    for (i, lease) in leases.iter().enumerate() {
                        let chunk = lease.chunk();
                        if !unwritten.contains(&path_for_tag(&config.path, chunk.tag())) {
                            continue;
                        }
                        let mut lines = Vec::new();
                        dead_letter::encode_chunk(chunk, &reason, &mut lines);
                        let backoff = &retrier.policy().backoff;
                        if !secondary
                            .write_until_done(lines, backoff, &ctx.abort, &ctx.name)
                            .await
                        {
                            return Ok(());
                        }
                        moved += chunk.count();
                        broken.push(i);
                    }
                    tracing::error!(
                        sink = %ctx.name,
                        events = moved,
                        secondary = %secondary.path().display(),
                        %reason,
                        "retries ran out (retry_timeout / retry_max_times); wrote the events to the secondary output"
                    );
                }
            }
        }
        // The undecodable entries of the chunks written (a chunk given up on went to
        // the secondary output whole, those entries with it).
        let mut lines = Vec::new();
        let mut undecodable = Vec::new();
        for (i, (lease, dead)) in leases.iter().zip(&dead).enumerate() {
            if !dead.is_empty() && !broken.contains(&i) {
                lines.extend_from_slice(dead);
                undecodable.push(lease.chunk().id().to_hex());
            }
        }
        // Not all of those chunks reached the file: they count as failed, as a chunk
        // with an event refused for good does in every sink.
        broken.extend((0..dead.len()).filter(|&i| !dead[i].is_empty()));
        if !lines.is_empty() {
            let backoff = &retrier.policy().backoff;
            if !secondary
                .write_until_done(lines, backoff, &ctx.abort, &ctx.name)
                .await
            {
                return Ok(());
            }
            tracing::error!(
                sink = %ctx.name,
                chunks = ?undecodable,
                secondary = %secondary.path().display(),
                "chunks held entries that cannot be decoded; wrote those to the secondary output with the reason and wrote the rest"
            );
        }
        for (i, lease) in leases.into_iter().enumerate() {
            if broken.contains(&i) {
                lease.fail();
            } else {
                lease.ack();
            }
        }
    }
}

/// The leases' events encoded, grouped by file.
struct Batch {
    /// Each file's lines.
    outputs: Vec<(PathBuf, Vec<u8>)>,
    /// For each lease, the secondary-output lines of its undecodable entries.
    dead: Vec<Vec<u8>>,
}

/// Encodes the leases' events, grouped by file; an entry that cannot be decoded is
/// set apart for the secondary output, and the rest of its chunk is written.
fn encode(template: &str, format: Format, leases: &[Lease]) -> Batch {
    let mut outputs: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut dead = Vec::with_capacity(leases.len());
    for lease in leases {
        let chunk = lease.chunk();
        let path = path_for_tag(template, chunk.tag());
        let slot = match outputs.iter().position(|(p, _)| *p == path) {
            Some(slot) => slot,
            None => {
                outputs.push((path, Vec::with_capacity(chunk.byte_size() * 2)));
                outputs.len() - 1
            }
        };
        let mut lines = Vec::new();
        encode_chunk(format, chunk, &mut outputs[slot].1, &mut lines);
        dead.push(lines);
    }
    Batch { outputs, dead }
}

/// The open files.
#[derive(Default)]
struct Files {
    open: HashMap<PathBuf, File>,
}

impl Files {
    /// Appends each output to its file and fsyncs it, removing each from `outputs` once
    /// it is durable. On an error, a partly written output is cut back off its file
    /// (so a retry does not leave half a line), and the error is returned with the
    /// path; the outputs not yet written stay in `outputs`.
    fn append(
        &mut self,
        outputs: &mut Vec<(PathBuf, Vec<u8>)>,
    ) -> Result<(), (PathBuf, io::Error)> {
        while let Some((path, bytes)) = outputs.last() {
            if let Err(e) = self.append_one(path, bytes) {
                let path = path.clone();
                self.open.remove(&path);
                return Err((path, e));
            }
            outputs.pop();
        }
        Ok(())
    }

    fn append_one(&mut self, path: &PathBuf, bytes: &[u8]) -> io::Result<()> {
        if !self.open.contains_key(path) {
            if self.open.len() >= OPEN_FILES {
                self.open.clear();
            }
            if let Some(dir) = path.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)?;
            }
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            self.open.insert(path.clone(), file);
        }
        let Some(file) = self.open.get_mut(path) else {
            return Err(io::Error::other("file not open"));
        };
        let before = file.metadata()?.len();
        let result = file.write_all(bytes).and_then(|()| file.sync_data());
        if result.is_err() {
            let _ = file.set_len(before);
        }
        result
    }
}
