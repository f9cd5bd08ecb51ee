//! What the cluster's answers mean: a whole request's status and error, and each
//! item's, as the kit's outcomes (retry, reject, blocked, split).

use super::*;

#[test]
fn classifies_whole_request_answers() {
    let op = OpType::Index;
    assert!(matches!(
        classify(429, br#"{"error":{"type":"es_rejected_execution_exception","reason":"queue full"},"status":429}"#, 3, op),
        BatchOutcome::All(Outcome::Retry { status: Some(429), reason }) if reason == "es_rejected_execution_exception: queue full"
    ));
    assert!(matches!(
        classify(503, b"", 1, op),
        BatchOutcome::All(Outcome::Retry {
            status: Some(503),
            ..
        })
    ));
    assert!(
        matches!(classify(502, b"<html>bad gateway</html>", 1, op), BatchOutcome::All(Outcome::Retry { reason, .. }) if reason == "<html>bad gateway</html>")
    );
    assert!(matches!(
        classify(413, b"too big", 2, op),
        BatchOutcome::Split {
            status: Some(413),
            ..
        }
    ));
    assert!(
        matches!(classify(400, b"{\"error\":\"bad\"}", 2, op), BatchOutcome::Split { status: Some(400), reason } if reason == "bad")
    );
    assert!(matches!(
        classify(401, b"", 2, op),
        BatchOutcome::Blocked {
            status: Some(401),
            ..
        }
    ));
    assert!(
        matches!(classify(403, br#"{"message":"The security token included in the request is invalid."}"#, 2, op), BatchOutcome::Blocked { status: Some(403), reason } if reason.contains("security token"))
    );
    assert!(
        matches!(classify(404, b"", 2, op), BatchOutcome::All(Outcome::Retry { reason, .. }) if reason.contains("check that `endpoints`"))
    );
    assert!(matches!(
        classify(200, b"not json", 1, op),
        BatchOutcome::All(Outcome::Retry { .. })
    ));
    assert!(matches!(
        classify(200, br#"{"errors":false,"items":[{"index":{"status":201}}]}"#, 2, op),
        BatchOutcome::All(Outcome::Retry { reason, .. }) if reason == "the _bulk response has 1 items for 2 sent"
    ));
    assert_eq!(
        classify(200, br#"{"took":1,"errors":false,"items":[{"index":{"status":201}},{"index":{"status":200}}]}"#, 2, op),
        BatchOutcome::All(Outcome::Delivered)
    );
}

#[test]
fn classifies_items() {
    let body = json!({
        "took": 3,
        "errors": true,
        "items": [
            {"create": {"_index": "a", "status": 201}},
            {"create": {"_index": "a", "status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "exists"}}},
            {"create": {"_index": "a", "status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}}},
            {"create": {"_index": "a", "status": 503, "error": {"type": "unavailable_shards_exception", "reason": "primary down"}}},
            {"create": {"_index": "a", "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [n]"}}},
        ]
    })
    .to_string();
    let BatchOutcome::Items(items) = classify(200, body.as_bytes(), 5, OpType::Create) else {
        panic!("per-item answer expected");
    };
    assert_eq!(items[0], Outcome::Delivered);
    assert_eq!(
        items[1],
        Outcome::Delivered,
        "409 under create: already stored"
    );
    assert_eq!(
        items[2],
        Outcome::Retry {
            status: Some(429),
            reason: "es_rejected_execution_exception: queue full".into()
        }
    );
    assert!(matches!(
        &items[3],
        Outcome::Retry {
            status: Some(503),
            ..
        }
    ));
    assert_eq!(
        items[4],
        Outcome::Rejected {
            status: Some(400),
            reason: "mapper_parsing_exception: failed to parse field [n]".into(),
            error: Some(
                json!({"type": "mapper_parsing_exception", "reason": "failed to parse field [n]"})
            ),
        }
    );
    // Under `index`, a 409 is a real conflict (an external version), refused for good.
    assert!(
        matches!(classify_item(409, None, OpType::Index), Outcome::Rejected { status: Some(409), reason, .. } if reason == "refused with status 409")
    );
}

/// Security refusing one item (a key or role that may not write its index) blocks
/// that item: sent again without end, never dead-lettered; the others are read as
/// usual.
#[test]
fn an_item_refused_to_the_credentials_is_blocked_not_rejected() {
    let body = br#"{"took":3,"errors":true,"items":[
        {"index":{"_index":"logs-shop","status":201}},
        {"index":{"_index":"logs-audit","status":403,"error":{"type":"security_exception","reason":"action [indices:data/write/bulk[s]] is unauthorized for API key id [k1] of user [nagare] on indices [logs-audit]"}}},
        {"index":{"_index":"logs-x","status":401,"error":{"type":"security_exception","reason":"missing authentication credentials"}}}]}"#;
    let BatchOutcome::Items(items) = classify(200, body, 3, OpType::Index) else {
        panic!("read item by item");
    };
    assert_eq!(items[0], Outcome::Delivered);
    assert_eq!(
        items[1],
        Outcome::Blocked {
            status: Some(403),
            reason: "security_exception: action [indices:data/write/bulk[s]] is unauthorized for API key id [k1] of user [nagare] on indices [logs-audit]".into(),
        }
    );
    assert!(
        matches!(&items[2], Outcome::Blocked { status: Some(401), reason } if reason.ends_with("missing authentication credentials"))
    );
}
