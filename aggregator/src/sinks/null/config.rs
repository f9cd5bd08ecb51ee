//! The `null` sink's config.
//!
//! ```yaml
//! sinks:
//!   discard:
//!     type: "null"
//!     match: "debug.**"
//!     print_interval: 10s   # log the totals every 10 s (default: at shutdown only)
//! ```

use nagare_core::component::Invalid;
use nagare_core::config::HumanDuration;
use serde::Deserialize;

/// Drops events, counting them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NullConfig {
    /// Log the totals so far every this often (Vector's `print_interval_secs`).
    /// Unset: only once, when the sink stops.
    #[serde(default)]
    pub print_interval: Option<HumanDuration>,
}

impl NullConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.print_interval.is_some_and(|i| i.0.is_zero()) {
            return Err(Invalid::new(
                "print_interval",
                "must be longer than 0s; leave it out to log the totals only at shutdown",
            ));
        }
        Ok(())
    }
}
