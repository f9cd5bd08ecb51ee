//! Events to lines for the kit: an item per event, so that a write that stops part
//! way says exactly which events are out.

use nagare_core::sink::{Encoder, Event, Items};

use crate::sinks::ndjson::{Format, encode_event};

/// Encodes events as lines of standard output.
#[derive(Debug)]
pub struct StdoutEncoder {
    format: Format,
}

impl StdoutEncoder {
    /// An encoder of lines in `format`.
    pub fn new(format: Format) -> Self {
        Self { format }
    }
}

impl Encoder for StdoutEncoder {
    type Key = ();

    fn encode(&mut self, event: Event<'_>, out: &mut Items<'_, ()>) {
        let mut line = Vec::with_capacity(64 + event.record.len() * 32);
        encode_event(
            self.format,
            event.chunk.tag(),
            event.time,
            event.record,
            &mut line,
        );
        let size = line.len();
        out.push((), line, size);
    }
}
