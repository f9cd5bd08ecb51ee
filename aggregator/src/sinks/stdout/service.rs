//! Writes a batch of lines (a piece of at most [`PIECE`](super::sink::PIECE) bytes
//! and one line) to standard output through the [`Writer`], and says which lines are
//! out when a write stops part way.
//!
//! A write that failed is tried again from the byte where it stopped: the same piece
//! when none of its lines was out yet, else a new piece of the lines not out whose
//! first line starts where the write stopped (so no line is written twice, and no
//! half line). When the retries for a line cut part way run out, the next piece
//! starts with a newline, so that one line is cut, not two run together.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use nagare_core::shutdown::Shutdown;
use nagare_core::sink::{BatchOutcome, Item, Outcome, Sent, Service, Ticket};

use super::retry::{Failure, classify};
use super::writer::{Writer, Written};

/// Lines to write, and how far their write got.
#[derive(Debug)]
pub struct Piece {
    bytes: Vec<u8>,
    /// Where each item's line ends in `bytes`.
    ends: Vec<usize>,
    /// Each item's events.
    tickets: Vec<Ticket>,
    /// Bytes out (or skipped: written by an earlier piece).
    at: usize,
}

/// Writes pieces to the output.
#[derive(Debug)]
pub struct StdoutService<W> {
    writer: Writer<W>,
    /// The line cut part way by the last failed write: its events and the bytes of
    /// it out.
    cut: Option<(Ticket, usize)>,
    /// Whether the output ends in the middle of a line.
    mid_line: bool,
    /// Where the error of a closed output is left for the sink to return.
    closed: Arc<Mutex<Option<io::Error>>>,
    /// Cancelled when the output is closed: the kit's workers stop.
    halt: Shutdown,
}

impl<W: Write + Send + 'static> StdoutService<W> {
    /// A service writing to `out`; a closed output leaves its error in `closed` and
    /// cancels `halt`.
    pub fn new(out: W, closed: Arc<Mutex<Option<io::Error>>>, halt: Shutdown) -> Self {
        Self {
            writer: Writer::new(out),
            cut: None,
            mid_line: false,
            closed,
            halt,
        }
    }
}

impl<W: Write + Send + 'static> Service<()> for StdoutService<W> {
    type Request = Piece;

    fn build(&mut self, _: &(), items: &mut [Item<()>]) -> Piece {
        let mut bytes = Vec::with_capacity(items.iter().map(|i| i.bytes.len()).sum::<usize>() + 1);
        let mut at = 0;
        match self.cut.take() {
            // The rest of the line the last write cut.
            Some((ticket, out)) if items.first().is_some_and(|i| i.ticket == ticket) => at = out,
            _ if self.mid_line => bytes.push(b'\n'),
            _ => {}
        }
        let mut ends = Vec::with_capacity(items.len());
        for item in items.iter() {
            bytes.extend_from_slice(&item.bytes);
            ends.push(bytes.len());
        }
        Piece {
            bytes,
            ends,
            tickets: items.iter().map(|i| i.ticket).collect(),
            at,
        }
    }

    async fn send(&mut self, piece: &mut Piece) -> Sent {
        let bytes = std::mem::take(&mut piece.bytes);
        let from = piece.at;
        let Written {
            piece: bytes,
            at,
            result,
        } = self.writer.write(bytes, from).await;
        piece.bytes = bytes;
        piece.at = at;
        if at > from {
            self.mid_line = piece.bytes[at - 1] != b'\n';
        }
        let destination = "standard output".to_string();
        let error = match result {
            Ok(()) => {
                self.cut = None;
                return Sent {
                    destination,
                    outcome: BatchOutcome::All(Outcome::Delivered),
                };
            }
            Err(e) => e,
        };
        let reason = match classify(&error) {
            Failure::Retry(reason) => reason,
            Failure::Closed => {
                *self.closed.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
                self.halt.cancel();
                // The kit sees the halt first and stops, leaving the leases in the
                // buffer.
                return std::future::pending().await;
            }
        };
        let retry = Outcome::Retry {
            status: None,
            reason,
        };
        // The first line not all out.
        let first = piece.ends.iter().position(|&end| end > at);
        let outcome = match first {
            // Only the flush failed, or no line is all out yet: the same piece again,
            // from where it stopped.
            None | Some(0) => BatchOutcome::All(retry),
            Some(first) => {
                let start = piece.ends[first - 1];
                if at > start {
                    self.cut = Some((piece.tickets[first], at - start));
                }
                let outcomes = (0..piece.ends.len())
                    .map(|i| {
                        if i < first {
                            Outcome::Delivered
                        } else {
                            retry.clone()
                        }
                    })
                    .collect();
                BatchOutcome::Items(outcomes)
            }
        };
        Sent {
            destination,
            outcome,
        }
    }
}
