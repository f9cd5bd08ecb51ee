//! The offsets journal: what makes committed-stream appends exactly once through
//! crashes.
//!
//! Before an append is sent, the journal records, durably (written and fsynced), the
//! stream, the offset and which rows the append holds: each row by the chunk it first
//! arrived in and its position there ([`Event::origin`](nagare_core::sink::Event)),
//! which is the same when the chunk comes back from the file buffer after a crash
//! and when the forwarder sends it again as part of another chunk. Appends to a
//! committed stream are atomic and land at exactly their offset, so once the
//! stream's length is known, so is which recorded appends are in the table.
//!
//! After a restart the streams the journal still has open are finalized (no append
//! can land on them any more), which answers their length: appends below it are in
//! the table, and their rows count as delivered when they come back; the others
//! never landed, and their rows are appended again, on a new stream. Within a run,
//! an append whose answer was lost is sent again at its offset, where
//! `ALREADY_EXISTS` means it had landed. The rows of appends not answered yet are
//! known too ([`Journal::claimed_elsewhere`]): a row that reached the sink twice
//! (a chunk that came back from the file buffer and again from the forwarder) is
//! planned by one worker at a time, and lands once. A worker that has waited too
//! long for another's append (one that worker gave up on and does not send again)
//! finalizes that worker's stream, which answers the append as a restart would.
//!
//! The file is a log of lines, one record each (`S`: a stream opened, `A`: an append
//! planned, `F`: a stream finalized with its length, `W`: rows known written), read
//! back in order at startup, a torn last line ignored (it was never fsynced, so its
//! append was never sent). Rows known written are kept for [`RETAIN`] (long enough
//! for any resend of their chunk to come back) and then pruned; the file is
//! compacted to the current state when it has doubled. Rows are written as runs of
//! consecutive positions of one chunk ([`Run`]).

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nagare_core::chunk::ChunkId;

mod runs;

pub use runs::{Run, runs};
use runs::{parse_runs, write_runs};

/// How long rows known to be in the table are remembered.
pub const RETAIN: Duration = Duration::from_secs(3600);
/// The file is compacted when it has grown past twice its size after the last
/// compaction, and at least this.
const COMPACT_FROM: u64 = 1 << 20;

/// The journal cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[error(
    "the Storage Write offsets journal {path}: {source}; it must be writable for exactly-once delivery (check the aggregator's data_dir and its free space)"
)]
pub struct JournalError {
    /// The file.
    pub path: PathBuf,
    /// What failed.
    #[source]
    pub source: std::io::Error,
}

#[derive(Debug, Clone)]
struct Stream {
    table: String,
    name: String,
    /// Whether it is finalized.
    finalized: bool,
    /// Its length once finalized (none: it was gone).
    length: Option<i64>,
}

/// What the journal knows of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamState {
    /// Open, with this name: appends may still land on it.
    Open(String),
    /// Finalized, with this length (none: it was gone, and its appends count as not
    /// landed).
    Finalized(Option<i64>),
    /// Not recorded, or finalized and forgotten since.
    Unknown,
}

/// Rows known written: the first position, how many, and when (Unix seconds).
type Landed = (u32, u32, u64);
/// Rows in an append not answered yet: the first position, how many, and the
/// append's stream and offset.
type Claim = (u32, u32, u32, i64);

#[derive(Debug, Clone)]
struct Append {
    count: u32,
    runs: Vec<Run>,
    time: u64,
    /// Known to have landed (answered within this run).
    landed: bool,
}

/// The journal of one sink.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    size: u64,
    compacted_size: u64,
    started: u64,
    next_sid: u32,
    streams: BTreeMap<u32, Stream>,
    /// Appends recorded on streams still open, by stream and offset.
    appends: HashMap<u32, BTreeMap<i64, Append>>,
    /// Rows known to be in each table: runs by origin chunk, with when they landed.
    written: HashMap<(String, ChunkId), Vec<Landed>>,
    /// Rows of the appends on open streams not answered yet, by table and origin
    /// chunk: the other copies of these rows (a chunk that came twice) must wait.
    claimed: HashMap<(String, ChunkId), Vec<Claim>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Journal {
    /// Opens (or creates) the journal at `path` and reads back what it records.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let error = |source| JournalError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(error)?;
        }
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(error(e)),
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(error)?;
        let mut journal = Journal {
            path: path.to_path_buf(),
            file,
            size: 0,
            compacted_size: 0,
            started: now(),
            next_sid: 0,
            streams: BTreeMap::new(),
            appends: HashMap::new(),
            written: HashMap::new(),
            claimed: HashMap::new(),
        };
        // Only lines ended by their newline are whole: each record is one write,
        // fsynced before its append is sent, so a cut one was never acted on.
        let whole = text
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |at| at + 1);
        if whole < text.len() {
            tracing::warn!(path = %path.display(), bytes = text.len() - whole, "the Storage Write offsets journal ends with a record cut short; ignored (its append was never sent)");
        }
        for line in text[..whole].split(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(line);
            if !line.is_empty() && journal.apply(&line).is_none() {
                tracing::warn!(path = %path.display(), line = %line, "a record of the Storage Write offsets journal cannot be read; ignored");
            }
        }
        journal.compact()?;
        Ok(journal)
    }

    /// Applies one record; `None` when it cannot be read.
    fn apply(&mut self, line: &str) -> Option<()> {
        let mut parts = line.split(' ');
        match parts.next()? {
            "S" => {
                let sid: u32 = parts.next()?.parse().ok()?;
                let table = parts.next()?.to_string();
                let name = parts.next()?.to_string();
                self.next_sid = self.next_sid.max(sid + 1);
                self.streams.insert(
                    sid,
                    Stream {
                        table,
                        name,
                        finalized: false,
                        length: None,
                    },
                );
            }
            "A" => {
                let sid: u32 = parts.next()?.parse().ok()?;
                let offset: i64 = parts.next()?.parse().ok()?;
                let count: u32 = parts.next()?.parse().ok()?;
                let time: u64 = parts.next()?.parse().ok()?;
                let runs = parse_runs(parts.next()?)?;
                self.streams.get(&sid)?;
                self.claim(sid, offset, &runs);
                let append = Append {
                    count,
                    runs,
                    time,
                    landed: false,
                };
                self.appends.entry(sid).or_default().insert(offset, append);
            }
            "F" => {
                let sid: u32 = parts.next()?.parse().ok()?;
                let length: i64 = parts.next()?.parse().ok()?;
                self.apply_finalized(sid, (length >= 0).then_some(length));
            }
            "W" => {
                let table = parts.next()?.to_string();
                let time: u64 = parts.next()?.parse().ok()?;
                for run in parse_runs(parts.next()?)? {
                    self.add_written(&table, run, time);
                }
            }
            _ => return None,
        }
        Some(())
    }

    fn apply_finalized(&mut self, sid: u32, length: Option<i64>) {
        let Some(stream) = self.streams.get_mut(&sid) else {
            return;
        };
        // The first record says what the stream holds; a later one (a worker that
        // found the stream finalized and asked again) must not undo it.
        if stream.finalized {
            return;
        }
        stream.finalized = true;
        stream.length = length;
        let table = stream.table.clone();
        for (offset, append) in self.appends.remove(&sid).unwrap_or_default() {
            self.release(sid, offset, &append.runs);
            // Appends land whole: one that starts below the length is all in.
            if length.is_some_and(|l| offset < l) {
                for run in append.runs {
                    self.add_written(&table, run, append.time);
                }
            }
        }
    }

    /// Records the rows of the append at `offset` on `sid` as not answered yet.
    fn claim(&mut self, sid: u32, offset: i64, runs: &[Run]) {
        let Some(table) = self.streams.get(&sid).map(|s| s.table.clone()) else {
            return;
        };
        for run in runs {
            self.claimed
                .entry((table.clone(), run.origin))
                .or_default()
                .push((run.start, run.len, sid, offset));
        }
    }

    /// The append at `offset` on `sid` is answered (landed, refused, or its stream
    /// finalized): its rows are no longer waited for.
    fn release(&mut self, sid: u32, offset: i64, runs: &[Run]) {
        let Some(table) = self.streams.get(&sid).map(|s| s.table.clone()) else {
            return;
        };
        for run in runs {
            let key = (table.clone(), run.origin);
            if let Some(claims) = self.claimed.get_mut(&key) {
                claims.retain(|&(_, _, s, o)| (s, o) != (sid, offset));
                if claims.is_empty() {
                    self.claimed.remove(&key);
                }
            }
        }
    }

    fn add_written(&mut self, table: &str, run: Run, time: u64) {
        self.written
            .entry((table.to_string(), run.origin))
            .or_default()
            .push((run.start, run.len, time));
    }

    /// Writes `lines` and fsyncs them; compacts the file when it has doubled.
    fn record(&mut self, lines: &str) -> Result<(), JournalError> {
        let error = |source| JournalError {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(lines.as_bytes()).map_err(error)?;
        self.file.sync_data().map_err(error)?;
        self.size += lines.len() as u64;
        if self.size > COMPACT_FROM.max(self.compacted_size * 2) {
            self.compact()?;
        }
        Ok(())
    }

    /// The streams still open (recorded, not finalized): their id and name. They
    /// are finalized at startup and shutdown.
    pub fn open_streams(&self) -> Vec<(u32, String)> {
        self.streams
            .iter()
            .filter(|(_, s)| !s.finalized)
            .map(|(sid, s)| (*sid, s.name.clone()))
            .collect()
    }

    /// What the journal knows of stream `sid`.
    pub fn stream_state(&self, sid: u32) -> StreamState {
        match self.streams.get(&sid) {
            Some(s) if s.finalized => StreamState::Finalized(s.length),
            Some(s) => StreamState::Open(s.name.clone()),
            None => StreamState::Unknown,
        }
    }

    /// Records that stream `sid` is finalized with `length` rows (`None`: it is gone,
    /// and which of its appends landed is unknown; they count as not landed). Only
    /// the first record of a stream counts.
    pub fn finalized(&mut self, sid: u32, length: Option<i64>) -> Result<(), JournalError> {
        self.apply_finalized(sid, length);
        self.record(&format!("F {sid} {}\n", length.unwrap_or(-1)))
    }

    /// Records a new stream `name` on `table`; returns its id.
    pub fn new_stream(&mut self, table: &str, name: &str) -> Result<u32, JournalError> {
        let sid = self.next_sid;
        self.next_sid += 1;
        let line = format!("S {sid} {table} {name}\n");
        self.apply(line.trim_end());
        self.record(&line)?;
        Ok(sid)
    }

    /// Records appends planned on stream `sid`: (offset, row count, runs) each. They
    /// are on disk when this returns.
    pub fn plan(&mut self, sid: u32, appends: &[(i64, u32, Vec<Run>)]) -> Result<(), JournalError> {
        let time = now();
        let mut lines = String::new();
        for (offset, count, runs) in appends {
            lines.push_str(&format!("A {sid} {offset} {count} {time} "));
            write_runs(&mut lines, runs);
            lines.push('\n');
            self.claim(sid, *offset, runs);
            let append = Append {
                count: *count,
                runs: runs.clone(),
                time,
                landed: false,
            };
            self.appends.entry(sid).or_default().insert(*offset, append);
        }
        self.record(&lines)
    }

    /// The append at `offset` on `sid` landed: its rows count as written.
    pub fn landed(&mut self, sid: u32, offset: i64) {
        let Some(table) = self.streams.get(&sid).map(|s| s.table.clone()) else {
            return;
        };
        let Some(append) = self.appends.get_mut(&sid).and_then(|a| a.get_mut(&offset)) else {
            return;
        };
        append.landed = true;
        let (runs, time) = (append.runs.clone(), now());
        self.release(sid, offset, &runs);
        for run in runs {
            self.add_written(&table, run, time);
        }
    }

    /// The append at `offset` on `sid` was refused: nothing of it landed, and the
    /// offset is planned again.
    pub fn refused(&mut self, sid: u32, offset: i64) {
        if let Some(append) = self.appends.get_mut(&sid).and_then(|a| a.remove(&offset)) {
            self.release(sid, offset, &append.runs);
        }
    }

    /// Whether the row at `pos` of chunk `origin` is known to be in `table`.
    pub fn is_written(&self, table: &str, origin: ChunkId, pos: u32) -> bool {
        self.written
            .get(&(table.to_string(), origin))
            .is_some_and(|runs| runs.iter().any(|&(s, l, _)| (s..s + l).contains(&pos)))
    }

    /// Whether the row at `pos` of chunk `origin` is in an append on a stream of
    /// `table` other than `own` that is not answered yet: the row came twice (the
    /// forwarder sent again a chunk the aggregator had already buffered), and its
    /// other copy is being appended by another worker. Planned as well, it could
    /// land twice; it waits for that answer instead.
    pub fn claimed_elsewhere(
        &self,
        table: &str,
        origin: ChunkId,
        pos: u32,
        own: Option<u32>,
    ) -> bool {
        self.claimant(table, origin, pos, own).is_some()
    }

    /// The stream other than `own` whose append not answered yet holds the row at
    /// `pos` of chunk `origin` (see [`Journal::claimed_elsewhere`]).
    pub fn claimant(
        &self,
        table: &str,
        origin: ChunkId,
        pos: u32,
        own: Option<u32>,
    ) -> Option<u32> {
        self.claimed
            .get(&(table.to_string(), origin))?
            .iter()
            .find(|&&(s, l, sid, _)| Some(sid) != own && (s..s + l).contains(&pos))
            .map(|&(_, _, sid, _)| sid)
    }

    /// Rewrites the file with the current state, less the rows known written longer
    /// than [`RETAIN`] ago (once this process has run that long, so that chunks
    /// waiting since before a long stop are still recognised).
    fn compact(&mut self) -> Result<(), JournalError> {
        let now = now();
        let retain = RETAIN.as_secs();
        if self.started + retain < now {
            let keep = |time: u64| time + retain >= now;
            self.written.retain(|_, runs| {
                runs.retain(|&(_, _, t)| keep(t));
                !runs.is_empty()
            });
            for appends in self.appends.values_mut() {
                appends.retain(|_, a| !a.landed || keep(a.time));
            }
        }
        // Finalized streams with nothing left to remember are forgotten.
        let open: Vec<u32> = self
            .open_streams()
            .into_iter()
            .map(|(sid, _)| sid)
            .collect();
        self.streams.retain(|sid, _| open.contains(sid));
        let mut text = String::new();
        for (sid, s) in &self.streams {
            text.push_str(&format!("S {sid} {} {}\n", s.table, s.name));
            for (offset, a) in self.appends.get(sid).into_iter().flatten() {
                text.push_str(&format!("A {sid} {offset} {} {} ", a.count, a.time));
                write_runs(&mut text, &a.runs);
                text.push('\n');
            }
        }
        for ((table, origin), runs) in &self.written {
            for &(start, len, time) in runs {
                text.push_str(&format!("W {table} {time} "));
                write_runs(
                    &mut text,
                    &[Run {
                        origin: *origin,
                        start,
                        len,
                    }],
                );
                text.push('\n');
            }
        }
        let error = |source| JournalError {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("compacting");
        let mut file = File::create(&tmp).map_err(error)?;
        file.write_all(text.as_bytes()).map_err(error)?;
        file.sync_all().map_err(error)?;
        std::fs::rename(&tmp, &self.path).map_err(error)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(error)?;
        }
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(error)?;
        self.size = text.len() as u64;
        self.compacted_size = self.size;
        Ok(())
    }

    /// The file's size in bytes, as written.
    pub fn size(&self) -> u64 {
        self.size
    }
}

#[cfg(test)]
mod tests;
