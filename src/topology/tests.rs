//! What a reload changes, from two configs' trees.

use super::Plan;

fn tree(yaml: &str) -> serde_json::Value {
    let doc = nagare_core::config::ConfigDocument::from_text("test", yaml, |_| None).unwrap();
    doc.parse().unwrap()
}

const BASE: &str = r#"
data_dir: /tmp/x
sources:
  in: { type: forward, bind: "127.0.0.1:1" }
  files: { type: tail, paths: [/a] }
filters:
  f: { type: record_modifier, match: "**", records: { a: 1 } }
sinks:
  es: { type: elasticsearch, match: "**", hosts: [http://a:9200], buffer: { type: file } }
  out: { type: file, match: "**", path: /tmp/o }
"#;

#[test]
fn the_same_config_changes_nothing() {
    let plan = Plan::new(&tree(BASE), &tree(BASE)).unwrap();
    assert!(plan.is_empty(), "{plan:?}");
}

#[test]
fn each_section_is_compared_component_by_component() {
    let new = BASE
        .replace("paths: [/a]", "paths: [/b]")
        .replace("records: { a: 1 }", "records: { a: 2 }")
        .replace("path: /tmp/o", "path: /tmp/p")
        + "  more: { type: null, match: \"x.**\" }\n";
    let new = new.replace("  in: { type: forward, bind: \"127.0.0.1:1\" }\n", "");
    let plan = Plan::new(&tree(BASE), &tree(&new)).unwrap();
    assert_eq!(plan.sources.changed, vec!["files"]);
    assert_eq!(plan.sources.removed, vec!["in"]);
    assert!(plan.sources.added.is_empty());
    assert_eq!(plan.filters.changed, vec!["f"]);
    assert_eq!(plan.sinks.added, vec!["more"]);
    assert_eq!(plan.sinks.changed, vec!["out"]);
    // Same buffer and dead-letter sections: restarted on the buffer it has.
    assert_eq!(plan.keep_buffer, vec!["out"]);
    assert!(plan.rerouted.is_empty());
}

#[test]
fn a_new_match_only_reroutes_and_a_new_buffer_replaces_it() {
    let new = BASE
        .replace(
            "es: { type: elasticsearch, match: \"**\"",
            "es: { type: elasticsearch, match: \"kube.**\"",
        )
        .replace(
            "path: /tmp/o }",
            "path: /tmp/o, buffer: { chunk_limit_size: 1MiB } }",
        );
    let plan = Plan::new(&tree(BASE), &tree(&new)).unwrap();
    assert_eq!(plan.rerouted, vec!["es"]);
    assert_eq!(plan.sinks.changed, vec!["out"]);
    assert!(plan.keep_buffer.is_empty(), "{plan:?}");
    assert!(!plan.is_empty());
}

#[test]
fn what_only_a_restart_changes_is_refused_with_the_key() {
    for (from, to, key) in [
        ("data_dir: /tmp/x", "data_dir: /tmp/y", "data_dir"),
        (
            "data_dir: /tmp/x",
            "data_dir: /tmp/x\napi: { bind: \"0.0.0.0:1\" }",
            "api",
        ),
        (
            "data_dir: /tmp/x",
            "data_dir: /tmp/x\nlog: { level: debug }",
            "log",
        ),
    ] {
        let error = Plan::new(&tree(BASE), &tree(&BASE.replace(from, to))).unwrap_err();
        assert!(error.contains(&format!("`{key}` changed")), "{error}");
        assert!(error.contains("restart"), "{error}");
    }
    let timeout = BASE.replace("data_dir: /tmp/x", "data_dir: /tmp/x\nshutdown_timeout: 5s");
    let plan = Plan::new(&tree(BASE), &tree(&timeout)).unwrap();
    assert!(plan.shutdown_timeout && !plan.is_empty());
}
