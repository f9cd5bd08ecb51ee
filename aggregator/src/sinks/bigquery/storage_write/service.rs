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
//! its offset, with the next send of the table's rows, whatever batch they are in.
//! A row that came twice (a chunk the forwarder sent again after the aggregator had
//! buffered it) and whose other copy is in another worker's append not answered yet
//! is not planned: it waits for that answer (`ABORTED`, sent again with the backoff),
//! after which it is known written or free to plan.
//!
//! What an answer means:
//! - success, or `ALREADY_EXISTS` at our offset: the rows landed;
//! - `row_errors`: nothing of the append landed; the rows named go to the dead-letter
//!   output with BigQuery's message, the others are planned again (at the same
//!   offset, which stayed free) and sent;
//! - `OUT_OF_RANGE`, or a stream that is finalized or gone: the stream is finalized to
//!   learn its length (which appends landed), and the rest go on a new stream;
//! - `UNAVAILABLE`, `RESOURCE_EXHAUSTED`, `DEADLINE_EXCEEDED`, `INTERNAL`, `ABORTED`,
//!   broken calls: sent again with the shared backoff;
//! - `PERMISSION_DENIED`, `UNAUTHENTICATED`, a table `NOT_FOUND`, other refusals of
//!   the whole request: blocked, sent again without end with a hint, nothing
//!   dead-lettered.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use nagare_core::chunk::ChunkId;
use nagare_core::sink::{BatchOutcome, Item, Outcome, Sent, Service};
use tonic::{Code, Status};

use super::super::service::BigQueryService;
use super::super::table::{Key, TableKey};
use super::client::{Appended, Appender, WriteClient};
use super::encode::ITEM_HEADER as HEADER;
use super::journal::runs;
use super::recovery::Committed;
use super::retry::{Failure, classify, journal_failure, stream_gone};

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
    waiting: usize,
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
            waiting: 0,
        }
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
        let mut fresh = Vec::new();
        for (id, bytes) in &request.rows {
            let known = table.landed.contains(id)
                || table.rejected.contains_key(id)
                || queued.contains(id)
                || matches!(&self.streams, Streams::Committed(c) if c.journal().is_written(&request.table, id.0, id.1));
            if !known {
                fresh.push((*id, bytes.clone()));
            }
        }
        self.waiting = 0;
        let mut rotations = 0;
        loop {
            if self.tables[&request.table].stream.is_none() {
                let active = self.open_stream(&request.table).await?;
                self.tables.get_mut(&request.table).expect("table").stream = Some(active);
            }
            if !fresh.is_empty() {
                self.plan(&request.table, std::mem::take(&mut fresh))?;
            }
            match self.flush(&request.table).await? {
                None if self.waiting > 0 => {
                    return Err(Failure::Retry(
                        Code::Aborted,
                        format!(
                            "{} rows came twice (a chunk sent again) and their other copy is in an append of another worker not answered yet; waiting for it",
                            self.waiting
                        ),
                    ));
                }
                None => return Ok(()),
                Some(again) if rotations < 2 => {
                    rotations += 1;
                    fresh = again;
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
    /// rows in another worker's append not answered yet (counted in `waiting`).
    fn plan(&mut self, table_name: &str, rows: Vec<(RowId, Bytes)>) -> Result<(), Failure> {
        let table = self.tables.get_mut(table_name).expect("table");
        let active = table.stream.as_mut().expect("stream");
        let mut journal = match &self.streams {
            Streams::Committed(c) => Some(c.journal()),
            Streams::Default => None,
        };
        let rows: Vec<(RowId, Bytes)> = match &journal {
            Some(j) => rows
                .into_iter()
                .filter(|((origin, pos), _)| {
                    if j.is_written(table_name, *origin, *pos) {
                        return false;
                    }
                    let elsewhere =
                        j.claimed_elsewhere(table_name, *origin, *pos, Some(active.sid));
                    self.waiting += usize::from(elsewhere);
                    !elsewhere
                })
                .collect(),
            None => rows,
        };
        if rows.is_empty() {
            return Ok(());
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
        Ok(())
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
                    self.plan(table_name, rows)?;
                }
                Ok(Appended::Refused { code, message, .. })
                    if offset.is_some() && stream_gone(code, &message) =>
                {
                    return self
                        .replace_stream(table_name, code, &message)
                        .await
                        .map(Some);
                }
                Ok(Appended::Refused { code, message, .. }) => {
                    return Err(classify(Status::new(code, message)));
                }
            }
        }
    }

    /// The first queued append landed.
    fn landed(&mut self, table_name: &str, sid: u32) {
        let table = self.tables.get_mut(table_name).expect("table");
        let Some(p) = table.queue.pop_front() else {
            return;
        };
        if let (Streams::Committed(c), Some(offset)) = (&self.streams, p.offset) {
            c.journal().landed(sid, offset);
        }
        table.landed.extend(p.ids);
    }

    /// The first queued append was refused for the rows of `row_errors`: those are
    /// rejected; returns the rest of the queue's rows, all to be planned again.
    fn refused_rows(
        &mut self,
        table_name: &str,
        row_errors: &[(usize, String)],
        message: &str,
    ) -> Vec<(RowId, Bytes)> {
        let table = self.tables.get_mut(table_name).expect("table");
        let sid = table.stream.as_ref().map_or(0, |s| s.sid);
        let mut rest = Vec::new();
        for (i, p) in table.queue.drain(..).enumerate() {
            if let (Streams::Committed(c), Some(offset)) = (&self.streams, p.offset) {
                c.journal().refused(sid, offset);
            }
            for (j, (id, row)) in p.ids.into_iter().zip(p.rows).enumerate() {
                match row_errors.iter().find(|(index, _)| i == 0 && *index == j) {
                    Some((_, why)) => {
                        let why = if why.is_empty() { message } else { why };
                        table
                            .rejected
                            .insert(id, format!("BigQuery refused the row: {why}"));
                    }
                    None => rest.push((id, row)),
                }
            }
        }
        rest
    }

    /// Finalizes the table's stream (learning which appends landed) and forgets it;
    /// returns the rows of the queue that did not land.
    async fn replace_stream(
        &mut self,
        table_name: &str,
        code: Code,
        message: &str,
    ) -> Result<Vec<(RowId, Bytes)>, Failure> {
        let table = self.tables.get_mut(table_name).expect("table");
        let Some(active) = table.stream.take() else {
            return Ok(Vec::new());
        };
        tracing::warn!(stream = %active.name, code = ?code, reason = %message, "the write stream cannot take more appends; finalizing it and going on with a new one");
        let queue: Vec<Planned> = table.queue.drain(..).collect();
        let Streams::Committed(c) = &self.streams else {
            return Ok(queue
                .into_iter()
                .flat_map(|p| p.ids.into_iter().zip(p.rows))
                .collect());
        };
        let length = match self.client.finalize(&active.name).await {
            Ok(length) => Some(length),
            Err(s) if stream_gone(s.code(), s.message()) => None,
            Err(s) => {
                table.stream = Some(active);
                table.queue.extend(queue);
                return Err(classify(s));
            }
        };
        c.journal()
            .finalized(active.sid, length)
            .map_err(journal_failure)?;
        let mut rest = Vec::new();
        for p in queue {
            if length.is_some_and(|l| p.offset.is_some_and(|o| o < l)) {
                table.landed.extend(p.ids);
            } else {
                rest.extend(p.ids.into_iter().zip(p.rows));
            }
        }
        Ok(rest)
    }
}

impl Service<Key> for WriteService {
    type Request = AppendRequest;

    fn build(&mut self, key: &Key, items: &mut [Item<Key>]) -> AppendRequest {
        // One buffer for the batch's rows, which the appends share.
        let mut all = BytesMut::with_capacity(items.iter().map(|i| i.bytes.len()).sum());
        let mut spans = Vec::with_capacity(items.len());
        for item in items {
            let (head, row) = item.bytes.split_at(HEADER.min(item.bytes.len()));
            let mut origin = [0u8; 16];
            origin.copy_from_slice(&head[..16]);
            let pos = u32::from_le_bytes(head[16..20].try_into().unwrap_or_default());
            let start = all.len();
            all.extend_from_slice(row);
            spans.push(((ChunkId(origin), pos), start..all.len()));
        }
        let all = all.freeze();
        AppendRequest {
            key: key.clone(),
            table: table_path(key),
            rows: spans
                .into_iter()
                .map(|(id, span)| (id, all.slice(span)))
                .collect(),
        }
    }

    async fn send(&mut self, request: &mut AppendRequest) -> Sent {
        let failure = self.send_rows(request).await.err();
        let destination = request.key.to_string();
        let table = self.tables.entry(request.table.clone()).or_default();
        let committed = match &self.streams {
            Streams::Committed(c) => Some(c.clone()),
            Streams::Default => None,
        };
        let mut outcomes = Vec::with_capacity(request.rows.len());
        let mut decided = 0;
        for (id, _) in &request.rows {
            let written = committed
                .as_ref()
                .is_some_and(|c| c.journal().is_written(&request.table, id.0, id.1));
            let outcome = if table.landed.remove(id) || written {
                Outcome::Delivered
            } else if let Some(reason) = table.rejected.remove(id) {
                Outcome::Rejected {
                    status: None,
                    reason,
                    error: None,
                }
            } else {
                outcomes.push(None);
                continue;
            };
            decided += 1;
            outcomes.push(Some(outcome));
        }
        if table.landed.len() + table.rejected.len() > MAX_UNREPORTED {
            table.landed.clear();
            table.rejected.clear();
        }
        let (code, reason, blocked) = match failure {
            None => (Code::Ok, String::new(), false),
            Some(Failure::Retry(code, reason)) => (code, reason, false),
            Some(Failure::Blocked(code, reason)) => (code, reason, true),
        };
        let status = Some(code as u16);
        let outcome = if decided == 0 && blocked {
            BatchOutcome::Blocked { status, reason }
        } else if decided == 0 && !request.rows.is_empty() {
            BatchOutcome::All(Outcome::Retry { status, reason })
        } else {
            let retry = Outcome::Retry { status, reason };
            BatchOutcome::Items(
                outcomes
                    .into_iter()
                    .map(|o| o.unwrap_or_else(|| retry.clone()))
                    .collect(),
            )
        };
        Sent {
            destination,
            outcome,
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
