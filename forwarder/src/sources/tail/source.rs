//! The `tail` source's runtime: the component the binary builds and runs, its
//! loop (wake on the kernel's events, the poll interval, a multiline deadline or
//! shutdown), and its state.
//!
//! The work is split by job: `files.rs` keeps the set of followed files (discovery,
//! rotation, truncation, recovery after a restart), `read.rs` reads a file's turn
//! and frames its lines into messages, and `emit.rs` turns messages into records in
//! the file's lane into the router and sends the chunk with the receipt that moves
//! the file's checkpoint.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nagare_core::buffer::BufferClosed;
use nagare_core::component::{Invalid, SourceComponent, SourceContext, SourceTags};
use nagare_parsers::multiline::MultilineRules;
use thiserror::Error;

use super::checkpoint::{CheckpointError, Checkpoints, Loaded};
use super::config::TailConfig;
use super::discover::{Discovery, example_tag};
use super::file::{FileId, FollowedFile, MultilineState};
use super::metrics::TailMetrics;
use super::read::Turn;
use super::record::RecordBuilder;
use super::watch::{DirWatcher, Signals};
use crate::filters::kubernetes::{KubernetesError, KubernetesMetadata};

/// Bytes read from a file at once.
const READ_BLOCK: usize = 256 * 1024;

/// Least time between two glob scans triggered by the kernel's events.
const MIN_RESCAN_GAP: Duration = Duration::from_millis(50);

/// How often forgotten checkpoints are looked for.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// Why the tail source stopped.
#[derive(Debug, Error)]
pub enum TailSourceError {
    /// The config is not usable (the binary validates it first; this is the same
    /// check).
    #[error("the tail source `{name}` has an invalid `{}`: {}", .invalid.key, .invalid.message)]
    Config {
        /// The source's name.
        name: String,
        /// What is wrong.
        invalid: Invalid,
    },
    /// The checkpoint store cannot be opened.
    #[error("the tail source `{name}` cannot keep checkpoints: {error}")]
    Checkpoint {
        /// The source's name.
        name: String,
        /// What failed.
        error: CheckpointError,
    },
    /// The Kubernetes API cannot be used as configured.
    #[error("the tail source `{name}`: {error}")]
    Kubernetes {
        /// The source's name.
        name: String,
        /// What is wrong.
        error: KubernetesError,
    },
    /// A sink's buffer was closed while the source still had chunks to deliver.
    #[error(
        "the tail source `{name}` could not deliver a chunk from {path}: {error}; the pipeline is shutting down, and the lines not delivered will be read again on restart (their checkpoint did not move)"
    )]
    BufferClosed {
        /// The source's name.
        name: String,
        /// The file the chunk came from.
        path: String,
        /// Which buffer was closed.
        error: BufferClosed,
    },
}

/// A tail source with its config checked and compiled, ready to run.
#[derive(Debug)]
pub struct TailSource {
    config: TailConfig,
    discovery: Discovery,
    detector: Option<MultilineRules>,
    metrics: Arc<TailMetrics>,
}

impl TailSource {
    /// Checks `config` and compiles its patterns; `name` is the source's name, for
    /// errors.
    pub fn new(config: TailConfig, name: &str) -> Result<Self, TailSourceError> {
        let invalid = |invalid| TailSourceError::Config {
            name: name.to_string(),
            invalid,
        };
        config.validate().map_err(invalid)?;
        let discovery = Discovery::new(&config.paths, &config.exclude_paths)
            .map_err(|e| invalid(Invalid::new("exclude_paths", e.to_string())))?;
        let detector = config
            .multiline
            .as_ref()
            .map(MultilineRules::new)
            .transpose()
            .map_err(|e| invalid(Invalid::new(format!("multiline.{}", e.key), e.message)))?;
        Ok(Self {
            config,
            discovery,
            detector,
            metrics: TailMetrics::new(),
        })
    }

    /// The source keeps `metrics` up to date while it runs.
    pub fn with_metrics(mut self, metrics: Arc<TailMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Follows the files matching the config's `paths` until `ctx.shutdown` is
    /// cancelled, then emits what it holds and returns.
    pub async fn run(self, ctx: SourceContext) -> Result<(), TailSourceError> {
        let TailSource {
            config,
            discovery,
            detector,
            metrics,
        } = self;
        metrics.serve(&ctx.metrics);
        let (checkpoints, loaded) = Checkpoints::open(&ctx.data_dir, &ctx.name, metrics.clone())
            .map_err(|error| TailSourceError::Checkpoint {
                name: ctx.name.clone(),
                error,
            })?;
        checkpoints.spawn_writer(config.checkpoint_interval.into());
        ctx.metrics.read(
            &nagare_core::metrics::catalog::tail::CHECKPOINT_LAG_SECONDS,
            checkpoints.lag_reader(),
        );
        let kubernetes = if config.kubernetes_metadata {
            KubernetesMetadata::start(&config.kubernetes, &ctx.name, &ctx.shutdown)
                .await
                .map_err(|error| TailSourceError::Kubernetes {
                    name: ctx.name.clone(),
                    error,
                })?
        } else {
            None
        };
        let watcher = DirWatcher::new(config.watch, &ctx.name);
        let signals = watcher.signals();
        let mut tailer = Tailer {
            records: RecordBuilder::new(&config),
            discovery,
            files: BTreeMap::new(),
            block: vec![0; READ_BLOCK],
            scratch: Vec::new(),
            checkpoints,
            loaded,
            kubernetes,
            detector,
            watcher,
            metrics,
            cap_logged: false,
            config,
            ctx,
        };
        tracing::info!(source = %tailer.ctx.name, checkpoints = %tailer.checkpoints.dir().display(), state = ?loaded, "tail source starting");
        tailer.refresh(true);
        tailer.recover_rotated().await?;
        run_loop(&mut tailer, &signals).await?;
        tailer.flush_all().await?;
        tailer.checkpoints.write_now();
        tracing::debug!(source = %tailer.ctx.name, "tail source stopped");
        Ok(())
    }
}

impl SourceComponent for TailSource {
    const TYPE: &'static str = "tail";
    type Config = TailConfig;
    type Error = TailSourceError;

    fn validate(config: &TailConfig) -> Result<(), Invalid> {
        config.validate()
    }

    /// The tags are known in shape: the `tag` with a path in place of `*`, shown
    /// with an example path for each glob.
    fn describe(config: &TailConfig) -> SourceTags {
        SourceTags {
            summary: format!("tail: {}", config.paths.join(", ")),
            examples: Some(
                config
                    .paths
                    .iter()
                    .map(|glob| example_tag(&config.tag, glob))
                    .collect(),
            ),
        }
    }

    async fn build(config: TailConfig, name: &str) -> Result<Self, TailSourceError> {
        Self::new(config, name)
    }

    async fn run(self, ctx: SourceContext) -> Result<(), TailSourceError> {
        TailSource::run(self, ctx).await
    }
}

/// Follows the files matching `config.paths` until `ctx.shutdown` is cancelled, then
/// emits what it holds and returns.
pub async fn run(config: TailConfig, ctx: SourceContext) -> Result<(), TailSourceError> {
    run_with_metrics(config, ctx, TailMetrics::new()).await
}

/// [`run`], keeping `metrics` up to date.
pub async fn run_with_metrics(
    config: TailConfig,
    ctx: SourceContext,
    metrics: Arc<TailMetrics>,
) -> Result<(), TailSourceError> {
    TailSource::new(config, &ctx.name)?
        .with_metrics(metrics)
        .run(ctx)
        .await
}

async fn run_loop(tailer: &mut Tailer, signals: &Signals) -> Result<(), TailSourceError> {
    let refresh_every: Duration = tailer.config.refresh_interval.into();
    let poll_every: Duration = tailer.config.poll_interval.into();
    let forget_after: Duration = tailer.config.checkpoint_forget_after.into();
    let mut next_refresh = Instant::now() + refresh_every;
    let mut last_refresh = Instant::now();
    let mut next_forget = Instant::now() + FORGET_EVERY.min(forget_after);
    loop {
        let more = tailer.poll().await?;
        if tailer.ctx.shutdown.is_cancelled() {
            return Ok(());
        }
        if !more {
            let mut wake = (Instant::now() + poll_every).min(next_refresh);
            if let Some(d) = tailer.next_multiline_deadline() {
                wake = wake.min(d);
            }
            // A rescan the kernel asked for too soon after the last one is due
            // once the gap has passed, not at the next refresh.
            if signals.rescan.load(Ordering::Relaxed) {
                wake = wake.min(last_refresh + MIN_RESCAN_GAP);
            }
            tokio::select! {
                _ = tailer.ctx.shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = signals.wake.notified() => {}
            }
        }
        let now = Instant::now();
        let rescan = signals.rescan.load(Ordering::Relaxed)
            && now.duration_since(last_refresh) >= MIN_RESCAN_GAP;
        if now >= next_refresh || rescan {
            signals.rescan.store(false, Ordering::Relaxed);
            tailer.refresh(false);
            last_refresh = now;
            next_refresh = now + refresh_every;
        }
        if now >= next_forget {
            let n = tailer.checkpoints.forget(forget_after);
            if n > 0 {
                tracing::debug!(source = %tailer.ctx.name, forgotten = n, "forgot checkpoints of files gone for longer than checkpoint_forget_after");
            }
            next_forget = now + FORGET_EVERY.min(forget_after);
        }
    }
}

/// The source's state.
pub(super) struct Tailer {
    pub(super) config: TailConfig,
    pub(super) ctx: SourceContext,
    pub(super) discovery: Discovery,
    records: RecordBuilder,
    pub(super) files: BTreeMap<FileId, FollowedFile>,
    /// The read buffer, shared by every file.
    block: Vec<u8>,
    /// Where one record is encoded before it is appended to a chunk.
    scratch: Vec<u8>,
    pub(super) checkpoints: Checkpoints,
    pub(super) loaded: Loaded,
    pub(super) kubernetes: Option<KubernetesMetadata>,
    pub(super) detector: Option<MultilineRules>,
    pub(super) watcher: DirWatcher,
    pub(super) metrics: Arc<TailMetrics>,
    /// `max_open_files` was reached and said so.
    pub(super) cap_logged: bool,
}

impl Tailer {
    /// What reading a file needs from the source, beside the followed files.
    pub(super) fn turn(&mut self) -> (Turn<'_>, &mut BTreeMap<FileId, FollowedFile>) {
        let turn = Turn {
            config: &self.config,
            records: &self.records,
            block: &mut self.block,
            scratch: &mut self.scratch,
            ctx: &self.ctx,
            checkpoints: &self.checkpoints,
            metrics: &self.metrics,
            kubernetes: self.kubernetes.as_ref(),
        };
        (turn, &mut self.files)
    }

    /// Reads every file once (up to its turn's budget), and lets go of files gone
    /// for `rotate_wait` and read to their end. Returns whether some file has more
    /// to read right away.
    async fn poll(&mut self) -> Result<bool, TailSourceError> {
        let mut more = false;
        let ids: Vec<FileId> = self.files.keys().copied().collect();
        let rotate_wait: Duration = self.config.rotate_wait.into();
        for id in ids {
            if self.ctx.shutdown.is_cancelled() {
                break;
            }
            let truncated = match self.files.get(&id) {
                Some(file) => file.was_truncated().unwrap_or(false),
                None => continue,
            };
            if truncated {
                self.on_truncated(id).await?;
            }
            let (mut turn, files) = self.turn();
            let Some(file) = files.get_mut(&id) else {
                continue;
            };
            let at_end = turn.read_file(file).await?;
            more |= !at_end;
            if at_end && file.gone.is_some_and(|t| t.elapsed() >= rotate_wait) {
                turn.finish(file).await?;
                tracing::info!(source = %turn.ctx.name, path = %file.path.display(), "stopped following file");
                turn.checkpoints.release(file.slot);
                turn.metrics.remove_file(&file.path, file.id.ino);
                self.files.remove(&id);
                self.metrics
                    .open_files
                    .store(self.files.len() as u64, Ordering::Relaxed);
            }
        }
        Ok(more)
    }

    /// The earliest time a held multiline event is due.
    fn next_multiline_deadline(&self) -> Option<Instant> {
        self.files
            .values()
            .filter_map(|f| f.multiline.as_ref().and_then(MultilineState::deadline))
            .min()
    }

    /// Emits the chunks still being filled. Messages still held (a CRI piece without
    /// its end, a multiline event) stay unemitted: their checkpoint lies before them,
    /// so a restart reads them again whole.
    async fn flush_all(&mut self) -> Result<(), TailSourceError> {
        let (turn, files) = self.turn();
        for file in files.values_mut() {
            turn.emit(file).await?;
        }
        Ok(())
    }
}
