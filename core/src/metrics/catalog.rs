//! Every per-type metric, by the type of component that keeps it. docs/operations.md
//! lists each one ("Metrics reference"), and a test checks that list against what is
//! served.

use super::detail::{Def, Kind};

const fn counter(name: &'static str, help: &'static str) -> Def {
    Def {
        name,
        help,
        kind: Kind::Counter,
        label: None,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Def {
    Def {
        name,
        help,
        kind: Kind::Gauge,
        label: None,
    }
}

const fn labelled(def: Def, label: &'static str) -> Def {
    Def {
        label: Some(label),
        ..def
    }
}

/// The tail source's.
pub mod tail {
    use super::*;

    /// Files open now.
    pub const FILES_OPEN: Def = gauge(
        "nagare_tail_files_open",
        "Files the tail source has open, rotated ones still being read to their end included",
    );
    /// Files found but not opened yet.
    pub const FILES_WAITING: Def = gauge(
        "nagare_tail_files_waiting",
        "Files found by the globs and waiting to be opened because max_open_files is reached",
    );
    /// Rotated or deleted files still being read.
    pub const FILES_DRAINING: Def = gauge(
        "nagare_tail_files_draining",
        "Files rotated away or deleted that are still being read to their end",
    );
    /// Bytes read.
    pub const READ_BYTES: Def = counter("nagare_tail_read_bytes", "Bytes read from files");
    /// Lines read.
    pub const READ_LINES: Def = counter(
        "nagare_tail_read_lines",
        "Lines read from files (pieces of over-long lines counted apiece)",
    );
    /// Rotations.
    pub const ROTATIONS: Def = counter(
        "nagare_tail_rotations",
        "Rotations seen: a followed path now leads to another file",
    );
    /// Truncations.
    pub const TRUNCATIONS: Def = counter(
        "nagare_tail_truncations",
        "Truncations seen (copytruncate rotation)",
    );
    /// Lines not confirmed yet.
    pub const CHECKPOINT_PENDING_LINES: Def = gauge(
        "nagare_tail_checkpoint_pending_lines",
        "Lines read whose chunks the buffers have not confirmed yet, so the checkpoints cannot pass them",
    );
    /// Checkpoint lag in time.
    pub const CHECKPOINT_LAG_SECONDS: Def = gauge(
        "nagare_tail_checkpoint_lag_seconds",
        "Seconds since the oldest chunk of lines the checkpoints wait for was handed to the buffers (0 when they wait for none)",
    );
    /// Checkpoint writes.
    pub const CHECKPOINT_WRITES: Def =
        counter("nagare_tail_checkpoint_writes", "Checkpoint files written");
    /// Paused now.
    pub const PAUSED: Def = gauge(
        "nagare_tail_paused",
        "1 while the tail source waits for room in a buffer (backpressure) and reads nothing",
    );
    /// Pauses.
    pub const PAUSES: Def = counter(
        "nagare_tail_backpressure_pauses",
        "Times the tail source waited for room in a buffer",
    );
    /// Time paused.
    pub const PAUSED_SECONDS: Def = counter(
        "nagare_tail_backpressure_paused_seconds",
        "Seconds the tail source spent waiting for room in a buffer (whole seconds, pauses that ended)",
    );
}

/// The forward source's (the aggregator's forward server).
pub mod forward_source {
    use super::*;

    /// Connections open.
    pub const CONNECTIONS: Def = gauge(
        "nagare_forward_source_connections",
        "Client connections open now",
    );
    /// Connections accepted.
    pub const ACCEPTED: Def = counter(
        "nagare_forward_source_connections_accepted",
        "Client connections accepted",
    );
    /// Failed handshakes.
    pub const HANDSHAKE_FAILURES: Def = counter(
        "nagare_forward_source_handshake_failures",
        "Clients refused at the handshake (shared_key, username/password, TLS)",
    );
    /// Acks sent.
    pub const ACKS: Def = counter(
        "nagare_forward_source_acks_sent",
        "Acks sent to clients (a chunk committed to the buffers)",
    );
    /// Frames refused.
    pub const REFUSED_FRAMES: Def = counter(
        "nagare_forward_source_refused_frames",
        "Frames refused: not forward protocol, too large, or failing to decompress",
    );
}

/// The forward sink's, per configured server (`server` = host:port from the config).
pub mod forward_sink {
    use super::*;

    /// Up or down.
    pub const UP: Def = labelled(
        gauge(
            "nagare_forward_sink_server_up",
            "1 while the server is available (its phi under the threshold), 0 while it is not",
        ),
        "server",
    );
    /// Phi.
    pub const PHI: Def = labelled(
        gauge(
            "nagare_forward_sink_server_phi",
            "The phi accrual failure detector's suspicion of the server (higher: more likely down)",
        ),
        "server",
    );
    /// Acks received.
    pub const ACKS: Def = labelled(
        counter(
            "nagare_forward_sink_acks_received",
            "Acks received from the server",
        ),
        "server",
    );
    /// Acks that did not come.
    pub const ACK_TIMEOUTS: Def = labelled(
        counter(
            "nagare_forward_sink_ack_timeouts",
            "Chunks whose ack did not come within ack_response_timeout",
        ),
        "server",
    );
    /// Failed handshakes.
    pub const HANDSHAKE_FAILURES: Def = labelled(
        counter(
            "nagare_forward_sink_handshake_failures",
            "Connections to the server that failed at the handshake (shared_key, auth, TLS)",
        ),
        "server",
    );
    /// Connections open.
    pub const CONNECTIONS: Def = labelled(
        gauge(
            "nagare_forward_sink_connections",
            "Connections to the server open now",
        ),
        "server",
    );
}

/// The Elasticsearch sink's.
pub mod elasticsearch {
    use super::*;

    /// Bulk requests sent.
    pub const BULK_REQUESTS: Def = counter(
        "nagare_elasticsearch_bulk_requests",
        "_bulk requests sent (answered or not)",
    );
    /// Bulk items by status class.
    pub const BULK_ITEMS: Def = labelled(
        counter(
            "nagare_elasticsearch_bulk_items",
            "Items answered in _bulk responses, by status class: 2xx, 409, 429, 4xx (the others), 5xx",
        ),
        "status",
    );
    /// Events written to `index_fallback`.
    pub const INDEX_FALLBACKS: Def = counter(
        "nagare_elasticsearch_index_fallbacks",
        "Events written to index_fallback because the index template could not name their index: a field missing, or a name Elasticsearch refuses",
    );
}

/// The sink kit's (CloudWatch Logs, BigQuery).
pub mod sink_kit {
    use super::*;

    /// Requests sent.
    pub const REQUESTS: Def = counter(
        "nagare_sink_requests",
        "Requests a sink built on the sink kit sent to its destination",
    );
    /// Requests retried.
    pub const RETRIES: Def = counter(
        "nagare_sink_request_retries",
        "Requests (or parts of them) a sink built on the sink kit sends again",
    );
}

/// The filters'.
pub mod filter {
    use super::*;

    /// Events dropped.
    pub const DROPPED: Def = counter(
        "nagare_filter_dropped_events",
        "Events a filter dropped (grep, throttle, an exclude rule)",
    );
}
