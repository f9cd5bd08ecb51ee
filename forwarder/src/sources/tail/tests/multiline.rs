//! Stack traces joined into one event: golden files of real runtimes' output, and
//! the flush timeout of the last held event.

use super::*;

/// Golden files: real Java, Python, Go, Ruby and Node.js output (stack traces among
/// ordinary lines) on stderr, with stdout lines interleaved and long lines split by
/// the runtime into CRI `P` pieces, in `tests/fixtures/tail_multiline/<lang>_*.log`;
/// the records expected in `<lang>.json`. `NAGARE_BLESS=1` rewrites the expectations
/// (review the diff).
#[tokio::test]
async fn multiline_golden_files() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tail_multiline");
    let mut checked = 0;
    for lang in ["java", "python", "go", "ruby", "nodejs"] {
        let input = std::fs::read_dir(&fixtures)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with(&format!("{lang}_")) && name.ends_with(".log")
            })
            .unwrap_or_else(|| panic!("no input for {lang}"));
        let dir = Tail::dir();
        std::fs::copy(&input, dir.path().join(input.file_name().unwrap())).unwrap();
        let mut config = head_config(dir.path());
        config.format = TailFormat::Cri;
        config.multiline =
            Some(serde_norway::from_str("languages: [all]\nflush_timeout: 200ms").unwrap());
        let tail = Tail::start(dir, config);
        // Everything arrives, the last held event after its flush timeout.
        let got = tail.until_quiet(Duration::from_millis(800)).await;
        tail.stop().await;
        let actual: Vec<serde_json::Value> = got
            .iter()
            .map(|g| {
                let mut o = serde_json::Map::new();
                for key in ["stream", "logtag", "log", "msg"] {
                    if let Some(v) = g.str(key) {
                        o.insert(key.into(), v.into());
                    }
                }
                if g.record.get(TRUNCATED_KEY).is_some() {
                    o.insert(TRUNCATED_KEY.into(), true.into());
                }
                serde_json::Value::Object(o)
            })
            .collect();
        let expected_path = fixtures.join(format!("{lang}.json"));
        if std::env::var_os("NAGARE_BLESS").is_some() {
            let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
            std::fs::write(&expected_path, text).unwrap();
        }
        let expected: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
        if actual != expected {
            panic!(
                "{lang}: records differ from {}\n--- expected\n{}\n--- actual\n{}",
                expected_path.display(),
                serde_json::to_string_pretty(&expected).unwrap(),
                serde_json::to_string_pretty(&actual).unwrap()
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 5);
}

/// The last stack trace of a container that then goes quiet is emitted whole once
/// `flush_timeout` passed without a line, not held until the next line.
#[tokio::test]
async fn a_held_multiline_event_is_flushed_after_its_timeout() {
    let dir = Tail::dir();
    let path = pod_file(dir.path());
    let trace = [
        "Exception in thread \"main\" java.lang.IllegalStateException: boom",
        "\tat com.example.App.run(App.java:42)",
        "\tat com.example.App.main(App.java:7)",
    ];
    let mut input = format!("{T1} stdout F started\n");
    for line in trace {
        input.push_str(&format!("{T2} stderr F {line}\n"));
    }
    append(&path, input.as_bytes());
    let mut config = head_config(dir.path());
    config.format = TailFormat::Cri;
    config.multiline =
        Some(serde_norway::from_str("languages: [java]\nflush_timeout: 400ms").unwrap());
    let started = std::time::Instant::now();
    let tail = Tail::start(dir, config);
    assert_eq!(logs(&tail.events(1).await), ["started"]);
    let got = tail.events(1).await;
    let waited = started.elapsed();
    assert_eq!(logs(&got), [trace.join("\n")]);
    assert_eq!(got[0].str("stream"), Some("stderr"));
    assert!(
        waited >= Duration::from_millis(400),
        "the trace was held for flush_timeout, came after {waited:?}"
    );
    tail.nothing_more().await;
    tail.stop().await;
}
