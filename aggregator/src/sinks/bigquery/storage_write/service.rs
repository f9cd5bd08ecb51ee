//! The kit [`Service`] of `method: storage_write`: a batch of rows for one table as
//! appends to a write stream, and what each answer means for each row.
//!
//! Items are rows, one per event, each prefixed by the event's origin (the chunk it
//! first arrived in, 16 bytes, and its position there, 4 bytes little-endian; see
//! [`push_row`]), which is what the offsets journal knows rows by.
//!
//! Per table, a worker keeps its own stream and a queue of appends planned (with
//! their offsets, recorded in the journal first with a committed stream) but not yet
//! answered; a send first empties the queue, then plans and sends the batch's new
//! rows. An append whose answer was lost stays first in the queue and goes again at
//! its offset, with the next send of the table's rows, whatever batch they are in. A
//! row that came twice (a chunk the forwarder sent again after the aggregator had
//! buffered it) is planned once. Twice in one batch, its first copy is planned and
//! both are answered by it. With its other copy in another worker's append not
//! answered yet, it is not planned: it waits for that answer (`ABORTED`, sent again
//! with the backoff), after which it is known written or free to plan. An answer that
//! does not come within [`MAX_CLAIM_WAIT`] (the other worker gave up on those rows
//! and sends no more of the table's rows, so its append stays queued) is not waited
//! for any longer: the waiting worker finalizes the other's stream (logged at warn),
//! whose length says which of its appends landed, and goes on, its rows delivered or
//! appended by itself (see [`claims`](super::claims)). The worker whose stream it was
//! finds it finalized in the journal at its next send there, answers its queued
//! appends by the recorded length (the rows of those that did not land are then known
//! written by the other worker, or planned anew) and goes on with a new stream; if it
//! appends before the record, its append is refused as the stream is finalized and it
//! asks the journal, which finalizes each stream once.
//!
//! What an answer means:
//! - success, or `ALREADY_EXISTS` at our offset: the rows landed;
//! - `row_errors`: nothing of the append landed; the rows named go to the dead-letter
//!   output with BigQuery's message, the others are planned again (at the same
//!   offset, which stayed free) and sent;
//! - `OUT_OF_RANGE`, or a stream that is finalized or gone: the stream is finalized to
//!   learn its length (which appends landed; the journal's length if another worker
//!   finalized it), and the rest go on a new stream;
//! - `UNAVAILABLE`, `RESOURCE_EXHAUSTED`, `DEADLINE_EXCEEDED`, `INTERNAL`, `ABORTED`,
//!   broken calls: sent again with the shared backoff;
//! - `PERMISSION_DENIED`, `UNAUTHENTICATED`, a table `NOT_FOUND`, other refusals of
//!   the whole request: blocked, sent again without end with a hint, nothing
//!   dead-lettered.
//!
//! Here: the queue, planning and sending; `service/answers.rs`: what an answer does
//! to the queue (and another worker's stream finalized); `service/outcomes.rs`: the
//! kit's side, a batch as a request and each row's outcome.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nagare_core::chunk::ChunkId;
use nagare_core::sink::{BatchOutcome, Outcome};
use tonic::{Code, Status};

use super::super::service::BigQueryService;
use super::super::table::{Key, TableKey};
use super::claims::{MAX_CLAIM_WAIT, Waits};
use super::client::{Appended, Appender, WriteClient};
use super::journal::{StreamState, runs};
use super::recovery::Committed;
use super::retry::{Failure, classify, journal_failure, stream_gone};

mod answers;
mod outcomes;

/// The bytes of rows in one append: under the API's 10 MB request limit, with room
/// for the request's own fields and the writer schema.
pub const MAX_APPEND_BYTES: usize = 9 << 20;
/// Rows landed or refused but not yet reported to a request, at most (more means
/// their requests were given up on; they are forgotten).
const MAX_UNREPORTED: usize = 1 << 20;

type RowId = (ChunkId, u32);

/// Which stream rows go to.
#[derive(Debug, Clone)]
pub enum Streams {
    /// A committed stream per worker and table, with offsets in the journal: exactly
    /// once.
    Committed(Arc<Committed>),
    /// The table's `_default` stream, no offsets: at least once.
    Default,
}

/// A batch's rows for one table.
#[derive(Debug)]
pub struct AppendRequest {
    key: Key,
    /// `projects/P/datasets/D/tables/T`.
    table: String,
    rows: Vec<(RowId, Bytes)>,
}

#[derive(Debug)]
struct Planned {
    offset: Option<i64>,
    ids: Vec<RowId>,
    rows: Vec<Bytes>,
}

#[derive(Debug)]
struct Active {
    sid: u32,
    name: String,
    next: i64,
    appender: Option<Appender>,
}

#[derive(Debug, Default)]
struct Table {
    stream: Option<Active>,
    queue: VecDeque<Planned>,
    landed: HashSet<RowId>,
    rejected: HashMap<RowId, String>,
}

/// Appends rows to write streams.
#[derive(Debug)]
pub struct WriteService {
    client: WriteClient,
    schema: Arc<prost_types::DescriptorProto>,
    streams: Streams,
    tables: HashMap<String, Table>,
    /// Creates a missing table (and dataset) when the config allows it.
    creator: Option<BigQueryService>,
    /// Rows of the current send not planned because their other copy is in an
    /// append of another worker not answered yet.
    held: Vec<(RowId, Bytes)>,
    /// Which streams hold them, since when.
    waits: Waits,
    /// How long rows wait for another worker's append before its stream is
    /// finalized.
    max_claim_wait: Duration,
}

impl WriteService {
    /// A service appending rows of writer schema `schema` through `client`.
    pub fn new(
        client: WriteClient,
        schema: Arc<prost_types::DescriptorProto>,
        streams: Streams,
    ) -> WriteService {
        WriteService {
            client,
            schema,
            streams,
            tables: HashMap::new(),
            creator: None,
            held: Vec::new(),
            waits: Waits::default(),
            max_claim_wait: MAX_CLAIM_WAIT,
        }
    }

    /// Rows whose other copy is in another worker's append not answered yet wait
    /// for it at most `max` (instead of [`MAX_CLAIM_WAIT`]) before this worker
    /// finalizes that worker's stream.
    pub fn with_max_claim_wait(mut self, max: Duration) -> WriteService {
        self.max_claim_wait = max;
        self
    }

    /// Missing tables are created by `rest` (which says whether that is allowed,
    /// and with which schema, partitioning and clustering).
    pub fn with_creator(mut self, rest: BigQueryService) -> WriteService {
        self.creator = Some(rest);
        self
    }

    /// Sends the request's rows; a missing table is created and the send tried again.
    async fn send_rows(&mut self, request: &AppendRequest) -> Result<(), Failure> {
        match self.send_rows_once(request).await {
            Err(Failure::Blocked(Code::NotFound, reason)) => {
                let Some(creator) = &self.creator else {
                    return Err(Failure::Blocked(Code::NotFound, reason));
                };
                match creator.create_table(&request.key).await {
                    Ok(()) => self.send_rows_once(request).await,
                    Err(BatchOutcome::Blocked { reason, .. }) => {
                        Err(Failure::Blocked(Code::NotFound, reason))
                    }
                    Err(BatchOutcome::All(Outcome::Retry { reason, .. })) => {
                        Err(Failure::Retry(Code::NotFound, reason))
                    }
                    Err(_) => Err(Failure::Blocked(Code::NotFound, reason)),
                }
            }
            other => other,
        }
    }

    async fn send_rows_once(&mut self, request: &AppendRequest) -> Result<(), Failure> {
        if let Streams::Committed(c) = &self.streams {
            c.recover(&self.client).await.map_err(classify)?;
        }
        let table = self.tables.entry(request.table.clone()).or_default();
        let queued: HashSet<RowId> = table
            .queue
            .iter()
            .flat_map(|p| p.ids.iter().copied())
            .collect();
        // A row can be in the batch twice: the chunk back from the file buffer and
        // again from the forwarder after a kill, both queued when the batch was
        // taken. The first copy is planned, the other is answered with it.
        let mut seen = HashSet::with_capacity(request.rows.len());
        let mut fresh = Vec::new();
        for (id, bytes) in &request.rows {
            let known = !seen.insert(*id)
                || table.landed.contains(id)
                || table.rejected.contains_key(id)
                || queued.contains(id)
                || matches!(&self.streams, Streams::Committed(c) if c.journal().is_written(&request.table, id.0, id.1));
            if !known {
                fresh.push((*id, bytes.clone()));
            }
        }
        self.held.clear();
        self.waits.begin();
        let (mut rotations, mut took_over) = (0, false);
        loop {
            let mut back = Vec::new();
            if !fresh.is_empty() {
                if self.tables[&request.table].stream.is_none() {
                    let active = self.open_stream(&request.table).await?;
                    self.tables.get_mut(&request.table).expect("table").stream = Some(active);
                }
                back = self.plan(&request.table, std::mem::take(&mut fresh))?;
            }
            let again = if back.is_empty() {
                self.flush(&request.table).await?
            } else {
                let mut rest = self.replace_stream(&request.table, None).await?;
                rest.extend(back);
                Some(rest)
            };
            match again {
                None if !self.held.is_empty() => {
                    let overdue = self.waits.overdue(&request.table, self.max_claim_wait);
                    if overdue.is_empty() || took_over {
                        return Err(Failure::Retry(
                            Code::Aborted,
                            format!(
                                "{} rows came twice (a chunk sent again) and their other copy is in an append of another worker not answered yet; waiting for it",
                                self.held.len()
                            ),
                        ));
                    }
                    for o in overdue {
                        self.take_over(&request.table, o).await?;
                    }
                    took_over = true;
                    fresh = std::mem::take(&mut self.held);
                    self.waits.begin();
                }
                None => {
                    self.waits.overdue(&request.table, self.max_claim_wait);
                    return Ok(());
                }
                Some(again) if rotations < 2 => {
                    rotations += 1;
                    fresh = again;
                    if let Streams::Committed(c) = &self.streams {
                        let j = c.journal();
                        fresh.retain(|(id, _)| !j.is_written(&request.table, id.0, id.1));
                    }
                }
                Some(_) => {
                    return Err(Failure::Retry(
                        Code::Unavailable,
                        "the write stream was replaced twice in one send".into(),
                    ));
                }
            }
        }
    }

    async fn open_stream(&mut self, table: &str) -> Result<Active, Failure> {
        match &self.streams {
            Streams::Default => Ok(Active {
                sid: 0,
                name: format!("{table}/streams/_default"),
                next: 0,
                appender: None,
            }),
            Streams::Committed(c) => {
                let name = self
                    .client
                    .create_committed(table)
                    .await
                    .map_err(classify)?;
                let sid = c
                    .journal()
                    .new_stream(table, &name)
                    .map_err(journal_failure)?;
                tracing::info!(stream = %name, "opened a committed write stream");
                Ok(Active {
                    sid,
                    name,
                    next: 0,
                    appender: None,
                })
            }
        }
    }

    /// Plans `rows` as appends at the end of the table's stream, recorded in the
    /// journal (committed streams) before any is sent. With committed streams, the
    /// journal stays locked from the check of each row to the record of its append,
    /// so that of two copies of a row at two workers only one is planned: rows
    /// known written by now are left out (they are reported delivered), and so are
    /// rows in another worker's append not answered yet (kept in `held`).
    ///
    /// Returns the rows when the stream was finalized by another worker (nothing is
    /// planned on it then: the stream is to be replaced).
    fn plan(
        &mut self,
        table_name: &str,
        rows: Vec<(RowId, Bytes)>,
    ) -> Result<Vec<(RowId, Bytes)>, Failure> {
        let table = self.tables.get_mut(table_name).expect("table");
        let active = table.stream.as_mut().expect("stream");
        let mut journal = match &self.streams {
            Streams::Committed(c) => Some(c.journal()),
            Streams::Default => None,
        };
        if let Some(j) = &journal
            && !matches!(j.stream_state(active.sid), StreamState::Open(_))
        {
            return Ok(rows);
        }
        let rows: Vec<(RowId, Bytes)> = match &journal {
            Some(j) => {
                let mut free = Vec::with_capacity(rows.len());
                for (id, row) in rows {
                    if j.is_written(table_name, id.0, id.1) {
                        continue;
                    }
                    match j.claimant(table_name, id.0, id.1, Some(active.sid)) {
                        Some(sid) => {
                            self.waits.held_by(sid);
                            self.held.push((id, row));
                        }
                        None => free.push((id, row)),
                    }
                }
                free
            }
            None => rows,
        };
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let committed = journal.is_some();
        let mut planned = Vec::new();
        let mut current = Planned {
            offset: None,
            ids: Vec::new(),
            rows: Vec::new(),
        };
        let mut bytes = 0;
        for (id, row) in rows {
            if !current.rows.is_empty() && bytes + row.len() + 8 > MAX_APPEND_BYTES {
                planned.push(std::mem::replace(
                    &mut current,
                    Planned {
                        offset: None,
                        ids: Vec::new(),
                        rows: Vec::new(),
                    },
                ));
                bytes = 0;
            }
            bytes += row.len() + 8;
            current.ids.push(id);
            current.rows.push(row);
        }
        planned.push(current);
        let mut records = Vec::new();
        for p in &mut planned {
            if committed {
                p.offset = Some(active.next);
                records.push((
                    active.next,
                    p.rows.len() as u32,
                    runs(p.ids.iter().copied()),
                ));
                active.next += p.rows.len() as i64;
            }
        }
        if let Some(j) = journal.as_mut() {
            j.plan(active.sid, &records).map_err(journal_failure)?;
        }
        table.queue.extend(planned);
        Ok(Vec::new())
    }

    /// Sends the table's queued appends in order. `Some(rows)`: the stream was
    /// replaced, and these rows are to be planned on the new one.
    async fn flush(&mut self, table_name: &str) -> Result<Option<Vec<(RowId, Bytes)>>, Failure> {
        let schema = self.schema.clone();
        loop {
            let table = self.tables.get_mut(table_name).expect("table");
            let Some(front) = table.queue.front() else {
                return Ok(None);
            };
            let active = table.stream.as_mut().expect("stream");
            if let Streams::Committed(c) = &self.streams
                && !matches!(c.journal().stream_state(active.sid), StreamState::Open(_))
            {
                return self.replace_stream(table_name, None).await.map(Some);
            }
            if active.appender.is_none() {
                active.appender = Some(self.client.open(&active.name).await.map_err(classify)?);
            }
            let appender = active.appender.as_mut().expect("appender");
            let answer = appender
                .append(&schema, front.offset, front.rows.clone())
                .await;
            let (sid, offset) = (active.sid, front.offset);
            match answer {
                Err(status) => {
                    active.appender = None;
                    return Err(classify(status));
                }
                Ok(Appended::Ok) => self.landed(table_name, sid),
                Ok(Appended::Refused {
                    code: Code::AlreadyExists,
                    ..
                }) if offset.is_some() => self.landed(table_name, sid),
                Ok(Appended::Refused {
                    row_errors,
                    message,
                    ..
                }) if !row_errors.is_empty() => {
                    let rows = self.refused_rows(table_name, &row_errors, &message);
                    let table = self.tables.get_mut(table_name).expect("table");
                    if let Some(active) = table.stream.as_mut() {
                        active.next = offset.unwrap_or(0);
                    }
                    let back = self.plan(table_name, rows)?;
                    if !back.is_empty() {
                        let mut rest = self.replace_stream(table_name, None).await?;
                        rest.extend(back);
                        return Ok(Some(rest));
                    }
                }
                Ok(Appended::Refused { code, message, .. })
                    if offset.is_some() && stream_gone(code, &message) =>
                {
                    return self
                        .replace_stream(table_name, Some((code, &message)))
                        .await
                        .map(Some);
                }
                Ok(Appended::Refused { code, message, .. }) => {
                    return Err(classify(Status::new(code, message)));
                }
            }
        }
    }
}

/// The API's name of a table: `projects/P/datasets/D/tables/T`.
pub fn table_path(key: &TableKey) -> String {
    format!(
        "projects/{}/datasets/{}/tables/{}",
        key.project, key.dataset, key.table
    )
}
