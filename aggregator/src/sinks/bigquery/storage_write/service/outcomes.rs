//! The kit's side of the service: a batch of items as one table's rows, and each
//! row's outcome once the rows are sent.

use bytes::BytesMut;
use nagare_core::chunk::ChunkId;
use nagare_core::sink::{BatchOutcome, Item, Outcome, Sent, Service};
use tonic::Code;

use super::super::super::table::Key;
use super::super::encode::ITEM_HEADER as HEADER;
use super::super::retry::Failure;
use super::{AppendRequest, MAX_UNREPORTED, Streams, WriteService, table_path};

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
            // Looked up, not taken: a row twice in the batch has one answer for both.
            let outcome = if table.landed.contains(id) || written {
                Outcome::Delivered
            } else if let Some(reason) = table.rejected.get(id) {
                Outcome::Rejected {
                    status: None,
                    reason: reason.clone(),
                    error: None,
                }
            } else {
                outcomes.push(None);
                continue;
            };
            decided += 1;
            outcomes.push(Some(outcome));
        }
        for (id, _) in &request.rows {
            table.landed.remove(id);
            table.rejected.remove(id);
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
