//! What the Storage Write API's refusals of a whole call mean: sent again with the
//! backoff, blocked with a hint (nothing dead-lettered), or a stream to replace.
//! (Refusals of single rows, `row_errors`, and `ALREADY_EXISTS` at an offset are read
//! where the append is, in the service.)

use tonic::{Code, Status};

use super::journal::JournalError;

/// Why a send stopped short: to retry with the backoff, or blocked with a hint.
#[derive(Debug)]
pub enum Failure {
    /// Sent again with the shared backoff.
    Retry(Code, String),
    /// Sent again without end; the reason says what to fix.
    Blocked(Code, String),
}

/// Whether an answer means the stream can take no more appends (and a new one is
/// needed): past its end, finalized, or unknown to the server.
pub fn stream_gone(code: Code, message: &str) -> bool {
    let about_stream = message.to_ascii_lowercase().contains("stream");
    match code {
        Code::OutOfRange | Code::FailedPrecondition => true,
        Code::InvalidArgument | Code::NotFound => about_stream,
        _ => false,
    }
}

/// The journal cannot be written: nothing is sent (an append must be recorded
/// first), and it is tried again.
pub fn journal_failure(e: JournalError) -> Failure {
    Failure::Retry(Code::Internal, e.to_string())
}

/// What a refusal of a whole call means.
pub fn classify(status: Status) -> Failure {
    let code = status.code();
    let message = status.message().to_string();
    match code {
        Code::PermissionDenied | Code::Unauthenticated => Failure::Blocked(
            code,
            format!(
                "{message}: check the credentials (credentials_file, GOOGLE_APPLICATION_CREDENTIALS or workload identity) and that the account has roles/bigquery.dataEditor on the table"
            ),
        ),
        Code::NotFound => Failure::Blocked(
            code,
            format!(
                "{message}: the table does not exist; create it, or set auto_create_table with a schema"
            ),
        ),
        Code::InvalidArgument => Failure::Blocked(
            code,
            format!(
                "{message}: BigQuery refuses the appends; check that the schema matches the table's"
            ),
        ),
        // UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, INTERNAL, ABORTED,
        // UNKNOWN (a broken connection), CANCELLED.
        _ => Failure::Retry(code, message),
    }
}
