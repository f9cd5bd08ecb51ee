//! What a `_bulk` answer means for each event: stored, to be sent again, or refused
//! for good. Pure functions of the status and body.
//!
//! - The whole request: 200 is read item by item; 429 and 5xx mean nothing was
//!   stored and the batch is sent again after a backoff (as is a connection error or
//!   a timeout); 400 and 413 mean the body as a whole was refused, so the batch is
//!   split to isolate the event that causes it; 401 and 403 (credentials or
//!   permissions refused) block the sink: the batch is sent again without end and
//!   never dead-lettered, so nothing is lost while an operator fixes them; any other
//!   status (404: a setting to fix) is retried under the retry policy.
//! - Each item: 2xx is stored; 409 under `op_type: create` means already stored (a
//!   re-sent chunk); 429 and 5xx are sent again (only those items); 401 and 403
//!   (security refusing these credentials this index) block those items as a 403 on
//!   the whole request blocks it; any other 4xx (a mapping conflict, a document too
//!   large) is refused for good and goes to the dead-letter file with the reason.

use nagare_core::sink::{BatchOutcome, Outcome};
use serde::Deserialize;

use super::config::OpType;

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    errors: bool,
    items: Vec<std::collections::HashMap<String, Item>>,
}

#[derive(Deserialize)]
struct Item {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// `<type>: <reason>` of an Elasticsearch error object (or its text).
pub fn error_reason(error: &serde_json::Value) -> String {
    match error {
        serde_json::Value::Object(o) => {
            let kind = o.get("type").and_then(|v| v.as_str()).unwrap_or("error");
            match o.get("reason").and_then(|v| v.as_str()) {
                Some(reason) => format!("{kind}: {reason}"),
                None => kind.to_string(),
            }
        }
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The reason of an error response body, or its first 300 bytes of text.
fn body_reason(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(e) = v.get("error")
    {
        return error_reason(e);
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None if text.is_empty() => "(empty body)".to_string(),
        None => text.to_string(),
    }
}

/// Classifies one item's status.
pub fn classify_item(status: u16, error: Option<serde_json::Value>, op_type: OpType) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        409 if op_type == OpType::Create => Outcome::Delivered,
        429 | 500..=599 => Outcome::Retry {
            status: Some(status),
            reason: error.as_ref().map(error_reason).unwrap_or_default(),
        },
        // The credentials may not write this item's index (a key or role limited
        // to other indices): sent again without end, never dead-lettered.
        401 | 403 => Outcome::Blocked {
            status: Some(status),
            reason: error
                .as_ref()
                .map(error_reason)
                .unwrap_or_else(|| format!("refused with status {status}")),
        },
        _ => Outcome::Rejected {
            status: Some(status),
            reason: error
                .as_ref()
                .map(error_reason)
                .unwrap_or_else(|| format!("refused with status {status}")),
            error,
        },
    }
}

/// Classifies the answer to a request of `items` items.
pub fn classify(status: u16, body: &[u8], items: usize, op_type: OpType) -> BatchOutcome {
    match status {
        200 => {}
        429 | 500..=599 => {
            return retry_all(status, body_reason(body));
        }
        400 | 413 => {
            return BatchOutcome::Split {
                status: Some(status),
                reason: body_reason(body),
            };
        }
        401 | 403 => {
            // Credentials or permissions to fix: sent again without end, never
            // dead-lettered; the service adds what to check.
            return BatchOutcome::Blocked {
                status: Some(status),
                reason: body_reason(body),
            };
        }
        _ => {
            return retry_all(
                status,
                format!(
                    "{}; check that `endpoints` point at Elasticsearch",
                    body_reason(body)
                ),
            );
        }
    }
    let parsed: Body = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => {
            return retry_all(
                status,
                format!("the _bulk response is not a bulk result ({e})"),
            );
        }
    };
    if parsed.items.len() != items {
        return retry_all(
            status,
            format!(
                "the _bulk response has {} items for {items} sent",
                parsed.items.len()
            ),
        );
    }
    if !parsed.errors {
        // Trust the per-item statuses anyway: they are what Elasticsearch stored.
        if parsed
            .items
            .iter()
            .all(|i| i.values().all(|item| (200..300).contains(&item.status)))
        {
            return BatchOutcome::All(Outcome::Delivered);
        }
    }
    let outcomes = parsed
        .items
        .into_iter()
        .map(|mut i| match i.drain().next() {
            Some((_, item)) => classify_item(item.status, item.error, op_type),
            None => Outcome::Retry {
                status: None,
                reason: "an empty item in the _bulk response".into(),
            },
        })
        .collect();
    BatchOutcome::Items(outcomes)
}

/// Nothing was stored (or it cannot be told what was): the whole request goes again.
fn retry_all(status: u16, reason: String) -> BatchOutcome {
    BatchOutcome::All(Outcome::Retry {
        status: Some(status),
        reason,
    })
}
