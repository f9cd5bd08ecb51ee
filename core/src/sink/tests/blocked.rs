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

#[tokio::test]
async fn items_refused_to_these_credentials_are_sent_again_past_the_retry_limit_alone() {
    // One retry allowed, as above. Of one request: "0" is stored, "1" refused to the
    // credentials (a key that may not write its index) until the sixth request,
    // "2" refused for good, "3" refused for now once (sent again, as the second).
    let t = setup(BufferConfig {
        retry_max_times: Some(1),
        ..quick_retries()
    });
    let answer: Answer = Box::new(|items, attempt| {
        BatchOutcome::Items(
            items
                .iter()
                .map(|i| match i.as_str() {
                    "1" if attempt < 5 => Outcome::Blocked {
                        status: Some(403),
                        reason:
                            "security_exception: no permissions for [indices:data/write/bulk[s]]"
                                .into(),
                    },
                    "2" => Outcome::Rejected {
                        status: Some(400),
                        reason: "mapper_parsing_exception".into(),
                        error: None,
                    },
                    "3" if attempt == 0 => Outcome::Retry {
                        status: Some(429),
                        reason: "too many requests".into(),
                    },
                    _ => Outcome::Delivered,
                })
                .collect(),
        )
    });
    let got = t.numbers(4, answer).await;
    assert_eq!(
        got,
        vec![Delivery::Failed],
        "one event was refused for good"
    );
    let sent: Vec<Vec<String>> = t.sent().into_iter().map(|(_, i)| i).collect();
    assert_eq!(sent[0], texts(&["0", "1", "2", "3"]));
    let mut rest = sent[1..].to_vec();
    rest.sort();
    // "1" alone: refused three times more (past the one retry), then stored.
    let mut expected = vec![texts(&["1"]); 4];
    expected.push(texts(&["3"]));
    assert_eq!(rest, expected, "{sent:?}");
    let dead = t.dead();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["record"]["n"], 2);
}
