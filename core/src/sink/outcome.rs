//! What a destination's answer means, for each item and for a whole request.

/// What became of one item.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The destination has it.
    Delivered,
    /// Refused for now (throttled, unavailable, no answer): send it again.
    Retry {
        /// The destination's status, if it gave one.
        status: Option<u16>,
        /// What went wrong, in words.
        reason: String,
    },
    /// Refused until the destination's operator fixes something (this item's
    /// credentials or permissions: a key that may not write its index): sent again
    /// with the capped backoff without end, never dead-lettered, as for a whole
    /// request [`BatchOutcome::Blocked`].
    Blocked {
        /// The destination's status, if it gave one.
        status: Option<u16>,
        /// What is wrong and what to check, in words.
        reason: String,
    },
    /// Refused for good: it goes to the dead-letter output.
    Rejected {
        /// The destination's status, if it gave one.
        status: Option<u16>,
        /// Why, in words.
        reason: String,
        /// The destination's error object, as it sent it.
        error: Option<serde_json::Value>,
    },
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchOutcome {
    /// One outcome per item, in the order of the items the request was built from.
    Items(Vec<Outcome>),
    /// The same outcome for every item (a connection error, a failed write, a
    /// request accepted as a whole).
    All(Outcome),
    /// The request was refused as a whole for something in it (too large, one bad
    /// event): it is split in halves, again and again, until the culprit is alone,
    /// which is then rejected with this reason.
    Split {
        /// The destination's status, if it gave one.
        status: Option<u16>,
        /// Why, in words.
        reason: String,
    },
    /// The destination refuses every request until its operator fixes something
    /// (credentials, permissions, a missing resource the sink may not create): the
    /// request is sent again with the capped backoff **without end**, and nothing
    /// goes to the dead-letter output, so that a wrong role or key does not empty
    /// the buffer into dead letters. Each retry is logged with the reason, which
    /// should say what to check.
    Blocked {
        /// The destination's status, if it gave one.
        status: Option<u16>,
        /// What is wrong and what to check, in words.
        reason: String,
    },
}

/// A request sent: where to, for the logs, and what came of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// Which endpoint, file or stream answered.
    pub destination: String,
    /// What came of it.
    pub outcome: BatchOutcome,
}
