//! What answers do to a worker's queue: an append landed, rows refused, a stream
//! that takes no more appends replaced, and another worker's stream finalized when
//! its append has held rows of this worker too long.

use bytes::Bytes;
use tonic::Code;

use super::super::claims::Overdue;
use super::super::journal::StreamState;
use super::super::retry::{Failure, classify};
use super::{Planned, RowId, Streams, WriteService};

impl WriteService {
    /// The first queued append landed.
    pub(super) fn landed(&mut self, table_name: &str, sid: u32) {
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
    pub(super) fn refused_rows(
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
    /// returns the rows of the queue that did not land. `refusal`: the answer that
    /// says the stream takes no more appends; none: the journal says another worker
    /// finalized it.
    pub(super) async fn replace_stream(
        &mut self,
        table_name: &str,
        refusal: Option<(Code, &str)>,
    ) -> Result<Vec<(RowId, Bytes)>, Failure> {
        let table = self.tables.get_mut(table_name).expect("table");
        let Some(active) = table.stream.take() else {
            return Ok(Vec::new());
        };
        match refusal {
            Some((code, message)) => {
                tracing::warn!(stream = %active.name, code = ?code, reason = %message, "the write stream cannot take more appends; finalizing it and going on with a new one")
            }
            None => {
                tracing::info!(stream = %active.name, queued = table.queue.len(), "another worker finalized this worker's write stream (rows of its appends were waited for too long); its appends are answered by the stream's length, and the rest go on a new stream")
            }
        }
        let queue: Vec<Planned> = table.queue.drain(..).collect();
        let Streams::Committed(c) = &self.streams else {
            return Ok(queue
                .into_iter()
                .flat_map(|p| p.ids.into_iter().zip(p.rows))
                .collect());
        };
        let length = match c.finalize(&self.client, active.sid).await {
            Ok(length) => length,
            Err(s) => {
                table.stream = Some(active);
                table.queue.extend(queue);
                return Err(classify(s));
            }
        };
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

impl WriteService {
    /// Finalizes the stream of another worker whose append has held rows of this
    /// worker for too long: its length answers the append, which releases them.
    pub(super) async fn take_over(
        &mut self,
        table_name: &str,
        overdue: Overdue,
    ) -> Result<(), Failure> {
        let Streams::Committed(c) = &self.streams else {
            return Ok(());
        };
        let StreamState::Open(name) = c.journal().stream_state(overdue.sid) else {
            return Ok(());
        };
        tracing::warn!(
            table = %table_name,
            stream = %name,
            waited = ?overdue.waited,
            rows = overdue.rows,
            "rows that came twice have waited this long for the answer to another worker's append holding their other copy (that worker gave up on it and sends nothing more to the table); finalizing that worker's stream to learn whether the append landed, and delivering them from here"
        );
        let length = c
            .finalize(&self.client, overdue.sid)
            .await
            .map_err(classify)?;
        tracing::info!(stream = %name, length = ?length, "finalized another worker's write stream; the appends below its length landed");
        Ok(())
    }
}
