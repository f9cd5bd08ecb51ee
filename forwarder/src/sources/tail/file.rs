//! One followed file: its open handle, identity, read offset and framing state.

use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nagare_core::router::Route;
use nagare_core::{ChunkBuilder, Tag};
use nagare_parsers::container::{ContainerParser, LineSplitter};

use super::record::FileFields;

/// A file's identity: device and inode. It survives renames (so a rotated file that
/// still matches the globs is not read twice) and tells a new file created under an
/// old name from the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    /// The device the file lives on.
    pub dev: u64,
    /// The inode number on that device.
    pub ino: u64,
}

impl FileId {
    /// The identity in `meta`.
    pub fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A file being followed.
#[derive(Debug)]
pub struct FollowedFile {
    /// The path it was found under.
    pub path: PathBuf,
    /// Its identity.
    pub id: FileId,
    file: File,
    /// Offset of the next byte to read.
    read_offset: u64,
    /// Lines split from what was read.
    pub splitter: LineSplitter,
    /// The framing; `None` until the first line decides it (`format: auto`).
    pub parser: Option<ContainerParser>,
    /// Fields every record of this file carries.
    pub fields: FileFields,
    /// The events' tag.
    pub tag: Tag,
    /// Filters and sinks of the tag.
    pub route: Arc<Route>,
    /// The chunk being filled.
    pub builder: ChunkBuilder,
    /// Offset just after the last line whose record went into a chunk.
    pub record_end_offset: u64,
    /// The path no longer leads to this file: read what is left, then let it go.
    pub gone: bool,
}

impl FollowedFile {
    /// Opens the file at `path`, positioned at its start or at its current end.
    pub fn open(
        path: &Path,
        start_at_end: bool,
        tag: Tag,
        route: Arc<Route>,
        fields: FileFields,
        max_line_bytes: usize,
    ) -> io::Result<Self> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        let offset = if start_at_end { meta.len() } else { 0 };
        file.seek(SeekFrom::Start(offset))?;
        Ok(Self {
            path: path.to_path_buf(),
            id: FileId::of(&meta),
            file,
            read_offset: offset,
            splitter: LineSplitter::new(max_line_bytes),
            parser: None,
            fields,
            builder: ChunkBuilder::new(tag.clone()),
            tag,
            route,
            record_end_offset: offset,
            gone: false,
        })
    }

    /// Offset of the next byte to read.
    pub fn read_offset(&self) -> u64 {
        self.read_offset
    }

    /// Restarts from the beginning if the file is now shorter than what was read
    /// (it was truncated, e.g. by copytruncate rotation). Returns whether it was.
    pub fn restart_if_truncated(&mut self) -> io::Result<bool> {
        let len = self.file.metadata()?.len();
        if len >= self.read_offset {
            return Ok(false);
        }
        self.file.seek(SeekFrom::Start(0))?;
        self.read_offset = 0;
        self.record_end_offset = 0;
        self.splitter.reset();
        if let Some(parser) = &mut self.parser {
            parser.reset();
        }
        Ok(true)
    }

    /// Reads the next block into `buf`; 0 at the current end of the file.
    ///
    /// The read is a plain blocking read: followed files are regular files whose new
    /// data is in the page cache, so one block takes microseconds, less than handing
    /// it to a blocking thread would.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = loop {
            match self.file.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        self.read_offset += n as u64;
        Ok(n)
    }
}
