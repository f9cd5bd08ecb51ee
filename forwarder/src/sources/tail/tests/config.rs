//! The tail config: its defaults, the documented example, and what validation refuses.

use super::*;

#[test]
fn config_parses_with_defaults_and_validates() {
    let config: TailConfig = serde_norway::from_str("paths: [/var/log/containers/*.log]").unwrap();
    assert_eq!(config.tag, "kube.*");
    assert_eq!(config.format, TailFormat::Auto);
    assert!(!config.read_from_head && config.merge_json && !config.keep_log);
    assert!(config.kubernetes_metadata);
    assert_eq!(config.log_key, "log");
    assert_eq!(config.max_line_bytes, ByteSize(16 << 20));
    assert_eq!(config.chunk_limit_size, ByteSize(1 << 20));
    assert_eq!(config.poll_interval, HumanDuration::millis(250));
    assert_eq!(config.refresh_interval, HumanDuration::secs(1));
    assert!(config.watch && config.ignore_older.is_none() && config.multiline.is_none());
    assert!(config.path_key.is_none() && config.offset_key.is_none());
    assert!(config.event_id_key.is_none());
    assert_eq!(config.max_open_files, 1024);
    assert_eq!(config.rotate_wait, HumanDuration::secs(5));
    assert_eq!(config.checkpoint_interval, HumanDuration::secs(1));
    assert_eq!(config.checkpoint_forget_after, HumanDuration::secs(3600));
    config.validate().unwrap();

    let documented = r#"
paths: [/var/log/containers/*.log]
exclude_paths: ["/var/log/containers/*_kube-system_*.log"]
read_from_head: true
tag: kube.*
format: cri
refresh_interval: 5s
poll_interval: 100ms
merge_json: true
merge_json_key: app
keep_log: true
log_key: message
kubernetes_metadata: true
max_line_bytes: 1MiB
chunk_limit_size: 512k
watch: false
ignore_older: 24h
max_open_files: 500
rotate_wait: 2s
checkpoint_interval: 500ms
checkpoint_forget_after: 2h
path_key: file
offset_key: offset
event_id_key: line_id
multiline:
  languages: [java, python, go, ruby, nodejs]
  custom: {start: '^\\d{4}-', continuation: '^\\s'}
  flush_timeout: 2s
kubernetes:
  api: enabled
  api_server: https://kubernetes.default.svc
  node_name: node-1
  labels: true
  annotations: ["team.example.com/*"]
  namespace_labels: false
"#;
    let config: TailConfig = serde_norway::from_str(documented).unwrap();
    config.validate().unwrap();
    assert_eq!(config.format, TailFormat::Cri);
    assert_eq!(config.checkpoint_interval, HumanDuration::millis(500));
    assert_eq!(config.max_open_files, 500);
    assert!(config.multiline.is_some() && !config.kubernetes.namespace_labels);
    assert_eq!(config.event_id_key.as_deref(), Some("line_id"));

    assert!(serde_norway::from_str::<TailConfig>("paths: [a]\nfollow: yes").is_err());
    let invalid = |yaml: &str| {
        serde_norway::from_str::<TailConfig>(yaml)
            .unwrap()
            .validate()
            .unwrap_err()
            .key
    };
    assert_eq!(invalid("paths: []"), "paths");
    assert_eq!(invalid("paths: ['a[']"), "paths.0");
    assert_eq!(
        invalid("paths: [a]\nexclude_paths: [b, 'c[']"),
        "exclude_paths.1"
    );
    assert_eq!(invalid("paths: [a]\ntag: 'a.*.*'"), "tag");
    assert_eq!(invalid("paths: [a]\nlog_key: stream"), "log_key");
    assert_eq!(
        invalid("paths: [a]\nmerge_json_key: kubernetes"),
        "merge_json_key"
    );
    assert_eq!(
        invalid("paths: [a]\nchunk_limit_size: 0"),
        "chunk_limit_size"
    );
    assert_eq!(invalid("paths: [a]\npoll_interval: 0s"), "poll_interval");
    assert_eq!(invalid("paths: [a]\nmax_open_files: 0"), "max_open_files");
    assert_eq!(invalid("paths: [a]\npath_key: ''"), "path_key");
    assert_eq!(invalid("paths: [a]\noffset_key: stream"), "offset_key");
    assert_eq!(invalid("paths: [a]\nevent_id_key: log"), "event_id_key");
    assert_eq!(
        invalid("paths: [a]\npath_key: file\nevent_id_key: file"),
        "event_id_key"
    );
    assert_eq!(
        invalid("paths: [a]\nmultiline: {max_lines: 5}"),
        "multiline.languages"
    );
    assert_eq!(
        invalid("paths: [a]\nkubernetes: {api_server: 'nope'}"),
        "kubernetes.api_server"
    );
}
