//! What CloudWatch Logs' answers mean for the events of a call.
//!
//! - Accepted, with `rejectedLogEventsInfo`: the events too old, too new or expired
//!   are rejected (dead-letter output, with the reason); the rest are delivered.
//! - `ThrottlingException`, `ServiceUnavailableException`, other 5xx, timeouts and
//!   connections that fail: the call is sent again under the retry policy.
//! - `InvalidParameterException`: something in the call is refused; the kit splits
//!   it until the culprit is alone and rejects that one.
//! - Refused credentials or permissions (`AccessDeniedException`,
//!   `UnrecognizedClientException`, `InvalidClientTokenId`, `SignatureDoesNotMatch`,
//!   `ExpiredToken`, any 401 / 403, a credentials provider that fails): **blocked**,
//!   sent again without end with a hint naming what to check, never dead-lettered,
//!   so that a wrong role does not empty the buffer into dead letters.
//! - `ResourceNotFoundException`: the group or stream is missing; the service
//!   creates it when allowed (else the call is blocked, with a hint).

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_cloudwatchlogs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatchlogs::types::RejectedLogEventsInfo;
use nagare_core::sink::{BatchOutcome, Outcome};

/// Error codes that mean the credentials or their permissions are refused.
const AUTH_CODES: [&str; 11] = [
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "ExpiredTokenException",
    "NotAuthorized",
];

/// A failed call, as much as the answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The AWS error code (`ThrottlingException`), when the body had one.
    pub code: Option<String>,
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The error and its causes, in words.
    pub message: String,
    /// Whether no credentials could be had (the provider chain failed).
    pub credentials: bool,
}

impl Failure {
    /// What an SDK error says.
    pub fn from_sdk<E>(
        error: &SdkError<E, aws_sdk_cloudwatchlogs::config::http::HttpResponse>,
    ) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let mut credentials = false;
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = source {
            credentials |= e.downcast_ref::<CredentialsError>().is_some();
            source = e.source();
        }
        let status = error.raw_response().map(|r| r.status().as_u16());
        let SdkError::ServiceError(_) = error else {
            return Failure {
                code: None,
                status,
                message: DisplayErrorContext(error).to_string(),
                credentials,
            };
        };
        // An answer: its code and message, not the SDK's dump of the response. Some
        // refusals (a bad signature) come as XML even on this JSON API.
        let body = error
            .raw_response()
            .and_then(|r| r.body().bytes())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let code = error
            .code()
            .map(str::to_string)
            .or_else(|| xml_text(&body, "Code"));
        let message = error
            .message()
            .map(str::to_string)
            .or_else(|| xml_text(&body, "Message"))
            .unwrap_or_else(|| body.chars().take(200).collect());
        let status_text = status.map_or_else(String::new, |s| format!("HTTP {s} "));
        Failure {
            message: format!(
                "{status_text}{}: {message}",
                code.as_deref().unwrap_or("error")
            ),
            code,
            status,
            credentials,
        }
    }

    fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// Whether the group or stream named in the call does not exist.
    pub fn is_not_found(&self) -> bool {
        self.is("ResourceNotFoundException")
    }

    /// Whether what a create call makes exists already.
    pub fn is_already_there(&self) -> bool {
        self.is("ResourceAlreadyExistsException")
    }

    /// Whether the credentials or their permissions are refused.
    pub fn is_auth(&self) -> bool {
        self.credentials
            || matches!(self.status, Some(401 | 403))
            || self
                .code
                .as_deref()
                .is_some_and(|c| AUTH_CODES.contains(&c))
    }

    fn reason(&self) -> String {
        match &self.code {
            Some(code) if !self.message.contains(code.as_str()) => {
                format!("{code}: {}", self.message)
            }
            _ => self.message.clone(),
        }
    }
}

/// The text of the first `<tag>` element of an XML error body.
fn xml_text(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(body[start..end].trim().to_string())
}

/// What a failed PutLogEvents means for its events; `hint` says what to check when
/// the credentials are refused (see [`auth_hint`]).
pub fn classify(failure: &Failure, hint: &str) -> BatchOutcome {
    if failure.is_auth() {
        return BatchOutcome::Blocked {
            status: failure.status,
            reason: format!("{}; {hint}", failure.reason()),
        };
    }
    if failure.is("InvalidParameterException") {
        return BatchOutcome::Split {
            status: failure.status,
            reason: failure.reason(),
        };
    }
    if failure.is("DataAlreadyAcceptedException") {
        return BatchOutcome::All(Outcome::Delivered);
    }
    // ThrottlingException, ServiceUnavailableException, 5xx, no answer, and anything
    // unknown: sent again under the retry policy (which, for what never passes,
    // gives up into the dead-letter output eventually).
    BatchOutcome::All(Outcome::Retry {
        status: failure.status,
        reason: failure.reason(),
    })
}

/// The outcome of an accepted call of `order.len()` events (`order[i]`: the item of
/// the i-th event sent): those `rejected` names are rejected with the reason, the
/// others delivered.
///
/// The API documents `tooOldLogEventEndIndex` and `expiredLogEventEndIndex` as
/// "the index of the last event ... exclusive", which contradicts itself; the
/// emulator reports the index of the last rejected event. Taking it as inclusive
/// can only dead-letter one delivered event too many, never lose one.
pub fn outcomes(rejected: Option<&RejectedLogEventsInfo>, order: &[u32]) -> BatchOutcome {
    let Some(info) = rejected else {
        return BatchOutcome::All(Outcome::Delivered);
    };
    let index = |v: Option<i32>| v.and_then(|i| usize::try_from(i).ok());
    let too_old = index(info.too_old_log_event_end_index());
    let expired = index(info.expired_log_event_end_index());
    let too_new = index(info.too_new_log_event_start_index());
    if too_old.is_none() && expired.is_none() && too_new.is_none() {
        return BatchOutcome::All(Outcome::Delivered);
    }
    let mut out = vec![Outcome::Delivered; order.len()];
    for (sent, &item) in order.iter().enumerate() {
        let reason = if too_new.is_some_and(|start| sent >= start) {
            "CloudWatch Logs refused the event as too new (more than 2 hours in the future)"
        } else if expired.is_some_and(|end| sent <= end) {
            "CloudWatch Logs refused the event as expired (older than the group's retention)"
        } else if too_old.is_some_and(|end| sent <= end) {
            "CloudWatch Logs refused the event as too old (more than 14 days old, or older than the group's retention)"
        } else {
            continue;
        };
        if let Some(slot) = out.get_mut(item as usize) {
            *slot = Outcome::Rejected {
                status: Some(200),
                reason: reason.to_string(),
                error: None,
            };
        }
    }
    BatchOutcome::Items(out)
}

/// What to check when the credentials are refused: the role, profile and region.
pub fn auth_hint(role_arn: Option<&str>, profile: Option<&str>, region: &str) -> String {
    let who = match (role_arn, profile) {
        (Some(role), Some(p)) => format!("the role {role} (assumed with profile `{p}`)"),
        (Some(role), None) => format!("the role {role} (assumed with the default credentials chain)"),
        (None, Some(p)) => format!("the credentials of profile `{p}`"),
        (None, None) => "the credentials of the default chain (environment AWS_ACCESS_KEY_ID, AWS_PROFILE, web identity AWS_ROLE_ARN, container or instance role)".to_string(),
    };
    format!(
        "check {who}: they must be valid and allow logs:PutLogEvents, logs:CreateLogStream, logs:CreateLogGroup and logs:PutRetentionPolicy in region {region}; events stay in the buffer until then"
    )
}

/// The outcome of a call whose group or stream is missing and may not be created.
pub fn missing(what: &str, key: &str) -> BatchOutcome {
    BatchOutcome::Blocked {
        status: Some(400),
        reason: format!(
            "the log {what} of `{key}` does not exist and auto_create_{what} is false; create it, or set auto_create_{what}: true; events stay in the buffer until then"
        ),
    }
}
