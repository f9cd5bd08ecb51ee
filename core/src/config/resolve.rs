//! YAML 1.2 core-schema resolution of plain scalars, as serde_yaml does it: what
//! `~`, `true`, `24224`, `0x1F`, `1.5` or `0123` are.

use serde::de::{Unexpected, Visitor};

use super::located::DecodeError;

pub fn null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

pub fn bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// Leading zeros make text, not an octal number (YAML 1.2): `0123` is a string.
fn leading_zero(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    s.len() > 1 && s.starts_with('0') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

/// A number from text: a trait over the integer types `from_str_radix` serves.
pub trait Int: Sized {
    fn from_radix(s: &str, radix: u32) -> Option<Self>;
}

macro_rules! int {
    ($($t:ty),*) => {$(
        impl Int for $t {
            fn from_radix(s: &str, radix: u32) -> Option<Self> {
                <$t>::from_str_radix(s, radix).ok()
            }
        }
    )*};
}
int!(u64, u128, i64, i128);

/// Digits without a sign: decimal, or `0x`, `0o`, `0b` prefixed.
fn digits<T: Int>(s: &str, negative: bool) -> Option<T> {
    let (digits, radix) = match s.get(..2) {
        Some("0x") => (&s[2..], 16),
        Some("0o") => (&s[2..], 8),
        Some("0b") => (&s[2..], 2),
        _ if leading_zero(s) => return None,
        _ => (s, 10),
    };
    // `from_str_radix` takes a sign of its own; YAML has one sign, before it all.
    if digits.starts_with(['+', '-']) {
        return None;
    }
    if negative {
        T::from_radix(&format!("-{digits}"), radix)
    } else {
        T::from_radix(digits, radix)
    }
}

pub fn unsigned<T: Int>(s: &str) -> Option<T> {
    digits(s.strip_prefix('+').unwrap_or(s), false)
}

pub fn signed<T: Int>(s: &str) -> Option<T> {
    match s.strip_prefix('-') {
        Some(rest) => digits(rest, true),
        None => digits(s.strip_prefix('+').unwrap_or(s), false),
    }
}

pub fn float(s: &str) -> Option<f64> {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let negative = s.starts_with('-');
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") {
        return Some(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if matches!(s, ".nan" | ".NaN" | ".NAN") {
        return Some(f64::NAN);
    }
    if leading_zero(s) || unsigned.starts_with(['+', '-']) {
        return None;
    }
    // Rust also reads `inf`, `NaN` and `infinity`, which YAML does not.
    if !unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// What a plain scalar is, for an error message.
pub fn unexpected(s: &str) -> Unexpected<'_> {
    if null(s) {
        Unexpected::Unit
    } else if let Some(b) = bool(s) {
        Unexpected::Bool(b)
    } else if let Some(n) = unsigned::<u64>(s) {
        Unexpected::Unsigned(n)
    } else if let Some(n) = signed::<i64>(s) {
        Unexpected::Signed(n)
    } else if let Some(f) = float(s) {
        Unexpected::Float(f)
    } else {
        Unexpected::Str(s)
    }
}

/// Hands a plain scalar to `v` as the type its text resolves to.
pub fn visit<'de, V: Visitor<'de>>(s: &str, v: V) -> Result<V::Value, DecodeError> {
    if null(s) {
        v.visit_unit()
    } else if let Some(b) = bool(s) {
        v.visit_bool(b)
    } else if let Some(n) = unsigned::<u64>(s) {
        v.visit_u64(n)
    } else if let Some(n) = signed::<i64>(s) {
        v.visit_i64(n)
    } else if let Some(n) = unsigned::<u128>(s) {
        v.visit_u128(n)
    } else if let Some(n) = signed::<i128>(s) {
        v.visit_i128(n)
    } else if let Some(f) = float(s) {
        v.visit_f64(f)
    } else {
        v.visit_str(s)
    }
}
