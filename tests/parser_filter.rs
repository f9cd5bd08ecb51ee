//! The `parser` filter in the real binary: nginx access lines tailed from a CRI file
//! are parsed into fields; a line that does not parse goes to the `@ERROR` route
//! with the reason instead of being lost.

mod support;

use std::time::Duration;

use nagare_testkit::wait_until;
use support::{Nagare, read_ndjson};

#[test]
fn nginx_lines_are_parsed_and_bad_ones_reach_the_error_route() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("containers");
    std::fs::create_dir_all(&logs).unwrap();
    let file = logs.join(format!("web-1_shop_nginx-{}.log", "a".repeat(64)));
    let lines = [
        r#"2024-05-01T12:00:00.000000001Z stdout F 10.0.0.1 - - [01/May/2024:12:00:00 +0000] "GET /cart HTTP/1.1" 200 612 "-" "curl/8.5.0" "-""#,
        r#"2024-05-01T12:00:01.000000002Z stdout F not an access log line"#,
        r#"2024-05-01T12:00:02.000000003Z stdout F 10.0.0.2 - bob [01/May/2024:12:00:02 +0000] "POST /checkout HTTP/2.0" 500 - "https://shop/" "Mozilla/5.0" "-""#,
    ];
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let parsed = dir.path().join("parsed.ndjson");
    let errors = dir.path().join("errors.ndjson");
    let mut nagare = Nagare::start(
        "nagare",
        dir.path(),
        &format!(
            "data_dir: {data}\n\
             sources:\n  containers:\n    type: tail\n    paths: [\"{logs}/*.log\"]\n    read_from_head: true\n    poll_interval: 50ms\n\
             filters:\n  nginx:\n    type: parser\n    match: \"kube.**\"\n    reserve_data: true\n    remove_key_name_field: true\n    parse:\n      format: nginx\n\
             sinks:\n  out:\n    type: file\n    match: \"kube.**\"\n    path: {parsed}\n  errors:\n    type: file\n    match: \"@ERROR.**\"\n    path: {errors}\n",
            data = dir.path().join("data").display(),
            logs = logs.display(),
            parsed = parsed.display(),
            errors = errors.display(),
        ),
    );
    let arrived = wait_until(Duration::from_secs(20), || {
        nagare.assert_running();
        read_ndjson(&parsed).len() >= 2 && !read_ndjson(&errors).is_empty()
    });
    assert!(arrived, "{}", nagare.child.logs());
    assert!(nagare.terminate(Duration::from_secs(20)).success());

    let ok = read_ndjson(&parsed);
    assert_eq!(ok.len(), 2, "{ok:?}");
    let r = &ok[0]["record"];
    assert_eq!(r["remote"], "10.0.0.1");
    assert_eq!(r["method"], "GET");
    assert_eq!(r["path"], "/cart");
    assert_eq!(r["code"], 200);
    assert_eq!(r["size"], 612);
    assert_eq!(r["agent"], "curl/8.5.0");
    assert_eq!(r["stream"], "stdout", "reserve_data keeps the other fields");
    assert_eq!(r["kubernetes"]["container_name"], "nginx");
    assert!(r.get("log").is_none(), "remove_key_name_field drops `log`");
    // The access line's own time wins over the runtime's.
    assert_eq!(ok[0]["time"], "2024-05-01T12:00:00.000000000Z");
    let r = &ok[1]["record"];
    assert_eq!(
        (r["user"].as_str(), r["code"].as_i64(), r["size"].is_null()),
        (Some("bob"), Some(500), true)
    );

    let bad = read_ndjson(&errors);
    assert_eq!(bad.len(), 1);
    assert!(
        bad[0]["tag"].as_str().unwrap().starts_with("@ERROR.kube."),
        "{}",
        bad[0]
    );
    assert_eq!(bad[0]["record"]["log"], "not an access log line");
    assert!(
        !bad[0]["record"]["error"].as_str().unwrap_or("").is_empty(),
        "the reason is kept: {}",
        bad[0]
    );
}
