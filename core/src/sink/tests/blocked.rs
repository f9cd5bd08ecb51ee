//! `BatchOutcome::Blocked`: retried without end, never dead-lettered.

use super::*;

#[tokio::test]
async fn a_blocked_request_is_sent_again_past_the_retry_limit_and_never_dead_lettered() {
    // One retry allowed: a `Retry` answer would give up after the second attempt.
    let t = setup(BufferConfig {
        retry_max_times: Some(1),
        ..quick_retries()
    });
    let answer: Answer = Box::new(|_, attempt| {
        if attempt < 6 {
            BatchOutcome::Blocked {
                status: Some(403),
                reason: "access denied; check the role".into(),
            }
        } else {
            BatchOutcome::All(Outcome::Delivered)
        }
    });
    let got = t.numbers(3, answer).await;
    assert_eq!(got, vec![Delivery::Delivered]);
    let sent = t.sent();
    assert_eq!(
        sent.len(),
        7,
        "six blocked attempts, then the one that went through"
    );
    assert!(
        sent.iter()
            .all(|(_, items)| *items == texts(&["0", "1", "2"]))
    );
    assert!(t.dead().is_empty(), "{:?}", t.dead());
    // The request was built once and sent again as it was.
    assert_eq!(t.seen.lock().unwrap().built, 1);
}
