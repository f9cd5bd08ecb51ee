//! The `stdout` sink's config.
//!
//! ```yaml
//! sinks:
//!   debug:
//!     type: stdout
//!     match: "**"
//!     format: envelope   # or: record
//! ```

use nagare_core::component::Invalid;
use serde::Deserialize;

use crate::sinks::ndjson::Format;

/// Writes events to standard output.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {
    /// The line format: `envelope` (`{"tag":..,"time":..,"record":{..}}`) or
    /// `record` (the record alone).
    #[serde(default)]
    pub format: Format,
}

impl StdoutConfig {
    /// Checks what serde cannot (nothing yet; kept for the common component shape).
    pub fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}
