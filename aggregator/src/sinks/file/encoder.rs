//! Events to lines for the kit: the lines of a chunk's consecutive events share one
//! item (one buffer per chunk is what keeps the sink fast), keyed by the file they go
//! to, so a batch is the lines of one file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nagare_core::Tag;
use nagare_core::dead_letter;
use nagare_core::sink::{Encoder, Event, Items};

use super::config::{FileConfig, Format};
use crate::sinks::ndjson::encode_event;

/// The file an event of `tag` goes to: `{tag}` in `template` replaced by the tag with
/// every character but letters, digits, `.`, `-` and `_` turned into `_` (and a tag of
/// dots alone into `_`), so that no tag names a path outside the folder.
pub fn path_for_tag(template: &str, tag: &str) -> PathBuf {
    if !template.contains("{tag}") {
        return PathBuf::from(template);
    }
    let safe = dead_letter::safe_name_or(tag, "_");
    PathBuf::from(template.replace("{tag}", &safe))
}

/// Encodes events as lines of the files their tags name.
#[derive(Debug)]
pub struct FileEncoder {
    template: String,
    format: Format,
    /// The file of the last tag seen: a chunk is of one tag.
    last: Option<(Tag, Arc<Path>)>,
}

impl FileEncoder {
    /// An encoder for a validated config.
    pub fn new(config: &FileConfig) -> Self {
        Self {
            template: config.path.clone(),
            format: config.format,
            last: None,
        }
    }

    fn path(&mut self, tag: &Tag) -> FileKey {
        match &self.last {
            Some((last, path)) if last == tag => FileKey(path.clone()),
            _ => {
                let path: Arc<Path> = Arc::from(path_for_tag(&self.template, tag));
                self.last = Some((tag.clone(), path.clone()));
                FileKey(path)
            }
        }
    }
}

/// The file a batch goes to. Equal when they are the same allocation (every event
/// of a tag shares one, so the check per event is a pointer's), or name the same
/// path.
#[derive(Debug, Clone, Eq)]
pub struct FileKey(pub Arc<Path>);

impl PartialEq for FileKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl std::hash::Hash for FileKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Encoder for FileEncoder {
    type Key = FileKey;

    fn encode(&mut self, event: Event<'_>, out: &mut Items<'_, FileKey>) {
        let tag = event.chunk.tag();
        let path = self.path(tag);
        let format = self.format;
        out.append(path, |buf| {
            encode_event(format, tag, event.time, event.record, buf);
        });
    }
}
