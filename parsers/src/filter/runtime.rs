//! The running `parser` filter.

use std::borrow::Cow;

use nagare_core::Event;
use nagare_core::component::{FilterComponent, Invalid};
use nagare_core::router::{Filter, Verdict};
use nagare_core::value::{Map, Str, Value};

use super::config::{ParserFilterConfig, key_path};
use crate::formats::Parser;

/// Parses a field of each record (see the [module docs](super)).
#[derive(Debug, Clone)]
pub struct ParserFilter {
    key_name: String,
    path: Vec<String>,
    parser: Parser,
    reserve_data: bool,
    reserve_time: bool,
    remove_key_name_field: bool,
    inject_key_prefix: Option<String>,
    hash_value_field: Option<Str>,
    emit_invalid_record_to_error: bool,
}

impl ParserFilter {
    /// Builds the filter; an unusable config is an [`Invalid`] naming its key.
    pub fn new(config: &ParserFilterConfig) -> Result<Self, Invalid> {
        config.validate()?;
        let parser = Parser::new(&config.parse)
            .map_err(|e| Invalid::new(format!("parse.{}", e.key), e.message))?;
        Ok(Self {
            key_name: config.key_name.clone(),
            path: key_path(&config.key_name).map_err(|m| Invalid::new("key_name", m))?,
            parser,
            reserve_data: config.reserve_data,
            reserve_time: config.reserve_time,
            remove_key_name_field: config.remove_key_name_field,
            inject_key_prefix: config.inject_key_prefix.clone().filter(|p| !p.is_empty()),
            hash_value_field: config.hash_value_field.as_deref().map(Str::from),
            emit_invalid_record_to_error: config.emit_invalid_record_to_error,
        })
    }

    fn invalid(&self, reason: String) -> Verdict {
        if self.emit_invalid_record_to_error {
            Verdict::Reject(reason)
        } else {
            Verdict::Keep
        }
    }

    /// The parsed fields as they go into the record: prefixed, nested.
    fn shape(&self, parsed: Map) -> Map {
        let parsed = match &self.inject_key_prefix {
            Some(prefix) => parsed
                .into_iter()
                .map(|(k, v)| (Str::from(format!("{prefix}{k}")), v))
                .collect(),
            None => parsed,
        };
        match &self.hash_value_field {
            Some(key) => {
                let mut m = Map::with_capacity(1);
                m.push_unchecked(key.clone(), Value::Map(parsed));
                m
            }
            None => parsed,
        }
    }
}

fn get<'a>(record: &'a Map, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut cur = record.get(first)?;
    for part in rest {
        cur = cur.as_map()?.get(part)?;
    }
    Some(cur)
}

fn remove(record: &mut Map, path: &[String]) {
    match path {
        [] => {}
        [last] => {
            record.remove(last);
        }
        [first, rest @ ..] => {
            if let Some(Value::Map(inner)) = record.get_mut(first) {
                remove(inner, rest);
            }
        }
    }
}

impl FilterComponent for ParserFilter {
    const TYPE: &'static str = "parser";
    type Config = ParserFilterConfig;

    fn validate(config: &ParserFilterConfig) -> Result<(), Invalid> {
        config.validate()
    }

    fn build(config: &ParserFilterConfig) -> Result<Self, Invalid> {
        Self::new(config)
    }
}

impl Filter for ParserFilter {
    fn filter(&self, event: &mut Event) -> Verdict {
        let text: Cow<'_, [u8]> = match get(&event.record, &self.path) {
            None | Some(Value::Null) => {
                return self.invalid(format!(
                    "parser: the field `{}` does not exist",
                    self.key_name
                ));
            }
            Some(Value::Str(s)) => Cow::Borrowed(s.as_bytes()),
            Some(Value::Bytes(b)) => Cow::Borrowed(b),
            Some(v @ (Value::Map(_) | Value::Array(_))) => {
                return self.invalid(format!(
                    "parser: the field `{}` is {} {}, not text",
                    self.key_name,
                    if matches!(v, Value::Map(_)) {
                        "a"
                    } else {
                        "an"
                    },
                    v.kind()
                ));
            }
            Some(other) => Cow::Owned(other.to_text().into_bytes()),
        };
        let parsed = match self.parser.parse(&text, event.time) {
            Ok(p) => p,
            Err(e) => {
                return self.invalid(format!("parser: the field `{}`: {e}", self.key_name));
            }
        };
        drop(text);
        let values = self.shape(parsed.record);
        if self.reserve_data {
            if self.remove_key_name_field {
                remove(&mut event.record, &self.path);
            }
            event.record.merge(values);
        } else {
            event.record = values;
        }
        if !self.reserve_time
            && let Some(t) = parsed.time
        {
            event.time = t;
        }
        Verdict::Keep
    }
}
