//! Origin files: the file buffer's chunks that are queued whole, several to a file,
//! so that one fdatasync commits every chunk written since the last one.
//!
//! `<n>.segment` holds chunks one after another, each byte for byte a sealed chunk
//! file of [`format`](super::format) (`n` counts the segments of the folder).
//! Appends go to one open segment at a time; once it holds the segment limit it is
//! closed and the next append opens a new one (its name made durable by an fsync of
//! the folder before anything in it is acknowledged).
//!
//! **Group commit.** A writer appends its chunk under the ledger's lock, then waits
//! for an fdatasync that started after its write. The first writer to find none
//! running runs one for everybody written so far; the others wait for it. A single
//! producer pays one fdatasync per chunk, as with a file per chunk, minus the file's
//! creation and the folder's fsync; concurrent producers share them.
//!
//! **Failures.** A failed write closes the segment (it is deleted once its chunks
//! are delivered, which is how a full disk gets its room back). A failed fdatasync
//! fails every append to the segment not yet known durable, those written while it
//! ran included (the kernel may have dropped their pages, and a later fdatasync of
//! the file would not say so), and closes the segment. Either way the caller writes
//! its chunk again, to a new segment.
//!
//! **Acks.** A delivered chunk's offset is appended to `<n>.acks` (12 bytes: offset
//! u64 and its CRC-32, little-endian), written without an fsync: like deleting a
//! chunk file it survives a crash of the process, and after a power loss a lost ack
//! means the chunk is sent again, never that it is lost. A closed segment whose
//! chunks are all acked is deleted with its acks file.
//!
//! **Recovery** reads each segment from the start: an acked chunk is skipped, an
//! intact one is queued again, and a damaged or cut stretch (up to the next intact
//! chunk header) is copied to `quarantine/` with the reason, and its offset acked so
//! that the next start does not report it again.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::file::failed;
use super::format;

/// File name ending of a segment.
pub const SEGMENT: &str = "segment";
/// File name ending of a segment's acks.
pub const ACKS: &str = "acks";
/// Bytes of one ack record.
const ACK_RECORD: usize = 12;

/// Where a chunk is in the segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Spot {
    /// The segment's number (its file name).
    pub segment: u64,
    /// The chunk's first byte in it.
    pub at: u64,
}

/// A chunk found in a segment at start.
#[derive(Debug)]
pub struct Found {
    /// Where it is.
    pub spot: Spot,
    /// Its bytes (one sealed chunk file).
    pub len: u64,
    /// What its header and segments say.
    pub parsed: format::Parsed,
}

/// A stretch of a segment that is not an intact chunk, found at start.
#[derive(Debug)]
pub struct Damage {
    /// Where it starts.
    pub spot: Spot,
    /// Its bytes, as found.
    pub bytes: Vec<u8>,
    /// What is wrong with it.
    pub reason: String,
}

/// What recovering one segment found.
#[derive(Debug, Default)]
pub struct SegmentRecovery {
    /// The intact chunks not acked, in the order they are in the file.
    pub chunks: Vec<Found>,
    /// The damaged stretches not reported before.
    pub damage: Vec<Damage>,
    /// The highest chunk sequence number seen, acked chunks included.
    pub max_seq: Option<u64>,
}

/// The segments of one buffer folder.
#[derive(Debug)]
pub struct Ledger {
    dir: PathBuf,
    fsync: bool,
    /// A segment is closed once it holds this many bytes.
    limit: u64,
    state: Mutex<LedgerState>,
    /// Wakes writers waiting for an fdatasync: one ended.
    synced: Condvar,
}

#[derive(Debug, Default)]
struct LedgerState {
    /// The segment appended to.
    open: Option<OpenSegment>,
    /// Chunks not acked yet, per segment.
    live: HashMap<u64, u32>,
    /// The number of the next segment opened.
    next_number: u64,
    /// Appends so far; append number `written` is the last one.
    written: u64,
    /// Every append up to this one is durable.
    synced: u64,
    /// An fdatasync runs.
    syncing: bool,
    /// The last append whose fdatasync failed, and why.
    failed: u64,
    failure: Option<(io::ErrorKind, String)>,
}

#[derive(Debug)]
struct OpenSegment {
    number: u64,
    file: Arc<File>,
    len: u64,
}

impl Ledger {
    /// The segments of `dir`; a segment is closed once it holds `limit` bytes.
    /// With `fsync`, an append returns once it is durable.
    pub fn new(dir: PathBuf, fsync: bool, limit: u64) -> Self {
        Self {
            dir,
            fsync,
            limit: limit.max(1),
            state: Mutex::new(LedgerState::default()),
            synced: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LedgerState> {
        // Every update of the state is whole under the lock; a panic elsewhere
        // cannot leave it half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file of segment `number`.
    pub fn path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number:020}.{SEGMENT}"))
    }

    fn acks_path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number:020}.{ACKS}"))
    }

    /// Appends the sealed chunk `parts` and, with fsync, waits until it is durable.
    /// Returns where it is.
    ///
    /// On an error nothing of it counts: a write cut short is cut off again, and a
    /// chunk whose fdatasync failed is acked at once, so neither is sent nor
    /// recovered; the segment takes no more appends, and the caller writes it again.
    pub fn append(&self, parts: &mut [IoSlice<'_>]) -> io::Result<Spot> {
        let (spot, append) = {
            let mut st = self.lock();
            if st.open.as_ref().is_none_or(|o| o.len >= self.limit) {
                self.open_next(&mut st)?;
            }
            let Some(open) = st.open.as_mut() else {
                return Err(io::Error::other("no open segment"));
            };
            let spot = Spot {
                segment: open.number,
                at: open.len,
            };
            let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
            if let Err(e) = write_all_at(&open.file, parts, open.len) {
                let e = failed("write", &self.path(open.number), e);
                // Leave no part of it for recovery to find, and append to it no more:
                // it is deleted once its chunks are delivered (at once if they are),
                // which gives a full disk its room back; the next attempt opens a new
                // segment.
                let _ = open.file.set_len(open.len);
                self.close_open(&mut st);
                return Err(e);
            }
            open.len += len;
            *st.live.entry(spot.segment).or_insert(0) += 1;
            st.written += 1;
            (spot, st.written)
        };
        if !self.fsync {
            return Ok(spot);
        }
        if let Err(e) = self.sync(append) {
            // Its bytes may or may not be on disk: ack it, so that it counts as
            // neither, and write it again.
            let _ = self.release(spot);
            return Err(e);
        }
        Ok(spot)
    }

    /// Closes the open segment and opens the next, durable name and all.
    fn open_next(&self, st: &mut LedgerState) -> io::Result<()> {
        self.close_open(st);
        let number = st.next_number;
        // Taken even if the file cannot be made: a failed attempt leaves no doubt
        // about which file holds what.
        st.next_number += 1;
        let path = self.path(number);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| failed("create", &path, e))?;
        if self.fsync {
            let made_durable = File::open(&self.dir).and_then(|d| d.sync_all());
            if let Err(e) = made_durable {
                drop(file);
                let _ = fs::remove_file(&path);
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot fsync the folder {}: {e}", self.dir.display()),
                ));
            }
        }
        st.open = Some(OpenSegment {
            number,
            file: Arc::new(file),
            len: 0,
        });
        st.live.entry(number).or_insert(0);
        Ok(())
    }

    /// Closes the open segment, its appends made durable first for the writers
    /// waiting for that; deleted at once if all of it is acked.
    fn close_open(&self, st: &mut LedgerState) {
        let Some(open) = st.open.take() else {
            return;
        };
        if self.fsync {
            let written = st.written;
            match open.file.sync_data() {
                Ok(()) => st.synced = st.synced.max(written),
                Err(e) => self.record_failure(st, written, open.number, &e),
            }
            self.synced.notify_all();
        }
        if st.live.get(&open.number).is_none_or(|n| *n == 0) {
            st.live.remove(&open.number);
            self.delete(open.number);
        }
    }

    /// An fdatasync of segment `number` failed: every append up to number `up_to` not
    /// known durable fails with it. Logged here, once per failed fdatasync (the
    /// segment takes no more appends), since the pushes it fails each report only
    /// their own error, at most every 10 s.
    fn record_failure(&self, st: &mut LedgerState, up_to: u64, number: u64, e: &io::Error) {
        let path = self.path(number);
        tracing::error!(
            segment = %path.display(),
            chunks = up_to.saturating_sub(st.synced.max(st.failed)),
            error = %e,
            "cannot fdatasync a buffer segment: the chunks written to it since its last fdatasync that worked are not committed (not acknowledged to their sources); they are written again to a new segment, and this one takes no more"
        );
        st.failed = st.failed.max(up_to);
        st.failure = Some((
            e.kind(),
            format!(
                "cannot fdatasync {}: {e}; the chunks written to it since its last fdatasync that worked are not committed, and are written again to a new segment",
                path.display()
            ),
        ));
    }

    /// Waits until append number `append` is durable, running the fdatasync itself
    /// when none that covers it is running.
    fn sync(&self, append: u64) -> io::Result<()> {
        let mut st = self.lock();
        loop {
            // A failure first: a later fdatasync of the same file may succeed without
            // the pages the failed one lost.
            if st.failed >= append {
                let (kind, why) = st.failure.clone().unwrap_or((
                    io::ErrorKind::Other,
                    "cannot fdatasync a buffer segment".to_string(),
                ));
                return Err(io::Error::new(kind, why));
            }
            if st.synced >= append {
                return Ok(());
            }
            if st.syncing {
                // One runs; it may have started before this append, so wait for it
                // to end and look again.
                st = self.synced.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            let Some((number, file)) = st.open.as_ref().map(|o| (o.number, o.file.clone())) else {
                // Closing a segment syncs it first and records how that went, so
                // one of the two answers above is there.
                return Err(io::Error::other(
                    "a buffer segment was closed before its fdatasync",
                ));
            };
            let up_to = st.written;
            st.syncing = true;
            drop(st);
            let result = file.sync_data();
            st = self.lock();
            st.syncing = false;
            match result {
                Ok(()) => st.synced = st.synced.max(up_to),
                Err(e) => {
                    // Not only the appends this fdatasync covered fail, but every one
                    // written so far: those written while it ran may have been in the
                    // writeback that failed, whose pages the kernel may drop, and a
                    // later fdatasync of the file (the one closing it) then succeeds
                    // without them. Appends to a newer segment fail with them, and are
                    // written again like the others.
                    let written = st.written;
                    self.record_failure(&mut st, written, number, &e);
                    // The file may have lost pages nobody can tell apart: append to
                    // it no more.
                    if st.open.as_ref().is_some_and(|o| o.number == number) {
                        self.close_open(&mut st);
                    }
                }
            }
            self.synced.notify_all();
        }
    }

    /// Reads `len` bytes of the chunk at `spot`.
    pub fn read(&self, spot: Spot, len: u64) -> io::Result<Vec<u8>> {
        let file = File::open(self.path(spot.segment))?;
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, spot.at)?;
        Ok(bytes)
    }

    /// The chunk at `spot` is done with (delivered, discarded or quarantined): acks
    /// it, and deletes its segment once nothing in it is left.
    pub fn release(&self, spot: Spot) -> io::Result<()> {
        let mut st = self.lock();
        let left = match st.live.get_mut(&spot.segment) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => 0,
        };
        let open = st.open.as_ref().is_some_and(|o| o.number == spot.segment);
        if left == 0 && !open {
            st.live.remove(&spot.segment);
            drop(st);
            self.delete(spot.segment);
            return Ok(());
        }
        drop(st);
        self.write_ack(spot)
    }

    fn write_ack(&self, spot: Spot) -> io::Result<()> {
        let mut record = [0u8; ACK_RECORD];
        record[..8].copy_from_slice(&spot.at.to_le_bytes());
        let sum = crc32fast::hash(&record[..8]);
        record[8..].copy_from_slice(&sum.to_le_bytes());
        let path = self.acks_path(spot.segment);
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&record))
            .map_err(|e| failed("record a delivered chunk in", &path, e))
    }

    /// Deletes segment `number` and its acks: the segment first, so that a crash in
    /// between leaves acks without a segment (removed at start), never a segment
    /// without its acks.
    fn delete(&self, number: u64) {
        for path in [self.path(number), self.acks_path(number)] {
            if let Err(e) = fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(file = %path.display(), error = %e, "cannot delete a delivered buffer segment; its chunks that were acked are skipped after a restart");
            }
        }
    }

    /// Reads segment `number` back at start: its chunks not acked, and the damage
    /// not reported before (acked now, so that it is reported once). A segment with
    /// nothing left in it is deleted.
    pub fn recover(&self, number: u64) -> io::Result<SegmentRecovery> {
        {
            let mut st = self.lock();
            st.next_number = st.next_number.max(number + 1);
        }
        let bytes = fs::read(self.path(number))?;
        let acked = self.read_acks(number)?;
        let mut out = SegmentRecovery::default();
        let mut at = 0usize;
        while at < bytes.len() {
            let spot = Spot {
                segment: number,
                at: at as u64,
            };
            let rest = &bytes[at..];
            match format::sealed_len(rest) {
                Ok(len) => {
                    let parsed = format::parse(&rest[..len]);
                    if let format::Parsed::Intact { header, .. } = &parsed {
                        out.max_seq = out.max_seq.max(Some(header.seq));
                    }
                    if !acked.contains(&spot.at) {
                        out.chunks.push(Found {
                            spot,
                            len: len as u64,
                            parsed,
                        });
                    }
                    at += len;
                }
                Err(reason) => {
                    // Up to the next intact chunk header, if any: the chunks after a
                    // damaged one are still found.
                    let end = (at + 1..bytes.len())
                        .find(|&i| {
                            bytes[i..].starts_with(format::MAGIC)
                                && format::starts_with_header(&bytes[i..])
                        })
                        .unwrap_or(bytes.len());
                    let stretch = &bytes[at..end];
                    let reason = if stretch.iter().all(|&b| b == 0) {
                        format!("{} zero bytes where a chunk should start", stretch.len())
                    } else {
                        reason
                    };
                    if !acked.contains(&spot.at) {
                        out.damage.push(Damage {
                            spot,
                            bytes: stretch.to_vec(),
                            reason: format!(
                                "at byte {at} of {}: {reason}",
                                self.path(number).display()
                            ),
                        });
                    }
                    at = end;
                }
            }
        }
        for d in &out.damage {
            self.write_ack(d.spot)?;
        }
        if out.chunks.is_empty() {
            self.delete(number);
        } else {
            self.lock().live.insert(number, out.chunks.len() as u32);
        }
        Ok(out)
    }

    /// The offsets acked in segment `number`. A record cut short by a crash or
    /// damaged does not count: its chunk is sent again.
    fn read_acks(&self, number: u64) -> io::Result<HashSet<u64>> {
        let bytes = match fs::read(self.acks_path(number)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashSet::new()),
            Err(e) => return Err(e),
        };
        Ok(bytes
            .chunks_exact(ACK_RECORD)
            .filter_map(|r| {
                let at = u64::from_le_bytes(r[..8].try_into().ok()?);
                let sum = u32::from_le_bytes(r[8..].try_into().ok()?);
                (crc32fast::hash(&r[..8]) == sum).then_some(at)
            })
            .collect())
    }

    /// Removes the acks file of `number` whose segment is gone (a crash between
    /// deleting the two).
    pub fn remove_orphan_acks(&self, number: u64) -> io::Result<()> {
        if self.path(number).exists() {
            return Ok(());
        }
        match fs::remove_file(self.acks_path(number)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Writes every byte of `parts` at `at` in as few calls as the kernel allows.
fn write_all_at(file: &File, mut parts: &mut [IoSlice<'_>], at: u64) -> io::Result<()> {
    // Vectored writes at the file's position: the file is only written under the
    // ledger's lock, at its end, which is where the position is unless a failed
    // write left it elsewhere.
    let mut file = file;
    if file.stream_position()? != at {
        file.seek(io::SeekFrom::Start(at))?;
    }
    while !parts.is_empty() {
        match file.write_vectored(parts) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut parts, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// For a file name `<n>.segment` or `<n>.acks`: `n`, and whether it is a segment.
pub fn parse_name(name: &str) -> Option<(u64, bool)> {
    let (n, ext) = name.split_once('.')?;
    let n = n.parse().ok()?;
    match ext {
        SEGMENT => Some((n, true)),
        ACKS => Some((n, false)),
        _ => None,
    }
}

/// Where each intact chunk of the segment at `path` starts, up to the first damage:
/// for tests that damage segments.
#[cfg(test)]
pub fn chunk_offsets(path: &std::path::Path) -> Vec<usize> {
    let bytes = fs::read(path).unwrap_or_default();
    let mut at = 0;
    let mut out = Vec::new();
    while let Ok(len) = format::sealed_len(&bytes[at..]) {
        out.push(at);
        at += len;
    }
    out
}
