//! The router's tests: routing by tag through filters, the error route, and lanes.

use super::*;
use crate::buffer::BufferConfig;
use crate::chunk::ChunkBuilder;
use crate::receipt::{Delivery, Receipt};
use crate::time::EventTime;
use crate::value::{Map, Value};

struct AddField;
impl Filter for AddField {
    fn filter(&self, event: &mut Event) -> Verdict {
        event.record.insert("seen", true);
        if event.record.get("drop").is_some() {
            Verdict::Drop
        } else if event.record.get("bad").is_some() {
            Verdict::Reject("field `bad` is present".into())
        } else {
            Verdict::Keep
        }
    }
}

fn chunk(tag: &str, records: &[Map]) -> Chunk {
    let mut b = ChunkBuilder::new(Tag::new(tag));
    for r in records {
        b.push(EventTime::new(1, 0), r);
    }
    b.finish().unwrap()
}

/// A router through [`AddField`] to a sink `all` (`**`) and a sink `errors`
/// (`@ERROR.**`), and the two sinks' buffers.
fn error_router() -> (Router, Buffer, Buffer) {
    let all = Buffer::new("all", &BufferConfig::default());
    let errors = Buffer::new("errors", &BufferConfig::default());
    let mut rb = RouterBuilder::new();
    rb.filter("check", TagPattern::new("**").unwrap(), Arc::new(AddField));
    rb.sink("all", TagPattern::new("**").unwrap(), all.clone());
    rb.sink(
        "errors",
        TagPattern::new("@ERROR.**").unwrap(),
        errors.clone(),
    );
    (rb.build(), all, errors)
}

#[tokio::test]
async fn routes_to_every_matching_sink_through_filters() {
    let a = Buffer::new("a", &BufferConfig::default());
    let b = Buffer::new("b", &BufferConfig::default());
    let mut rb = RouterBuilder::new();
    rb.filter(
        "mark",
        TagPattern::new("app.**").unwrap(),
        Arc::new(AddField),
    );
    rb.sink("a", TagPattern::new("app.*").unwrap(), a.clone());
    rb.sink("b", TagPattern::new("**").unwrap(), b.clone());
    let router = rb.build();

    let keep: Map = [("msg", "hi")].into_iter().collect();
    let drop: Map = [("drop", "yes")].into_iter().collect();
    let (receipt, rx) = Receipt::channel();
    router
        .emit(chunk("app.web", &[keep, drop]).with_receipt(receipt))
        .await
        .unwrap();
    router
        .emit(chunk("sys.kernel", &[Map::new()]))
        .await
        .unwrap();

    let got = a.pop().await.unwrap();
    assert_eq!(got.chunk().count(), 1, "the filter dropped one event");
    let (_, rec) = got.chunk().events().next().unwrap().unwrap();
    assert_eq!(rec.get("seen"), Some(&Value::Bool(true)));
    assert_eq!(
        a.stats().queued_chunks,
        0,
        "sys.kernel does not match app.*"
    );
    assert_eq!(b.stats().queued_chunks, 2);
    got.delivered();
    b.pop().await.unwrap().delivered();
    assert_eq!(
        rx.await.unwrap(),
        Delivery::Delivered,
        "both sinks confirmed"
    );
    let (filters, sinks) = router.describe("app.web");
    assert_eq!(
        (filters, sinks),
        (
            vec!["mark".to_string()],
            vec!["a".to_string(), "b".to_string()]
        )
    );
}

#[tokio::test]
async fn rejected_events_go_to_error_sinks_only() {
    let (router, all, errors) = error_router();
    let good: Map = [("msg", "ok")].into_iter().collect();
    let bad: Map = [("bad", "yes")].into_iter().collect();
    router.emit(chunk("app", &[good, bad])).await.unwrap();
    let kept = all.pop().await.unwrap();
    assert_eq!(kept.chunk().count(), 1);
    assert_eq!(
        all.stats().queued_chunks,
        0,
        "`**` does not receive rejected events"
    );
    let rejected = errors.pop().await.unwrap();
    assert_eq!(rejected.chunk().tag().as_str(), "@ERROR.app");
    let (_, rec) = rejected.chunk().events().next().unwrap().unwrap();
    assert_eq!(
        rec.get("error").and_then(Value::as_str),
        Some("field `bad` is present")
    );
    assert_eq!(router.route(&Tag::new("app")).rejections(), 1);
    assert_eq!(router.describe("@ERROR.app").1, vec!["errors"]);
}

#[tokio::test]
async fn unmatched_tags_are_dropped_and_reported() {
    let router = RouterBuilder::new().build();
    let (receipt, rx) = Receipt::channel();
    router
        .emit(chunk("x", &[Map::new()]).with_receipt(receipt))
        .await
        .unwrap();
    assert_eq!(rx.await.unwrap(), Delivery::Dropped);
}

#[tokio::test]
async fn a_send_delivers_rejected_events_when_none_was_kept() {
    let (router, all, errors) = error_router();
    let mut lane = router.lane(&Tag::new("app"));
    let bad: Map = [("bad", "yes")].into_iter().collect();
    lane.push(EventTime::new(1, 0), bad.clone());
    lane.push(EventTime::new(2, 0), bad);
    assert!(lane.is_empty(), "nothing was kept");
    lane.send().await.unwrap();
    let rejected = errors.pop().await.unwrap();
    assert_eq!(rejected.chunk().tag().as_str(), "@ERROR.app");
    assert_eq!(rejected.chunk().count(), 2);
    assert_eq!(all.stats().queued_chunks, 0);
}

#[tokio::test]
async fn a_dropped_lane_hands_its_rejected_events_to_the_error_route() {
    let (router, all, errors) = error_router();
    let mut lane = router.lane(&Tag::new("app"));
    lane.push(EventTime::new(1, 0), [("bad", "yes")].into_iter().collect());
    lane.push(EventTime::new(2, 0), [("msg", "ok")].into_iter().collect());
    // The source goes away (a request cancelled, a task ending on an error) without
    // sending.
    drop(lane);
    let rejected = tokio::time::timeout(std::time::Duration::from_secs(10), errors.pop())
        .await
        .expect("the rejected event reached the error route")
        .unwrap();
    let (_, rec) = rejected.chunk().events().next().unwrap().unwrap();
    assert_eq!(
        rec.get("error").and_then(Value::as_str),
        Some("field `bad` is present")
    );
    assert_eq!(
        all.stats().queued_chunks,
        0,
        "kept events are the source's to send"
    );
}

#[tokio::test]
async fn a_lane_counts_rejected_events_in_its_size() {
    let (router, _, errors) = error_router();
    let mut lane = router.lane(&Tag::new("app"));
    assert_eq!(lane.byte_size(), 0);
    lane.push(EventTime::new(1, 0), [("bad", "yes")].into_iter().collect());
    assert!(lane.is_empty());
    assert!(
        lane.byte_size() > 0,
        "a source cutting chunks by size sees them"
    );
    lane.send().await.unwrap();
    assert_eq!(lane.byte_size(), 0);
    assert_eq!(errors.stats().queued_chunks, 1);
}

#[tokio::test]
async fn encoded_entries_pass_the_filters() {
    let (router, all, _) = error_router();
    let mut lane = router.lane(&Tag::new("app"));
    let entry = chunk("app", &[[("msg", "hi")].into_iter().collect()]);
    lane.push_encoded(entry.entries());
    lane.send().await.unwrap();
    let got = all.pop().await.unwrap();
    let (_, rec) = got.chunk().events().next().unwrap().unwrap();
    assert_eq!(rec.get("seen"), Some(&Value::Bool(true)), "the filter ran");
}

#[tokio::test]
async fn an_undecodable_entry_passes_filters_unchanged_and_the_rest_is_filtered() {
    let a = Buffer::new("a", &BufferConfig::default());
    let mut rb = RouterBuilder::new();
    rb.filter("mark", TagPattern::new("**").unwrap(), Arc::new(AddField));
    rb.sink("a", TagPattern::new("**").unwrap(), a.clone());
    let router = rb.build();
    let keep: Map = [("msg", "hi")].into_iter().collect();
    let mut b = ChunkBuilder::new(Tag::new("app"));
    b.push(EventTime::new(1, 0), &keep);
    // [1, "x"]: a record that is not a map.
    let bad = [0x92, 0x01, 0xa1, b'x'];
    b.push_encoded(&bad);
    b.push(EventTime::new(1, 0), &keep);
    router.emit(b.finish().unwrap()).await.unwrap();
    let got = a.try_pop().unwrap();
    let steps: Vec<_> = got.chunk().walk().collect();
    assert_eq!(steps.len(), 3);
    for i in [0, 2] {
        let (_, rec) = steps[i].as_ref().unwrap();
        assert_eq!(rec.get("seen"), Some(&Value::Bool(true)));
    }
    assert_eq!(steps[1].as_ref().unwrap_err().bytes, bad);
}

#[tokio::test]
async fn a_replaced_router_takes_the_next_send_of_a_lane_opened_before() {
    let old = Buffer::new("old", &BufferConfig::default());
    let new = Buffer::new("new", &BufferConfig::default());
    let mut rb = RouterBuilder::new();
    rb.sink("out", TagPattern::new("**").unwrap(), old.clone());
    let router = rb.build();
    let source = router.for_source(crate::metrics::ComponentMetrics::detached("in"));
    let mut lane = source.lane(&Tag::new("app"));
    lane.push(EventTime::new(1, 0), Map::new());
    lane.send().await.unwrap();
    assert_eq!(old.stats().staged_chunks + old.stats().queued_chunks, 1);

    // A reload: the sink's buffer replaced, the old one closed under the gate.
    let paused = router.pause().await;
    let mut rb = RouterBuilder::new();
    rb.sink("out", TagPattern::new("**").unwrap(), new.clone());
    router.replace(rb);
    old.close();
    drop(paused);

    lane.push(EventTime::new(2, 0), Map::new());
    lane.send().await.expect("the lane follows the reload");
    source.emit(chunk("app", &[Map::new()])).await.unwrap();
    let st = new.stats();
    assert_eq!(st.staged_chunks + st.queued_chunks, 2, "{st:?}");
    assert_eq!(router.describe("app").1, vec!["out".to_string()]);
}

#[tokio::test]
async fn a_pause_holds_deliveries_back_until_it_ends() {
    let buffer = Buffer::new("out", &BufferConfig::default());
    let mut rb = RouterBuilder::new();
    rb.sink("out", TagPattern::new("**").unwrap(), buffer.clone());
    let router = Arc::new(rb.build());
    let paused = router.pause().await;
    let emitting = tokio::spawn({
        let router = router.clone();
        async move { router.emit(chunk("app", &[Map::new()])).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let st = buffer.stats();
    assert_eq!(
        st.staged_chunks + st.queued_chunks,
        0,
        "delivered during a pause"
    );
    drop(paused);
    emitting.await.unwrap().unwrap();
    let st = buffer.stats();
    assert_eq!(st.staged_chunks + st.queued_chunks, 1);
}

#[tokio::test]
async fn a_tap_that_is_not_read_drops_its_copies_and_never_holds_the_pipeline() {
    let buffer = Buffer::new("out", &BufferConfig::default());
    let mut rb = RouterBuilder::new();
    rb.filter("mark", TagPattern::new("**").unwrap(), Arc::new(AddField));
    rb.sink("out", TagPattern::new("**").unwrap(), buffer.clone());
    let router = rb.build();
    let mut at_source = router
        .taps()
        .open(TagPattern::new("app.**").unwrap(), TapPoint::Source, 1);
    let mut at_sink = router.taps().open(
        TagPattern::new("**").unwrap(),
        TapPoint::Sink("out".into()),
        8,
    );
    let elsewhere = router.taps().open(
        TagPattern::new("**").unwrap(),
        TapPoint::Sink("other".into()),
        8,
    );
    for _ in 0..3 {
        router
            .emit(chunk("app.web", &[Map::new(), Map::new()]))
            .await
            .unwrap();
    }
    // Every chunk delivered; the source tap kept one and dropped the other two.
    assert_eq!(
        buffer.stats().queued_chunks + buffer.stats().staged_chunks,
        3
    );
    let first = at_source.recv().await.unwrap();
    assert_eq!((first.tag.as_str(), first.count), ("app.web", 2));
    assert_eq!(at_source.dropped(), 4);
    assert_eq!(router.taps().dropped(), 4);
    // The sink tap sees the records as the filter left them.
    let copy = at_sink.recv().await.unwrap();
    let (_, record) = crate::chunk::Entries::new(&copy.entries)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(record.get("seen"), Some(&Value::Bool(true)));
    assert_eq!(elsewhere.dropped(), 0);
    drop((at_source, at_sink, elsewhere));
    assert!(!router.taps().any());
}
