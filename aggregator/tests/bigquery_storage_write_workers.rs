//! Storage Write with committed streams and several workers, against
//! local-bigquery's gRPC port: rows that reached the sink twice (a chunk back from
//! the file buffer and again from the forwarder) land once, twice in one batch or
//! at two workers, also
//! when the append holding their other copy is abandoned by its worker, whose
//! stream the other worker then finalizes; and a worker whose stream was finalized
//! behind the journal's back goes on with a new one, landing nothing twice.

use std::sync::Arc;
use std::time::Duration;

use nagare_aggregator::sinks::bigquery::storage_write::client::WriteClient;
use nagare_aggregator::sinks::bigquery::storage_write::descriptor::descriptor;
use nagare_aggregator::sinks::bigquery::storage_write::journal::Journal;
use nagare_aggregator::sinks::bigquery::storage_write::recovery::Committed;
use nagare_aggregator::sinks::bigquery::storage_write::service::{Streams, WriteService};
use nagare_core::sink::{BatchOutcome, Outcome};
use nagare_testkit::{LocalBigQuery, StallProxy, capture_logs, wait_until};
use tracing::Level;

mod bq_write_support;

use bq_write_support::*;

#[tokio::test]
async fn rows_that_came_twice_to_two_workers_at_once_land_once() {
    let bq = LocalBigQuery::shared();
    let t = table(bq);
    let dir = tempfile::tempdir().unwrap();
    let committed = Committed::new(Journal::open(&dir.path().join("j")).unwrap());
    let mut one = service(bq, &t, Streams::Committed(committed.clone()));
    let mut two = service(bq, &t, Streams::Committed(committed));
    // The same chunk twice (the forwarder sent again a chunk the aggregator had
    // buffered just before it was killed), at two workers, each with its own
    // stream, at the same moment.
    let batch = items(&t, &seqs(10));
    let (a, b) = tokio::join!(send(&mut one, &t, &batch), send(&mut two, &t, &batch));
    assert!(delivered(&a, 10) || delivered(&b, 10), "{a:?} {b:?}");
    for outcome in [&a, &b] {
        assert!(
            delivered(outcome, 10)
                || matches!(outcome, BatchOutcome::All(Outcome::Retry { reason, .. }) if reason.contains("came twice")),
            "the other copy waits for the first's answer: {outcome:?}"
        );
    }
    assert_eq!(count(bq, &t.dataset), (10, 10));
    // Sent again, as the driver does, the copy that waited finds its rows written.
    for s in [&mut one, &mut two] {
        let outcome = send(s, &t, &batch).await;
        assert!(delivered(&outcome, 10), "{outcome:?}");
    }
    assert_eq!(count(bq, &t.dataset), (10, 10));
}

/// Both copies of a chunk that came twice in one batch of one worker (the chunk back
/// from the file buffer and again from the forwarder after a kill, both queued when
/// the worker took its batch): each row lands once, and both copies are delivered.
/// With the table's `_default` stream too, where a row in a batch twice is sent once.
#[tokio::test]
async fn a_chunk_twice_in_one_batch_lands_once() {
    let bq = LocalBigQuery::shared();
    for committed in [true, false] {
        let t = table(bq);
        let dir = tempfile::tempdir().unwrap();
        let streams = if committed {
            Streams::Committed(Committed::new(
                Journal::open(&dir.path().join("j")).unwrap(),
            ))
        } else {
            Streams::Default
        };
        let mut worker = service(bq, &t, streams);
        let chunk = items(&t, &seqs(10));
        let other = items_of(&t, OTHER, &seqs_from(100, 5));
        let batch: Vec<_> = [&chunk[..], &other[..], &chunk[..]].concat();
        let outcome = send(&mut worker, &t, &batch).await;
        assert!(
            delivered(&outcome, 25),
            "committed {committed}: {outcome:?}"
        );
        assert_eq!(count(bq, &t.dataset), (15, 15), "committed {committed}");
        // The same batch again (a resend of both chunks): nothing lands twice with
        // committed streams, whose journal knows the rows.
        if committed {
            let outcome = send(&mut worker, &t, &batch).await;
            assert!(delivered(&outcome, 25), "{outcome:?}");
            assert_eq!(count(bq, &t.dataset), (15, 15));
        }
    }
}

/// A worker's append whose answer was lost, and that it never sends again (its
/// driver gave up on those rows under `retry_max_times` / `retry_timeout`, and it
/// gets no more rows of the table), does not hold the other copy of its rows for
/// ever: the worker that has that copy waits (`ABORTED`, "came twice") until the
/// bound has passed, then finalizes the first worker's stream, whose length says
/// whether the append landed, and delivers the rows. Each row is in the table once,
/// whether the lost append had landed (its answer lost) or not (its request lost);
/// and the first worker, sending its rows again later, finds its stream finalized
/// and lands nothing twice either, then goes on with a new stream.
#[tokio::test]
async fn rows_whose_other_copy_is_in_an_abandoned_append_land_once_after_its_stream_is_finalized() {
    const WAIT: Duration = Duration::from_secs(1);
    let bq = LocalBigQuery::shared();
    for landed in [true, false] {
        let t = table(bq);
        let dir = tempfile::tempdir().unwrap();
        let committed = Committed::new(Journal::open(&dir.path().join("j")).unwrap());
        // The first worker reaches BigQuery through a relay that can stall, with a
        // short request timeout.
        let relay = StallProxy::start(bq.grpc_url());
        let schema = Arc::new(descriptor(t.encoder.schema()).unwrap());
        let stalled = WriteClient::new(&relay.url(), None, Duration::from_secs(2)).unwrap();
        let mut one = WriteService::new(stalled, schema, Streams::Committed(committed.clone()));
        let mut two = service(bq, &t, Streams::Committed(committed)).with_max_claim_wait(WAIT);
        // It has a stream, and an append call open on it.
        let earlier = items_of(&t, OTHER, &seqs_from(100, 5));
        let outcome = send(&mut one, &t, &earlier).await;
        assert!(delivered(&outcome, 5), "{outcome:?}");
        // Then the answer to its append of a chunk is lost: BigQuery appends the
        // rows and the answer never comes back, or the request never arrives.
        if landed {
            relay.hold_answers();
        } else {
            relay.hold_requests();
        }
        let batch = items(&t, &seqs(10));
        let outcome = send(&mut one, &t, &batch).await;
        assert!(
            matches!(&outcome, BatchOutcome::All(Outcome::Retry { .. })),
            "landed {landed}: {outcome:?}"
        );
        let before = if landed { 15 } else { 5 };
        assert!(
            wait_until(Duration::from_secs(10), || count(bq, &t.dataset).0
                == before),
            "landed {landed}: {:?}",
            count(bq, &t.dataset)
        );
        // The same chunk from the forwarder, at the other worker: it waits for the
        // first's answer.
        let logs = capture_logs(Level::WARN);
        let outcome = send(&mut two, &t, &batch).await;
        assert!(
            matches!(&outcome, BatchOutcome::All(Outcome::Retry { reason, .. }) if reason.contains("came twice")),
            "landed {landed}: {outcome:?}"
        );
        assert_eq!(count(bq, &t.dataset).0, before);
        assert!(
            logs.matching(&["finalizing that worker's stream"])
                .is_empty()
        );
        // The first worker never sends it again. Past the bound, the second
        // finalizes its stream and delivers the rows.
        tokio::time::sleep(WAIT).await;
        let outcome = send(&mut two, &t, &batch).await;
        assert!(delivered(&outcome, 10), "landed {landed}: {outcome:?}");
        assert_eq!(count(bq, &t.dataset), (15, 15), "landed {landed}");
        assert_eq!(
            logs.matching(&["finalizing that worker's stream"]).len(),
            1,
            "{:?}",
            logs.lines()
        );
        // The network is back, and the first worker sends its rows again: its
        // queued append is answered by the stream's length, and new rows go on a
        // new stream.
        relay.cut();
        let outcome = send(&mut one, &t, &batch).await;
        assert!(delivered(&outcome, 10), "landed {landed}: {outcome:?}");
        // (The first call after the cut may find the old connection broken, a
        // retry as any broken call; tonic connects again for the next.)
        let later = items_of(&t, THIRD, &seqs_from(200, 3));
        let mut outcome = send(&mut one, &t, &later).await;
        for _ in 0..3 {
            if !matches!(&outcome, BatchOutcome::All(Outcome::Retry { reason, .. }) if reason.contains("transport error"))
            {
                break;
            }
            outcome = send(&mut one, &t, &later).await;
        }
        assert!(delivered(&outcome, 3), "landed {landed}: {outcome:?}");
        assert_eq!(count(bq, &t.dataset), (18, 18), "landed {landed}");
        // And the second, sent the chunk again, finds it written.
        let outcome = send(&mut two, &t, &batch).await;
        assert!(delivered(&outcome, 10), "landed {landed}: {outcome:?}");
        assert_eq!(count(bq, &t.dataset), (18, 18), "landed {landed}");
    }
}

/// A worker's stream finalized before the journal hears of it (another worker's
/// finalize not recorded yet, or a crash between the two): its next append is
/// refused as the stream is finalized, and finalizing it again answers the same
/// length (local-bigquery answers a second finalize with the stream's length; the
/// journal keeps the first answer it records). The rows go on a new stream, once.
#[tokio::test]
async fn an_append_refused_on_a_stream_finalized_behind_the_journals_back_lands_once_on_a_new_stream()
 {
    let bq = LocalBigQuery::shared();
    let t = table(bq);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let committed = Committed::new(Journal::open(&path).unwrap());
    let mut one = service(bq, &t, Streams::Committed(committed));
    let first = items(&t, &seqs(5));
    let outcome = send(&mut one, &t, &first).await;
    assert!(delivered(&outcome, 5), "{outcome:?}");
    // The stream's name, as the journal recorded it (`S <id> <table> <name>`).
    let text = std::fs::read_to_string(&path).unwrap();
    let name = text
        .lines()
        .find_map(|l| l.strip_prefix("S "))
        .and_then(|l| l.split(' ').nth(2))
        .expect("a stream in the journal")
        .to_string();
    assert_eq!(client(bq).finalize(&name).await.unwrap(), 5);
    let logs = capture_logs(Level::WARN);
    let next = items_of(&t, OTHER, &seqs_from(100, 5));
    let outcome = send(&mut one, &t, &next).await;
    assert!(delivered(&outcome, 5), "{outcome:?}");
    assert_eq!(count(bq, &t.dataset), (10, 10));
    assert_eq!(
        logs.matching(&["cannot take more appends"]).len(),
        1,
        "{:?}",
        logs.lines()
    );
    // Sent again, both chunks are known written.
    for batch in [&first, &next] {
        let outcome = send(&mut one, &t, batch).await;
        assert!(delivered(&outcome, 5), "{outcome:?}");
    }
    assert_eq!(count(bq, &t.dataset), (10, 10));
}
