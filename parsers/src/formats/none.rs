//! `none`: the whole line as one text field, for logs with no structure to take
//! apart (Fluentd's `none`).

use nagare_core::component::Invalid;
use nagare_core::value::{Map, Str};
use serde::Deserialize;

use super::{BuiltinTime, default_message_key, message_key, text_value};
use crate::error::ParseError;

/// Config of the `none` format.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoneConfig {
    /// The field that holds the line.
    #[serde(default = "default_message_key")]
    pub message_key: String,
}

impl Default for NoneConfig {
    fn default() -> Self {
        Self {
            message_key: default_message_key(),
        }
    }
}

/// The `none` parser.
#[derive(Debug, Clone)]
pub struct NoneParser {
    message_key: Str,
}

impl NoneParser {
    /// Builds the parser.
    pub fn new(config: &NoneConfig) -> Result<Self, Invalid> {
        Ok(Self {
            message_key: message_key(&config.message_key)?,
        })
    }

    /// Parses one line into `record`: it always succeeds.
    pub fn parse(&self, line: &[u8], record: &mut Map) -> Result<Option<BuiltinTime>, ParseError> {
        record.push_unchecked(self.message_key.clone(), text_value(line));
        Ok(None)
    }
}
