//! Appends a batch's lines to its file and fsyncs it, on the blocking pool. The open
//! files are kept, up to a bound.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use nagare_core::dead_letter;
use nagare_core::sink::{Item, Sent, Service};

use super::encoder::FileKey;
use super::retry::classify;

/// Files kept open at once; past it, all are closed and reopened on demand (a tag
/// per file can mean many files).
const OPEN_FILES: usize = 128;

/// A batch's lines and their file.
#[derive(Debug)]
pub struct Append {
    path: Arc<Path>,
    /// Taken by the write and given back, so a retry sends the same bytes.
    lines: Vec<u8>,
}

/// Appends batches to their files.
#[derive(Debug, Clone, Default)]
pub struct FileService {
    files: Arc<Mutex<Files>>,
}

impl FileService {
    /// A service sharing its open files with its clones.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Service<FileKey> for FileService {
    type Request = Append;

    fn build(&mut self, key: &FileKey, items: &mut [Item<FileKey>]) -> Append {
        let mut lines = Vec::with_capacity(items.iter().map(|i| i.bytes.len()).sum());
        for item in items {
            lines.extend_from_slice(&item.bytes);
        }
        Append {
            path: key.0.clone(),
            lines,
        }
    }

    async fn send(&mut self, request: &mut Append) -> Sent {
        let files = self.files.clone();
        let path = request.path.clone();
        let lines = std::mem::take(&mut request.lines);
        let job = tokio::task::spawn_blocking(move || {
            let mut files = files.lock().unwrap_or_else(|p| p.into_inner());
            let result = files.append(&path, &lines);
            (lines, result)
        });
        let result = match job.await {
            Ok((lines, result)) => {
                request.lines = lines;
                result
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(io::Error::other(e)),
        };
        Sent {
            destination: request.path.display().to_string(),
            outcome: classify(&request.path, result),
        }
    }
}

/// The open files.
#[derive(Debug, Default)]
struct Files {
    open: HashMap<Arc<Path>, File>,
}

impl Files {
    /// Appends `lines` to `path` and fsyncs it. On an error, what was partly written
    /// is cut back off (so a retry does not leave half a line) and the file is
    /// reopened next time (the handle may be what is broken).
    fn append(&mut self, path: &Arc<Path>, lines: &[u8]) -> io::Result<()> {
        let result = self.append_open(path, lines);
        if result.is_err() {
            self.open.remove(path);
        }
        result
    }

    fn append_open(&mut self, path: &Arc<Path>, lines: &[u8]) -> io::Result<()> {
        if !self.open.contains_key(path) {
            if self.open.len() >= OPEN_FILES {
                self.open.clear();
            }
            self.open
                .insert(path.clone(), dead_letter::open_append(path)?);
        }
        let Some(file) = self.open.get_mut(path) else {
            return Err(io::Error::other("file not open"));
        };
        dead_letter::append_synced(file, lines)
    }
}
