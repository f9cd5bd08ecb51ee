//! The `file` sink's config.
//!
//! ```yaml
//! sinks:
//!   archive:
//!     type: file
//!     match: "**"
//!     path: /var/log/nagare/{tag}.ndjson   # {tag}: one file per tag
//!     format: envelope                      # or: record
//! ```

use nagare_core::component::Invalid;
use serde::Deserialize;

pub use crate::sinks::ndjson::Format;

/// Appends events to NDJSON files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to append to. `{tag}` in it stands for the event's tag, giving one
    /// file per tag (characters other than letters, digits, `.`, `-` and `_` in the
    /// tag become `_`, so a tag cannot reach outside the folder).
    pub path: String,
    /// The line format: `envelope` (`{"tag":..,"time":..,"record":{..}}`) or
    /// `record` (the record alone).
    #[serde(default)]
    pub format: Format,
}

impl FileConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.path.trim().is_empty() {
            return Err(Invalid::new("path", "give the file to write to"));
        }
        if self.path.ends_with('/') {
            return Err(Invalid::new(
                "path",
                format!(
                    "`{}` is a folder; name a file in it, like `{}nagare.ndjson`",
                    self.path, self.path
                ),
            ));
        }
        Ok(())
    }
}
