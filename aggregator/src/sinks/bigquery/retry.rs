//! What BigQuery's answers mean for the rows of an insertAll request.
//!
//! - 200 without `insertErrors`: every row is in.
//! - 200 with `insertErrors`: per row, `invalid` (a value the column cannot take, a
//!   field the table lacks) is **rejected**, to the dead-letter output with
//!   BigQuery's message and location; `stopped` (a valid row of a request refused
//!   for another row, without `skipInvalidRows`) and anything else (`timeout`,
//!   `backendError`) is sent again; rows not named are in.
//! - 403 `rateLimitExceeded` / `quotaExceeded`, 429, 5xx, timeouts and connections
//!   that fail: the request is sent again under the retry policy.
//! - 400 for the request as a whole (too large, not parsed): the kit splits it until
//!   the culprit is alone and rejects that one.
//! - 401 and any other 403 (`accessDenied`, a disabled API, a refused token), and a
//!   token that cannot be had: **blocked**, sent again without end with a hint, never
//!   dead-lettered, so that a wrong key does not empty the buffer into dead letters.
//! - 404: the table or dataset is missing; the service creates it when allowed, else
//!   the request is blocked with a hint.

use nagare_core::sink::{BatchOutcome, Outcome};
use serde_json::Value as Json;

/// A failed request, as much as the answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The first error's `reason` (`rateLimitExceeded`, `notFound`), when the body had
    /// one.
    pub reason: Option<String>,
    /// What BigQuery said, or what went wrong on the way.
    pub message: String,
}

impl Failure {
    /// A failure with no answer (a timeout, a cut connection).
    pub fn transport(message: String) -> Failure {
        Failure {
            status: None,
            reason: None,
            message,
        }
    }

    /// The failure an error answer (`{"error": {"code", "message", "errors":
    /// [{"reason"}]}}`) with `status` means.
    pub fn from_answer(status: u16, body: &[u8]) -> Failure {
        let json: Option<Json> = serde_json::from_slice(body).ok();
        let error = json.as_ref().and_then(|j| j.get("error"));
        let reason = error
            .and_then(|e| e.get("errors"))
            .and_then(|e| e.get(0))
            .and_then(|e| e.get("reason"))
            .and_then(Json::as_str)
            .map(str::to_string);
        let message = error
            .and_then(|e| e.get("message"))
            .and_then(Json::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
        Failure {
            status: Some(status),
            reason,
            message,
        }
    }

    fn is(&self, reason: &str) -> bool {
        self.reason.as_deref() == Some(reason)
    }

    /// Whether the table (or its dataset) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// Whether a create call found it there already.
    pub fn is_already_there(&self) -> bool {
        self.status == Some(409) || self.is("duplicate")
    }

    /// Whether it is a rate or quota limit (retried, not an auth problem).
    pub fn is_rate_limit(&self) -> bool {
        self.status == Some(429)
            || self.is("rateLimitExceeded")
            || self.is("quotaExceeded")
            || self.is("backendError")
    }

    /// Whether the credentials or their permissions are refused.
    pub fn is_auth(&self) -> bool {
        matches!(self.status, Some(401 | 403)) && !self.is_rate_limit()
    }

    /// The failure in words: status, reason, message.
    pub fn describe(&self) -> String {
        let status = self
            .status
            .map_or_else(|| "no answer".to_string(), |s| format!("HTTP {s}"));
        match &self.reason {
            Some(reason) => format!("{status} {reason}: {}", self.message),
            None => format!("{status}: {}", self.message),
        }
    }
}

/// What a failed insertAll of `table` means for its rows; `hint` says what to check
/// when the credentials are refused.
pub fn classify(failure: &Failure, table: &str, hint: &str) -> BatchOutcome {
    let reason = format!("insertAll into {table}: {}", failure.describe());
    if failure.is_auth() {
        return BatchOutcome::Blocked {
            status: failure.status,
            reason: format!("{reason}; {hint}"),
        };
    }
    if matches!(failure.status, Some(400 | 413)) && !failure.is_rate_limit() {
        return BatchOutcome::Split {
            status: failure.status,
            reason,
        };
    }
    // 429, rate and quota limits, 5xx, no answer, and anything unknown: sent again
    // under the retry policy.
    BatchOutcome::All(Outcome::Retry {
        status: failure.status,
        reason,
    })
}

/// The outcome of an accepted insertAll of `rows` rows into `table`, from its answer.
pub fn outcomes(body: &[u8], rows: usize, table: &str) -> BatchOutcome {
    let json: Json = match serde_json::from_slice(body) {
        Ok(json) => json,
        Err(e) => {
            return BatchOutcome::All(Outcome::Retry {
                status: Some(200),
                reason: format!(
                    "insertAll into {table}: the answer is not JSON ({e}); sending the rows again"
                ),
            });
        }
    };
    let Some(errors) = json.get("insertErrors").and_then(Json::as_array) else {
        return BatchOutcome::All(Outcome::Delivered);
    };
    if errors.is_empty() {
        return BatchOutcome::All(Outcome::Delivered);
    }
    let mut out = vec![Outcome::Delivered; rows];
    for entry in errors {
        let Some(index) = entry
            .get("index")
            .and_then(Json::as_u64)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < rows)
        else {
            continue;
        };
        let list: &[Json] = entry
            .get("errors")
            .and_then(Json::as_array)
            .map_or(&[], Vec::as_slice);
        let invalid = list.iter().find(|e| e["reason"] == "invalid");
        out[index] = match invalid {
            Some(e) => Outcome::Rejected {
                status: Some(200),
                reason: format!("BigQuery refused the row for {table}: {}", row_error(e)),
                error: Some(Json::Array(list.to_vec())),
            },
            None => Outcome::Retry {
                status: Some(200),
                reason: format!(
                    "BigQuery did not insert the row into {table}: {}",
                    list.first()
                        .map_or_else(|| "no reason given".to_string(), row_error)
                ),
            },
        };
    }
    BatchOutcome::Items(out)
}

/// One row error in words: `message (at location)`.
fn row_error(e: &Json) -> String {
    let reason = e["reason"].as_str().unwrap_or("error");
    let message = e["message"].as_str().unwrap_or("");
    match e["location"].as_str().filter(|l| !l.is_empty()) {
        Some(location) => format!("{reason} at `{location}`: {message}"),
        None => format!("{reason}: {message}"),
    }
}

/// Whether a rejection says the row names a column the table lacks: the schema read
/// from the table may be out of date.
pub fn is_schema_mismatch(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Rejected { reason, .. } if reason.contains("no such field"))
}

/// What to check when the credentials are refused.
pub fn auth_hint(source: &str, project: &str) -> String {
    format!(
        "check the credentials ({source}): they must be valid and their service account must hold roles/bigquery.dataEditor on the dataset (or tables) of project {project} (and roles/bigquery.user to create datasets); rows stay in the buffer until then"
    )
}

/// The outcome of a request whose table is missing and may not be created.
pub fn missing(table: &str, what: &str) -> BatchOutcome {
    BatchOutcome::Blocked {
        status: Some(404),
        reason: format!(
            "the {what} of {table} does not exist and auto_create_{what} is false; create it, or set auto_create_{what}: true; rows stay in the buffer until then"
        ),
    }
}
