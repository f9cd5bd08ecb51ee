//! Config errors name the line and the key path of the mistake wherever it sits:
//! inside a component (chosen by `type`), in nested maps, in sequence items, in flow
//! style, and inside a parser's `parse` map, for every kind of mistake: an unknown
//! key, a value of the wrong type, a missing key, a bad enum value, a bad size or
//! duration. Each case runs the real `nagare validate` on a real file.

#![cfg(all(feature = "forwarder", feature = "aggregator"))]

mod support;

use std::process::Command;

use support::binary;

/// A valid config; each case below breaks one line of it.
const BASE: &str = r#"data_dir: /tmp/nagare-config-errors
sources:
  app:
    type: tail
    paths: [/var/log/app/*.log]
    multiline:
      languages: [java]
      flush_timeout: 1s
filters:
  parse:
    type: parser
    match: "app.**"
    parse:
      format: regex
      expression: '^(?<msg>.*)$'
sinks:
  aggregators:
    type: forward
    match: "app.**"
    servers:
      - host: agg-0
        port: 24224
      - { host: agg-1, port: 24224, weight: 60 }
    buffer:
      flush_interval: 5s
      total_limit_size: 64MiB
  search:
    type: elasticsearch
    match: "kube.**"
    endpoints: ["http://es:9200"]
    index: lots
    batch:
      max_events: 500
      timeout: 2s
    request_timeout: 30s
"#;

fn validate(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nagare.yaml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(binary())
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // Without the temporary folder: `nagare.yaml:LINE: at `KEY`: MESSAGE`.
    let shown = err
        .trim()
        .strip_prefix("error: ")
        .unwrap_or(&err)
        .replace(&format!("{}/", dir.path().display()), "");
    (out.status.code().unwrap_or(-1), shown)
}

/// `BASE` with the lines from `line` (1-based) on replaced by those of `with`.
fn broken(line: usize, with: &str) -> String {
    let mut lines: Vec<&str> = BASE.lines().collect();
    for (i, new) in with.lines().enumerate() {
        lines[line - 1 + i] = new;
    }
    lines.join("\n") + "\n"
}

/// Runs `nagare validate` on each config text and checks that it is refused (exit
/// 2) with a message that starts with the words given; lists every mismatch.
fn assert_refused<T: AsRef<str>, W: AsRef<str>>(cases: impl IntoIterator<Item = (T, W)>) {
    let mut failures = Vec::new();
    for (text, want) in cases {
        let (code, err) = validate(text.as_ref());
        let want = want.as_ref();
        if code != 2 || !err.starts_with(want) {
            failures.push(format!("want {want}\n  got  {err} (exit {code})"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_base_config_is_valid() {
    let (code, err) = validate(BASE);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn every_kind_of_mistake_names_its_line_and_key() {
    let cases: &[(usize, &str, &str)] = &[
        // An unknown key in a block sequence item.
        (
            22,
            "        prot: 24224",
            "nagare.yaml:22: at `sinks.aggregators.servers.0.prot`: unknown field `prot`",
        ),
        // A value of the wrong type in a flow map in a sequence.
        (
            23,
            "      - { host: agg-1, port: many, weight: 60 }",
            "nagare.yaml:23: at `sinks.aggregators.servers.1.port`: invalid type: string \"many\", expected u16",
        ),
        // A missing key in a flow map in a sequence.
        (
            23,
            "      - { port: 24224, weight: 60 }",
            "nagare.yaml:23: at `sinks.aggregators.servers.1`: missing field `host`",
        ),
        // A bad enum value in a nested map.
        (
            25,
            "      overflow_action: drop_everything",
            "nagare.yaml:25: at `sinks.aggregators.buffer.overflow_action`: unknown variant `drop_everything`",
        ),
        // A bad size in a nested map.
        (
            26,
            "      total_limit_size: 64 parsecs",
            "nagare.yaml:26: at `sinks.aggregators.buffer.total_limit_size`: invalid value: string \"64 parsecs\", expected a size (`parsecs` is not a size unit",
        ),
        // A bad duration in a source's nested map.
        (
            8,
            "      flush_timeout: soon",
            "nagare.yaml:8: at `sources.app.multiline.flush_timeout`: invalid value: string \"soon\", expected a duration like `500ms`, `5s` or `1m 30s`",
        ),
        // An unknown key in a source's nested map.
        (
            7,
            "      langauges: [java]",
            "nagare.yaml:7: at `sources.app.multiline.langauges`: unknown field `langauges`",
        ),
        // An unknown key among a parser's keys, which sit beside `format`.
        (
            15,
            "      expresion: '^(?<msg>.*)$'",
            "nagare.yaml:15: at `filters.parse.parse.expresion`: unknown field `expresion`",
        ),
        // A bad enum value that names the kind of a parser.
        (
            14,
            "      format: yaml",
            "nagare.yaml:14: at `filters.parse.parse.format`: unknown variant `yaml`",
        ),
        // A value whose text also appears on an earlier line of the component
        // (`index: lots`): the line is the one of the key the value is under.
        (
            33,
            "      max_events: lots",
            "nagare.yaml:33: at `sinks.search.batch.max_events`: invalid type: string \"lots\", expected usize",
        ),
        // A bad duration in a flow map.
        (
            32,
            "    batch: { max_events: 500, timeout: 2 fortnights }\n    # flow style\n    #",
            "nagare.yaml:32: at `sinks.search.batch.timeout`: invalid value: string \"2 fortnights\"",
        ),
        // An unknown key of the component itself.
        (
            30,
            "    endpointz: [\"http://es:9200\"]",
            "nagare.yaml:30: at `sinks.search.endpointz`: unknown field `endpointz`",
        ),
        // A key every sink needs, missing: reported on the sink's own line.
        (
            19,
            "    matches: \"app.**\"",
            "nagare.yaml:17: at `sinks.aggregators`: missing field `match`",
        ),
        // The kind itself.
        (
            11,
            "    type: parsr",
            "nagare.yaml:11: at `filters.parse.type`: unknown variant `parsr`, expected one of `record_modifier`, `grep`, `parser`",
        ),
        // A key written twice.
        (
            35,
            "    endpoints: [\"http://es:9201\"]",
            "nagare.yaml:35: at `endpoints`: duplicate key `endpoints` (also on line 30)",
        ),
        // Not YAML.
        (
            22,
            "        port: 24224: 1",
            "nagare.yaml:22: this is not valid YAML: mapping values are not allowed in this context",
        ),
    ];
    let mut failures = Vec::new();
    for (line, with, want) in cases {
        let (code, err) = validate(&broken(*line, with));
        if code != 2 || !err.starts_with(want) {
            failures.push(format!(
                "line {line} `{}`:\n  want {want}\n  got  {err} (exit {code})",
                with.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The dead-letter section is `dead_letter`, or `secondary` as Fluentd calls it: a
/// mistake in it is found and placed under either name, and the two together are
/// refused.
#[test]
fn the_dead_letter_section_is_read_under_either_name() {
    for key in ["dead_letter", "secondary"] {
        let text = format!("{BASE}    {key}:\n      path: /var/lib/nagare/dl/\n");
        let (code, err) = validate(&text);
        let want = format!("nagare.yaml:37: at `sinks.search.{key}.path`: name a file");
        assert!(code == 2 && err.starts_with(&want), "{key}: {err}");
        let text = format!("{BASE}    {key}:\n      path: /var/lib/nagare/dl/search.ndjson\n");
        let (code, err) = validate(&text);
        assert_eq!(code, 0, "{key}: {err}");
    }
    let both = format!(
        "{BASE}    dead_letter:\n      path: /a.ndjson\n    secondary:\n      path: /b.ndjson\n"
    );
    let (code, err) = validate(&both);
    assert!(
        code == 2 && err.contains("`dead_letter` and `secondary` are the same section"),
        "{err}"
    );
}

/// The elasticsearch sink's index, data stream and action settings that cannot
/// work are refused by `nagare validate`, each at its own line and key.
#[test]
fn elasticsearch_index_and_action_mistakes_name_their_line_and_key() {
    // (line of `index: lots` replaced, or none; lines appended; line, key, words)
    let cases: &[(Option<&str>, &str, usize, &str, &str)] = &[
        (
            Some("    index: \"logs-{kubernetes.namespace_name\""),
            "",
            31,
            "index",
            "is never closed",
        ),
        (
            Some("    index: \"Logs-{a}\""),
            "",
            31,
            "index",
            "must be lowercase",
        ),
        (None, "    op_type: upsert\n", 36, "op_type", "set `id_key`"),
        (
            None,
            "    mode: data_stream\n",
            31,
            "index",
            "`mode: data_stream`",
        ),
        (
            Some("    mode: data_stream"),
            "    op_type: index\n",
            36,
            "op_type",
            "only `create` actions",
        ),
        (
            Some("    mode: data_stream"),
            "    data_stream:\n      dataset: nginx-access\n",
            37,
            "data_stream.dataset",
            "`nginx-access` holds `-`, which separates type, dataset and namespace",
        ),
        (
            None,
            "    data_stream: {namespace: prod}\n",
            36,
            "data_stream",
            "set `mode: data_stream`",
        ),
        (
            None,
            "    index_fallback: other\n",
            36,
            "index_fallback",
            "placeholders",
        ),
        (
            None,
            "    op_type: update\n    id_key: id\n    pipeline: enrich\n",
            38,
            "pipeline",
            "not on `update`",
        ),
        (
            None,
            "    mode: stream\n",
            36,
            "mode",
            "unknown variant `stream`",
        ),
        (
            None,
            "    logstash_format: true\n",
            36,
            "logstash_format",
            "set either `index` (one index, or a template) or `logstash_format: true` (daily indices), not both",
        ),
        (
            Some("    logstash_format: false"),
            "",
            31,
            "logstash_format",
            "with `logstash_format: false`, set `index` to the index to write to",
        ),
        (
            Some("    index: 'logs-%J'"),
            "",
            31,
            "index",
            "`logs-%J` is not a strftime format",
        ),
        (
            Some("    index: 'logs-%b-{a}'"),
            "",
            31,
            "index",
            "`logs-%b-{a}` writes `logs-Nov-`: an index name must be lowercase",
        ),
        (
            Some("    index: 'logs {a}'"),
            "",
            31,
            "index",
            "`logs {a}` holds ` `, which an index name must not contain",
        ),
        (
            Some("    index: '_logs'"),
            "",
            31,
            "index",
            "index name `_logs` must not start with `-`, `_` or `+`",
        ),
        (
            Some("    mode: data_stream"),
            "    op_type: upsert\n    id_key: id\n",
            36,
            "op_type",
            "a data stream takes only `create` actions, not `upsert`",
        ),
        (
            Some("    mode: data_stream"),
            "    logstash_format: true\n",
            36,
            "logstash_format",
            "with `mode: data_stream` there are no daily indices",
        ),
        (
            Some("    mode: data_stream"),
            "    data_stream:\n      namespace: Prod\n",
            37,
            "data_stream.namespace",
            "data stream namespace `Prod` must be lowercase",
        ),
        (
            Some("    mode: data_stream"),
            "    data_stream: {namespace: 'prod-{a}'}\n",
            36,
            "data_stream.namespace",
            "`prod-{a}` holds `-`, which separates type, dataset and namespace",
        ),
        (
            Some("    mode: data_stream"),
            "    data_stream:\n      dataset: '{a'\n",
            37,
            "data_stream.dataset",
            "is never closed",
        ),
        (
            Some("    mode: data_stream"),
            "    data_stream:\n      type: ''\n",
            37,
            "data_stream.type",
            "the data stream type is empty",
        ),
        // `logs--x` splits into three parts, the middle one empty.
        (
            Some("    mode: data_stream"),
            "    index_fallback: logs--x\n",
            36,
            "index_fallback",
            "the data stream dataset is empty",
        ),
        (
            Some("    mode: data_stream"),
            "    index_fallback: logs\n",
            36,
            "index_fallback",
            "`logs` is not a data stream name `<type>-<dataset>-<namespace>`",
        ),
        (
            Some("    mode: data_stream"),
            "    index_fallback: '_logs-unknown-%Y'\n",
            36,
            "index_fallback",
            "index name `_logs-unknown-2023` must not start with `-`, `_` or `+`",
        ),
    ];
    let mut failures = Vec::new();
    for (index_line, appended, line, key, words) in cases {
        let mut text = match index_line {
            Some(with) => broken(31, with),
            None => BASE.to_string(),
        };
        text.push_str(appended);
        let (code, err) = validate(&text);
        let want = format!("nagare.yaml:{line}: at `sinks.search.{key}`: ");
        if code != 2 || !err.starts_with(&want) || !err.contains(words) {
            failures.push(format!(
                "{index_line:?} + {appended:?}:\n  want {want}...{words}\n  got  {err} (exit {code})"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The Elasticsearch sink's connection settings (`cloud_id`, `api_key`, `tls`,
/// `api_version`, `template`): each refusal names the file, the line and the key,
/// and says why.
#[test]
fn elasticsearch_connection_refusals_name_their_line_and_key() {
    let cloud_id = "staging:dXMtZWFzdC0xLmF3cy5mb3VuZC5pbyRjZWM2ZjI2MWE3NGJmMjRjZTMzYmI4ODExYjg0Mjk0ZiRjNmMyY2E2ZDA0MjI0OWFmMGNjN2Q3YTllOTYyNTc0Mw==";
    let api_key = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==";
    // (text appended to the sink, or a replaced endpoints line, and the error.)
    let cases: Vec<(String, String)> = vec![
        (
            broken(30, "    cloud_id: 'name:%%%'"),
            "nagare.yaml:30: at `sinks.search.cloud_id`: the part after the `:` is not base64".into(),
        ),
        (
            broken(30, "    cloud_id: 'name:aG9zdA=='"),
            "nagare.yaml:30: at `sinks.search.cloud_id`: the decoded Cloud ID `host` is not `host$elasticsearch_id$kibana_id`".into(),
        ),
        (
            format!("{BASE}    cloud_id: '{cloud_id}'\n"),
            "nagare.yaml:36: at `sinks.search.cloud_id`: set either `cloud_id` (Elastic Cloud) or `endpoints`, not both".into(),
        ),
        (
            format!("{BASE}    user: elastic\n    api_key: {api_key}\n"),
            "nagare.yaml:37: at `sinks.search.api_key`: set either `api_key` or `user`/`password`, not both".into(),
        ),
        (
            format!("{BASE}    api_key: 'id:key'\n"),
            "nagare.yaml:36: at `sinks.search.api_key`: this looks like `id:api_key`".into(),
        ),
        (
            format!("{BASE}    api_version: v9\n"),
            "nagare.yaml:36: at `sinks.search.api_version`: unknown variant `v9`".into(),
        ),
        (
            format!("{BASE}    tls:\n      ca_path: /etc/ca.pem\n"),
            "nagare.yaml:36: at `sinks.search.tls`: no endpoint is https://".into(),
        ),
        (
            format!("{BASE}    template:\n      ilm_policy: a\n      ism_policy: b\n"),
            "nagare.yaml:38: at `sinks.search.template.ism_policy`: set `ilm_policy` (Elasticsearch) or `ism_policy` (OpenSearch), not both".into(),
        ),
        (
            format!("{BASE}    api_key: 'not base64!'\n"),
            "nagare.yaml:36: at `sinks.search.api_key`: the key is not base64".into(),
        ),
        (
            format!("{BASE}    api_key: ''\n"),
            "nagare.yaml:36: at `sinks.search.api_key`: the API key is empty".into(),
        ),
        // Written with nothing (as `${VAR}` of a variable set to nothing reads): YAML's
        // null, which must not pass for no key at all.
        (
            format!("{BASE}    api_key:\n"),
            "nagare.yaml:36: at `sinks.search.api_key`: the API key is empty (written with nothing, or `${VAR}` of a variable set to nothing)".into(),
        ),
        (
            format!("{BASE}    user: elastic\n    password:\n"),
            "nagare.yaml:37: at `sinks.search.password`: the password is empty (written with nothing".into(),
        ),
        (
            format!(
                "{}    tls:\n      server_name: 'not a name'\n",
                broken(30, "    endpoints: [\"https://es:9200\"]")
            ),
            "nagare.yaml:37: at `sinks.search.tls.server_name`: `not a name` is not a host name or IP address a certificate can be checked against".into(),
        ),
        (
            format!("{BASE}    api_version: v8\n    template:\n      ism_policy: logs\n"),
            "nagare.yaml:38: at `sinks.search.template.ism_policy`: Elasticsearch has no ISM; use `ilm_policy`".into(),
        ),
        (
            format!("{BASE}    template:\n      file: /nonexistent/t.json\n"),
            "nagare.yaml:37: at `sinks.search.template.file`: cannot read /nonexistent/t.json".into(),
        ),
    ];
    assert_refused(cases);
    // And a working Elastic Cloud config passes.
    let cloud = broken(30, &format!("    cloud_id: '{cloud_id}'"));
    let (code, err) = validate(&format!("{cloud}    api_key: {api_key}\n"));
    assert_eq!(code, 0, "{err}");
}

/// The rest of the Elasticsearch sink's refusals, each through `nagare validate` with
/// its file, line and key: what `aws:` cannot go with, the role's external id and the
/// region, `update` without an id, names and policies a cluster would refuse, a
/// client certificate without its key, an API key that is not `id:key`, empty
/// `pipeline` and `routing_key`, a data stream fallback that is not a data stream
/// name.
#[test]
fn more_elasticsearch_mistakes_name_their_line_and_key() {
    let cloud_id = "staging:dXMtZWFzdC0xLmF3cy5mb3VuZC5pbyRjZWM2ZjI2MWE3NGJmMjRjZTMzYmI4ODExYjg0Mjk0ZiRjNmMyY2E2ZDA0MjI0OWFmMGNjN2Q3YTllOTYyNTc0Mw==";
    // base64 of `no-colon-here`: decodes, but not to `id:key`.
    let not_id_key = "bm8tY29sb24taGVyZQ==";
    let api_key = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==";
    // (the sink's text after BASE's, or a replaced endpoints line; the error's start.)
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{BASE}    user: elastic\n    password: x\n    aws: {{ region: eu-west-1 }}\n"),
            "nagare.yaml:36: at `sinks.search.user`: requests are signed with AWS SigV4 (`aws:`), which replaces basic authentication",
        ),
        (
            format!("{BASE}    api_key: {api_key}\n    aws: {{ region: eu-west-1 }}\n"),
            "nagare.yaml:36: at `sinks.search.api_key`: requests are signed with AWS SigV4 (`aws:`), which replaces API keys",
        ),
        (
            format!(
                "{}    aws: {{ region: eu-west-1 }}\n",
                broken(30, &format!("    cloud_id: '{cloud_id}'"))
            ),
            "nagare.yaml:36: at `sinks.search.aws`: `cloud_id` is Elastic Cloud, `aws:` Amazon OpenSearch Service",
        ),
        (
            format!("{BASE}    aws:\n      region: eu-west-1\n      external_id: team-a\n"),
            "nagare.yaml:38: at `sinks.search.aws.external_id`: an external id is given to the role assumed: set `role_arn` too",
        ),
        (
            format!("{BASE}    aws:\n      region: EU West 1\n"),
            "nagare.yaml:37: at `sinks.search.aws.region`: `EU West 1` is not a region name like `us-east-1`",
        ),
        (
            format!("{BASE}    op_type: update\n"),
            "nagare.yaml:36: at `sinks.search.op_type`: `update` changes the document whose `_id` is in `id_key`; set `id_key`",
        ),
        (
            format!("{BASE}    template:\n      name: Logs Template\n"),
            "nagare.yaml:37: at `sinks.search.template.name`: `Logs Template` is not a template name",
        ),
        (
            format!("{BASE}    api_version: opensearch\n    template:\n      ilm_policy: logs\n"),
            "nagare.yaml:38: at `sinks.search.template.ilm_policy`: OpenSearch has no ILM; use `ism_policy`",
        ),
        (
            format!("{BASE}    aws: {{ service: aoss }}\n    template:\n      ism_policy: logs\n"),
            "nagare.yaml:38: at `sinks.search.template.ism_policy`: OpenSearch Serverless (`aws.service: aoss`) has neither ILM nor ISM",
        ),
        (
            format!(
                "{}    tls:\n      cert_path: /etc/nagare/client.pem\n",
                broken(30, "    endpoints: [\"https://es:9200\"]")
            ),
            "nagare.yaml:36: at `sinks.search.tls`: a client certificate needs both cert_path and private_key_path",
        ),
        (
            format!("{BASE}    api_key: {not_id_key}\n"),
            "nagare.yaml:36: at `sinks.search.api_key`: the key decodes, but not to `id:api_key`",
        ),
        (
            format!("{BASE}    pipeline: ''\n"),
            "nagare.yaml:36: at `sinks.search.pipeline`: name an ingest pipeline",
        ),
        (
            format!("{BASE}    routing_key: ''\n"),
            "nagare.yaml:36: at `sinks.search.routing_key`: must not be empty",
        ),
        (
            format!(
                "{}    mode: data_stream\n    index_fallback: logs-unknown\n",
                broken(31, "    compress: true")
            ),
            "nagare.yaml:37: at `sinks.search.index_fallback`: `logs-unknown` is not a data stream name `<type>-<dataset>-<namespace>`",
        ),
    ];
    assert_refused(cases);
}

/// The rest of the Elasticsearch sink's refusals, each through `nagare validate`:
/// endpoints, credentials, batches, fields, the template block and the `aws:` block's
/// own keys.
#[test]
fn elasticsearch_sink_refusals_name_their_line_and_key() {
    let appended = |extra: &str| format!("{BASE}{extra}");
    let cases: Vec<(String, &str)> = vec![
        (
            broken(30, "    endpoints: [\"http://es:9200\", \"es:9200\"]"),
            "nagare.yaml:30: at `sinks.search.endpoints.1`: `es:9200` is not an http:// or https:// URL with a host",
        ),
        (
            broken(30, "    endpoints: [\"http://elastic:changeme@es:9200\"]"),
            "nagare.yaml:30: at `sinks.search.endpoints.0`: put credentials in `user` and `password`, not in the endpoint URL",
        ),
        (
            appended("    password: changeme\n"),
            "nagare.yaml:36: at `sinks.search.password`: a password needs a `user`",
        ),
        (
            broken(33, "      max_events: 0"),
            "nagare.yaml:33: at `sinks.search.batch.max_events`: must be at least 1",
        ),
        (
            broken(35, "    request_timeout: 0s"),
            "nagare.yaml:35: at `sinks.search.request_timeout`: must be more than 0",
        ),
        (
            appended("    include_tag_key: true\n    tag_key: \"@timestamp\"\n"),
            "nagare.yaml:37: at `sinks.search.tag_key`: must be a field name other than `@timestamp`",
        ),
        (
            appended("    remove_keys: [logtag, \"\"]\n"),
            "nagare.yaml:36: at `sinks.search.remove_keys.1`: an empty key",
        ),
        (
            appended("    id_key: \"\"\n"),
            "nagare.yaml:36: at `sinks.search.id_key`: must not be empty",
        ),
        (
            format!(
                "{}    logstash_dateformat: \"%Y.%J\"\n",
                broken(31, "    logstash_format: true")
            ),
            "nagare.yaml:36: at `sinks.search.logstash_dateformat`:",
        ),
        (
            format!(
                "{}    logstash_prefix: \"Logs\"\n",
                broken(31, "    logstash_format: true")
            ),
            "nagare.yaml:36: at `sinks.search.logstash_prefix`:",
        ),
        (
            format!(
                "{}    index_fallback: Logs_Other\n",
                broken(31, "    index: \"logs-{kubernetes.namespace_name}\"")
            ),
            "nagare.yaml:36: at `sinks.search.index_fallback`:",
        ),
        (
            format!(
                "{}    template: {{install: true}}\n",
                broken(31, "    index: \"{kubernetes.namespace_name}-%Y.%m.%d\"")
            ),
            "nagare.yaml:36: at `sinks.search.template`: the index name starts with a field or a date",
        ),
        (
            appended("    template:\n      name: _logs\n"),
            "nagare.yaml:37: at `sinks.search.template.name`: `_logs` is not a template name",
        ),
        (
            appended("    template:\n      ilm_policy: \" \"\n"),
            "nagare.yaml:37: at `sinks.search.template.ilm_policy`: the policy name is empty",
        ),
        (
            appended("    aws:\n      region: EU-West-1\n"),
            "nagare.yaml:37: at `sinks.search.aws.region`: `EU-West-1` is not a region name",
        ),
        (
            appended("    aws:\n      profile: \"\"\n"),
            "nagare.yaml:37: at `sinks.search.aws.profile`: must not be empty",
        ),
        (
            appended("    aws:\n      role_arn: nagare-writer\n"),
            "nagare.yaml:37: at `sinks.search.aws.role_arn`: `nagare-writer` is not a role ARN",
        ),
        (
            appended("    aws:\n      external_id: abc\n"),
            "nagare.yaml:37: at `sinks.search.aws.external_id`: an external id is given to the role assumed",
        ),
        (
            appended("    aws:\n      sts_endpoint: sts.example\n"),
            "nagare.yaml:37: at `sinks.search.aws.sts_endpoint`: `sts.example` is not an http:// or https:// URL",
        ),
    ];
    assert_refused(cases);
}

/// The `aws:` block of the Elasticsearch sink: the service is `es` or `aoss`, and
/// Serverless refuses document ids; the CloudWatch sink's `aws:` takes no service.
#[test]
fn aws_signing_mistakes_name_their_line_and_key() {
    let cases: &[(&str, &str)] = &[
        (
            "    aws:\n      region: eu-west-1\n      service: opensearch\n",
            "nagare.yaml:38: at `sinks.search.aws.service`: unknown variant `opensearch`, expected `es` or `aoss`",
        ),
        (
            "    id_key: line_id\n    aws:\n      service: aoss\n",
            "nagare.yaml:36: at `sinks.search.id_key`: OpenSearch Serverless (`aws.service: aoss`) refuses a document id",
        ),
        (
            "    op_type: create\n    id_key: line_id\n    aws: { service: aoss }\n",
            "nagare.yaml:37: at `sinks.search.id_key`: OpenSearch Serverless (`aws.service: aoss`) refuses a document id in create actions",
        ),
        (
            "  cw:\n    type: cloudwatch_logs\n    match: \"x.**\"\n    log_group_name: g\n    log_stream_name: s\n    aws:\n      service: es\n",
            "nagare.yaml:42: at `sinks.cw.aws.service`: the cloudwatch_logs sink signs for its own API",
        ),
    ];
    assert_refused(
        cases
            .iter()
            .map(|(extra, want)| (format!("{BASE}{extra}"), *want)),
    );
    let (code, err) = validate(&format!(
        "{BASE}    aws:\n      region: eu-west-1\n      service: aoss\n"
    ));
    assert_eq!(code, 0, "{err}");
}
