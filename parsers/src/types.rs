//! Typed conversion of parsed fields (`types: {code: integer, took: float}`), as
//! Fluentd's `types` parameter, but strict: a value that is not what its type says
//! is an error naming the field, never a silent `0`.

use nagare_core::EventTime;
use nagare_core::value::{Str, Value};

use crate::time::{TimeFormat, Zone, resolve};

/// The type a field is converted to.
#[derive(Debug, Clone)]
pub enum FieldType {
    /// Text; numbers and other values become their JSON text.
    String,
    /// A signed integer (`-12`, `+7`; an integral float such as `3.0` too).
    Integer,
    /// A floating point number.
    Float,
    /// `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`, any case.
    Bool,
    /// A time, read with the given format (`time:%d/%b/%Y`) or as ISO 8601 / epoch
    /// seconds (`time`); zone-less times take the parser's `timezone`.
    Time(TimeFormat),
    /// A list: text split at the delimiter (`array` splits at `,`, `array:|` at `|`).
    Array(String),
}

impl FieldType {
    /// Parses a type as `types` writes it: `integer`, `float`, `bool`, `string`,
    /// `time`, `time:<format>`, `array`, `array:<delimiter>`.
    pub fn parse_spec(spec: &str) -> Result<FieldType, String> {
        let (name, option) = match spec.split_once(':') {
            Some((n, o)) => (n, Some(o)),
            None => (spec, None),
        };
        Ok(match (name.trim(), option) {
            ("string", None) => FieldType::String,
            ("integer" | "int", None) => FieldType::Integer,
            ("float", None) => FieldType::Float,
            ("bool" | "boolean", None) => FieldType::Bool,
            ("time", None) => FieldType::Time(TimeFormat::Auto),
            ("time", Some(format)) => FieldType::Time(TimeFormat::parse_spec(format)?),
            ("array", None) => FieldType::Array(",".to_string()),
            ("array", Some(d)) if !d.is_empty() => FieldType::Array(d.to_string()),
            _ => {
                return Err(format!(
                    "`{spec}` is not a type; use integer, float, bool, string, time, \
                     time:<format>, array or array:<delimiter>"
                ));
            }
        })
    }

    /// What the type expects, for error messages.
    pub fn expected(&self) -> &'static str {
        match self {
            FieldType::String => "a string",
            FieldType::Integer => "an integer",
            FieldType::Float => "a float",
            FieldType::Bool => "a bool",
            FieldType::Time(_) => "a time in the configured format",
            FieldType::Array(_) => "an array",
        }
    }

    /// Converts `value`; `None` when it does not convert. Nulls stay null.
    pub fn convert(&self, value: &Value, zone: &Zone, reference: EventTime) -> Option<Value> {
        if matches!(value, Value::Null) {
            return Some(Value::Null);
        }
        match self {
            FieldType::String => Some(match value {
                Value::Str(_) => value.clone(),
                other => Value::Str(Str::from(other.to_text())),
            }),
            FieldType::Integer => match value {
                Value::Int(_) | Value::UInt(_) => Some(value.clone()),
                Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => {
                    Some(Value::Int(*f as i64))
                }
                Value::Str(s) => parse_integer(s.trim()),
                _ => None,
            },
            FieldType::Float => match value {
                Value::Float(_) => Some(value.clone()),
                Value::Int(i) => Some(Value::Float(*i as f64)),
                Value::UInt(u) => Some(Value::Float(*u as f64)),
                Value::Str(s) => parse_float(s.trim()).map(Value::Float),
                _ => None,
            },
            FieldType::Bool => match value {
                Value::Bool(_) => Some(value.clone()),
                Value::Int(0) => Some(Value::Bool(false)),
                Value::Int(1) => Some(Value::Bool(true)),
                Value::Str(s) => parse_bool(s.trim()).map(Value::Bool),
                _ => None,
            },
            FieldType::Time(format) => format
                .parse_value(value)
                .and_then(|raw| resolve(raw, zone, reference))
                .map(Value::Time),
            FieldType::Array(delimiter) => match value {
                Value::Array(_) => Some(value.clone()),
                Value::Str(s) if s.is_empty() => Some(Value::Array(Vec::new())),
                Value::Str(s) => Some(Value::Array(
                    s.split(delimiter.as_str()).map(Value::from).collect(),
                )),
                other => Some(Value::Array(vec![other.clone()])),
            },
        }
    }
}

fn parse_integer(s: &str) -> Option<Value> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    if let Ok(i) = digits.parse::<i64>() {
        return Some(Value::Int(i));
    }
    if let Ok(u) = digits.parse::<u64>() {
        return Some(Value::UInt(u));
    }
    None
}

fn parse_float(s: &str) -> Option<f64> {
    // Rust also reads `inf` and `NaN`, which no log means as numbers and JSON cannot
    // carry.
    let f: f64 = s.parse().ok()?;
    f.is_finite().then_some(f)
}

fn parse_bool(s: &str) -> Option<bool> {
    const TRUE: [&str; 4] = ["true", "yes", "on", "1"];
    const FALSE: [&str; 4] = ["false", "no", "off", "0"];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(s)) {
        Some(true)
    } else if FALSE.iter().any(|t| t.eq_ignore_ascii_case(s)) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(spec: &str, v: Value) -> Option<Value> {
        FieldType::parse_spec(spec)
            .unwrap()
            .convert(&v, &Zone::Utc, EventTime::default())
    }

    #[test]
    fn converts_like_the_type_says() {
        assert_eq!(conv("integer", "42".into()), Some(Value::Int(42)));
        assert_eq!(conv("integer", " -7 ".into()), Some(Value::Int(-7)));
        assert_eq!(
            conv("integer", "18446744073709551615".into()),
            Some(Value::UInt(u64::MAX))
        );
        assert_eq!(conv("integer", "4.5".into()), None);
        assert_eq!(conv("integer", "abc".into()), None);
        assert_eq!(conv("integer", Value::Float(3.0)), Some(Value::Int(3)));
        assert_eq!(conv("float", "0.25".into()), Some(Value::Float(0.25)));
        assert_eq!(conv("float", "NaN".into()), None);
        assert_eq!(conv("float", Value::Int(2)), Some(Value::Float(2.0)));
        assert_eq!(conv("bool", "Yes".into()), Some(Value::Bool(true)));
        assert_eq!(conv("bool", "off".into()), Some(Value::Bool(false)));
        assert_eq!(conv("bool", "maybe".into()), None);
        assert_eq!(conv("string", Value::Int(5)), Some("5".into()));
        assert_eq!(
            conv("array", "a,b,,c".into()),
            Some(Value::Array(vec![
                "a".into(),
                "b".into(),
                "".into(),
                "c".into()
            ]))
        );
        assert_eq!(
            conv("array:|", "a|b".into()),
            Some(Value::Array(vec!["a".into(), "b".into()]))
        );
        assert_eq!(conv("array", "".into()), Some(Value::Array(vec![])));
        assert_eq!(
            conv("time:%d/%b/%Y", "15/Jan/2024".into()),
            Some(Value::Time(EventTime::new(1_705_276_800, 0)))
        );
        assert_eq!(
            conv("time", "2024-01-15T00:00:00Z".into()),
            Some(Value::Time(EventTime::new(1_705_276_800, 0)))
        );
        assert_eq!(conv("integer", Value::Null), Some(Value::Null));
    }

    #[test]
    fn unknown_types_are_refused() {
        assert!(
            FieldType::parse_spec("number")
                .unwrap_err()
                .contains("not a type")
        );
        assert!(FieldType::parse_spec("time:%Q%q").is_err());
        assert!(FieldType::parse_spec("array:").is_err());
    }
}
