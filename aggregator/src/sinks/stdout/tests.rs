//! The stdout service's pieces, against an output in memory that stops taking bytes
//! part way (as a full disk under a redirect does; no test can fill one here without
//! mounting a file system). The sink on real pipes is tested in `tests/stdout_pipe.rs`
//! and, with failing outputs, in `aggregator/tests/stdout_writes.rs`.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use nagare_core::EventTime;
use nagare_core::shutdown::Shutdown;
use nagare_core::sink::{BatchOutcome, Item, Outcome, Service, Ticket};

use super::service::StdoutService;

/// Takes `room` more bytes, then fails with "no space" until given more room.
#[derive(Clone, Default)]
struct Tight {
    got: Arc<Mutex<Vec<u8>>>,
    room: Arc<Mutex<usize>>,
}

impl Write for Tight {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut room = self.room.lock().unwrap();
        if *room == 0 {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        let n = buf.len().min(*room);
        *room -= n;
        self.got.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn line(position: u32, text: &str) -> Item<()> {
    Item {
        key: (),
        bytes: format!("{text}\n").into_bytes(),
        size: text.len() + 1,
        time: EventTime::new(0, 0),
        ticket: Ticket {
            slot: 0,
            position,
            events: 1,
        },
    }
}

#[tokio::test]
async fn a_write_stopped_mid_line_resumes_at_that_byte_and_a_given_up_line_is_ended() {
    let out = Tight::default();
    *out.room.lock().unwrap() = 6;
    let mut service = StdoutService::new(out.clone(), Arc::default(), Shutdown::new());
    let mut items = vec![line(0, "aaaa"), line(1, "bbbb"), line(2, "cccc")];
    let mut piece = service.build(&(), &mut items);
    let sent = service.send(&mut piece).await;
    // "aaaa\n" and one byte of "bbbb\n" out: the first line is delivered, the
    // others go again.
    let BatchOutcome::Items(outcomes) = sent.outcome else {
        panic!("{:?}", sent.outcome);
    };
    assert_eq!(outcomes[0], Outcome::Delivered);
    assert!(
        matches!(&outcomes[1], Outcome::Retry { reason, .. } if reason.starts_with("cannot write to standard output: "))
    );
    // The lines not out, again: the cut one from its second byte.
    *out.room.lock().unwrap() = 100;
    let mut piece = service.build(&(), &mut items[1..]);
    let sent = service.send(&mut piece).await;
    assert_eq!(sent.outcome, BatchOutcome::All(Outcome::Delivered));
    assert_eq!(&*out.got.lock().unwrap(), b"aaaa\nbbbb\ncccc\n");

    // Cut again, and given up on (the kit sends other lines next): the cut line is
    // ended before them.
    *out.room.lock().unwrap() = 2;
    let mut piece = service.build(&(), &mut [line(3, "dddd")]);
    let sent = service.send(&mut piece).await;
    assert!(matches!(
        sent.outcome,
        BatchOutcome::All(Outcome::Retry { .. })
    ));
    *out.room.lock().unwrap() = 100;
    let mut piece = service.build(&(), &mut [line(4, "eeee")]);
    service.send(&mut piece).await;
    assert_eq!(&*out.got.lock().unwrap(), b"aaaa\nbbbb\ncccc\ndd\neeee\n");
}
