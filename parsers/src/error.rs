//! Why a line did not parse. Every error says what was expected and where (a byte
//! offset into the line, or the field), so that a record sent to the error route
//! tells its reader how to fix the config or find the bad writer.

use thiserror::Error;

/// A line that a parser could not turn into a record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The line does not follow the format's syntax.
    #[error("{format}: expected {expected} at byte {offset}")]
    Syntax {
        /// The format's name (`apache2`, `logfmt`, ...).
        format: &'static str,
        /// Byte offset into the line where the parser stopped.
        offset: usize,
        /// What it expected there.
        expected: &'static str,
    },
    /// The line is not valid JSON.
    #[error("json: {message} at byte {offset}")]
    Json {
        /// Byte offset into the line (the start of the line it is on, for
        /// multi-line input).
        offset: usize,
        /// What serde_json reported.
        message: String,
    },
    /// The line does not match the configured regular expression.
    #[error("regex: the line does not match the expression `{expression}`")]
    NoMatch {
        /// The expression, as configured.
        expression: String,
    },
    /// A field does not convert to its configured type.
    #[error("field `{field}`: `{value}` is not {expected} (see `types`)")]
    Type {
        /// The field.
        field: String,
        /// Its value, shortened when long.
        value: String,
        /// The type it should have had (`an integer`, `a float`, ...).
        expected: &'static str,
    },
    /// The time field is missing or does not parse, and `time_fallback` is off.
    #[error("time: {0}")]
    Time(String),
    /// A line with more CSV/TSV fields than configured `keys`.
    #[error("{format}: {found} fields but only {keys} keys are configured (at byte {offset})")]
    TooManyFields {
        /// `csv` or `tsv`.
        format: &'static str,
        /// Fields found so far.
        found: usize,
        /// Keys configured.
        keys: usize,
        /// Byte offset of the first field without a key.
        offset: usize,
    },
    /// None of the formats of a `multi_format` parser accepted the line.
    #[error("no format matched: {}", join(.0))]
    NoFormatMatched(Vec<ParseError>),
}

fn join(errors: &[ParseError]) -> String {
    let parts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

impl ParseError {
    /// A syntax error of `format` at `offset`.
    pub(crate) fn syntax(format: &'static str, offset: usize, expected: &'static str) -> Self {
        ParseError::Syntax {
            format,
            offset,
            expected,
        }
    }

    /// The byte offset the error points at, when it points at one.
    pub fn offset(&self) -> Option<usize> {
        match self {
            ParseError::Syntax { offset, .. }
            | ParseError::Json { offset, .. }
            | ParseError::TooManyFields { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

/// Shortens a value for an error message: at most 64 characters, on a char boundary.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 64;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
