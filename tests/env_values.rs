//! `${ENV}` values in the real binary: secrets that look like YAML reach the records
//! exactly, a multi-line PEM key stays one value, and `port: ${PORT}` and
//! `use_204_response: ${FLAG}` get a number and a boolean.

#![cfg(all(feature = "forwarder", feature = "aggregator"))]

mod support;

use std::process::Command;
use std::time::Duration;

use nagare_testkit::{Child, free_port, wait_until};
use support::{Nagare, binary, read_ndjson};

const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nq+/=\n-----END PRIVATE KEY-----\n";

/// Field name, variable, value.
const VALUES: &[(&str, &str, &str)] = &[
    ("hash", "V_HASH", "a #b"),
    ("colon", "V_COLON", "p: q"),
    ("star", "V_STAR", "*x"),
    ("amp", "V_AMP", "&y"),
    ("bang", "V_BANG", "!z"),
    ("brace", "V_BRACE", "{a: 1}"),
    ("bracket", "V_BRACKET", "[1]"),
    ("quote", "V_QUOTE", "'q"),
    ("pem", "V_PEM", PEM),
];

#[test]
fn env_values_reach_records_exactly_and_keep_their_types() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("out.ndjson");
    let records: String = VALUES
        .iter()
        .map(|(field, var, _)| format!("      {field}: ${{{var}}}\n"))
        .collect();
    let config = format!(
        "data_dir: {data}\n\
         sources:\n  in:\n    type: http\n    bind: 127.0.0.1:${{HTTP_PORT}}\n    use_204_response: ${{FLAG}}\n\
         filters:\n  secrets:\n    type: record_modifier\n    match: \"**\"\n    records:\n{records}      \
         inside: \"<${{V_HASH}}>\"\n      flow: {{ inner: ${{V_BRACE}} }}\n      port: ${{PORT}}\n\
         sinks:\n  out:\n    type: file\n    match: \"app.**\"\n    path: {out}\n    buffer:\n      flush_interval: 100ms\n  \
         aggregators:\n    type: forward\n    match: \"nothing.**\"\n    servers: [{{ host: 127.0.0.1, port: ${{PORT}} }}]\n",
        data = dir.path().join("data").display(),
        out = out.display(),
    );
    let path = dir.path().join("nagare.yaml");
    std::fs::write(&path, &config).unwrap();
    let mut cmd = Command::new(binary());
    cmd.args(["run", "-c"])
        .arg(&path)
        .env("HTTP_PORT", port.to_string())
        .env("FLAG", "true")
        .env("PORT", "24224");
    for (_, var, value) in VALUES {
        cmd.env(var, value);
    }
    let mut nagare = Nagare {
        child: Child::spawn("nagare", cmd),
        config: path,
    };

    let client = reqwest::blocking::Client::new();
    let mut status = None;
    let up = wait_until(Duration::from_secs(20), || {
        nagare.assert_running();
        status = client
            .post(format!("http://127.0.0.1:{port}/app.env"))
            .json(&serde_json::json!({"message": "hello"}))
            .send()
            .ok()
            .map(|r| r.status().as_u16());
        status.is_some()
    });
    assert!(
        up,
        "the http source never answered\n{}",
        nagare.child.logs()
    );
    assert_eq!(
        status,
        Some(204),
        "use_204_response: ${{FLAG}} with FLAG=true"
    );
    let arrived = wait_until(Duration::from_secs(20), || !read_ndjson(&out).is_empty());
    assert!(arrived, "{}", nagare.child.logs());
    assert!(nagare.terminate(Duration::from_secs(20)).success());

    let lines = read_ndjson(&out);
    let record = &lines[0]["record"];
    for (field, _, value) in VALUES {
        assert_eq!(record[field], *value, "`{field}` in {record}");
    }
    assert_eq!(record["inside"], "<a #b>");
    assert_eq!(record["flow"]["inner"], "{a: 1}");
    assert_eq!(record["port"], 24224, "a plain `${{PORT}}` is a number");
    assert_eq!(record["message"], "hello");
}

/// An Elasticsearch API key or password, or the `aws:` block's external id, from a
/// variable set to nothing (a secret whose key is there but empty): `nagare
/// validate` refuses it, naming the line and key, where YAML alone would read null
/// and run without that credential.
#[test]
fn a_secret_from_a_variable_set_to_nothing_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (keys, line, key, reason) in [
        (
            "    api_key: ${ES_API_KEY}\n",
            11,
            "api_key",
            "the API key is empty",
        ),
        (
            "    user: elastic\n    password: ${ES_PASSWORD}\n",
            12,
            "password",
            "the password is empty",
        ),
        (
            "    aws:\n      role_arn: arn:aws:iam::123456789012:role/r\n      external_id: ${EXTERNAL_ID}\n",
            13,
            "aws.external_id",
            "the external id is empty",
        ),
    ] {
        let config = format!(
            "data_dir: {data}\n\
             sources:\n  in:\n    type: http\n    bind: 127.0.0.1:9880\n\
             sinks:\n  search:\n    type: elasticsearch\n    match: \"**\"\n    endpoints: [\"http://es:9200\"]\n{keys}",
            data = dir.path().join("data").display(),
        );
        let path = dir.path().join("nagare.yaml");
        std::fs::write(&path, &config).unwrap();
        let out = Command::new(binary())
            .args(["validate", "-c"])
            .arg(&path)
            .env("ES_API_KEY", "")
            .env("ES_PASSWORD", "")
            .env("EXTERNAL_ID", "")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        let want = format!("nagare.yaml:{line}: at `sinks.search.{key}`: {reason}");
        assert!(err.contains(&want), "want {want}\n got {err}");
        assert!(err.contains("a variable set to nothing"), "{err}");
    }
}
