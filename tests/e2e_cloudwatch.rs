//! The real `nagare` binary delivering to CloudWatch Logs (moto's server, signature
//! checking on): records in over the http source, out through the
//! `cloudwatch_logs` sink, with credentials from an AWS profile whose
//! `credential_process` reads a key file the test swaps while nagare runs.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nagare_testkit::moto::{AccessKey, Moto};
use nagare_testkit::{Child, free_port, wait_until};
use serde_json::{Value, json};
use support::{binary, plain};

/// Writes the key `credential_process` hands out, expiring in two seconds so that
/// the SDK asks again at the next call (as with any short-lived credentials).
fn write_key(dir: &Path, key: &AccessKey) {
    let tmp = dir.join("key.tmp");
    std::fs::write(&tmp, format!("{}\n{}\n", key.id, key.secret)).unwrap();
    std::fs::rename(tmp, dir.join("key")).unwrap();
}

fn aws_files(dir: &Path) {
    let script = dir.join("creds.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ read id; read secret; }} < {key}\n\
             exp=$(date -u -d '+2 seconds' +%Y-%m-%dT%H:%M:%SZ)\n\
             printf '{{\"Version\":1,\"AccessKeyId\":\"%s\",\"SecretAccessKey\":\"%s\",\"Expiration\":\"%s\"}}' \"$id\" \"$secret\" \"$exp\"\n",
            key = dir.join("key").display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("aws-config"),
        format!(
            "[profile swap]\ncredential_process = sh {}\n",
            script.display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("aws-credentials"), "").unwrap();
}

fn post(port: u16, tag: &str, records: &Value) -> u16 {
    reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{port}/{tag}"))
        .json(records)
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[test]
fn the_binary_delivers_to_cloudwatch_once_its_refused_key_is_replaced() {
    let moto = Moto::shared();
    let dir = tempfile::tempdir().unwrap();
    let root = Moto::unique("/e2e");
    aws_files(dir.path());
    let right = moto.credentials().clone();
    write_key(
        dir.path(),
        &AccessKey {
            id: right.id.clone(),
            secret: "wrong-secret".into(),
        },
    );
    let port = free_port();
    let config = format!(
        "data_dir: {data}\n\
         sources:\n  in:\n    type: http\n    bind: 127.0.0.1:{port}\n\
         sinks:\n  cloudwatch:\n    type: cloudwatch_logs\n    match: \"kube.**\"\n\
        \x20   log_group_name: \"{root}/{{kubernetes.namespace_name}}\"\n\
        \x20   log_group_name_fallback: \"{root}/unknown\"\n\
        \x20   log_stream_name: \"{{kubernetes.pod_name}}\"\n\
        \x20   log_stream_name_fallback: \"{{tag}}\"\n\
        \x20   log_retention_days: 7\n\
        \x20   endpoint: \"{endpoint}\"\n\
        \x20   batch: {{ timeout: 200ms }}\n\
        \x20   aws: {{ region: us-east-1, profile: swap }}\n\
        \x20   buffer: {{ retry_wait: 100ms, retry_max_interval: 500ms, retry_max_times: 2 }}\n",
        data = dir.path().join("data").display(),
        endpoint = moto.url(),
    );
    let mut nagare = spawn(dir.path(), &config, port);

    let records: Vec<Value> = (0..50)
        .map(|n| {
            let ns = if n % 2 == 0 { "shop" } else { "payments" };
            json!({ "n": n, "msg": format!("line {n}"), "kubernetes": { "namespace_name": ns, "pod_name": format!("web-{}", n % 3) } })
        })
        .collect();
    assert_eq!(post(port, "kube.app", &Value::Array(records)), 200);
    assert_eq!(post(port, "kube.other", &json!({ "n": 50 })), 200);

    // Refused (SignatureDoesNotMatch) past retry_max_times, with the hint, and
    // nothing dead-lettered.
    let refused = wait_until(Duration::from_secs(30), || {
        plain(&nagare.child_logs())
            .matches("SignatureDoesNotMatch")
            .count()
            >= 4
    });
    assert!(refused, "{}", nagare.logs());
    let logs = plain(&nagare.child_logs());
    assert!(
        logs.contains("profile `swap`") && logs.contains("us-east-1"),
        "{logs}"
    );
    assert_eq!(
        logs.matches("said once a minute").count(),
        1,
        "the refusal is said once a minute: {logs}"
    );
    assert!(!logs.contains("wrong-secret"), "a secret was logged");
    assert!(moto.log_groups().iter().all(|g| !g.starts_with(&root)));

    write_key(dir.path(), &right);
    let all = wait_until(Duration::from_secs(30), || {
        let shop: usize = moto
            .streams(&format!("{root}/shop"))
            .iter()
            .map(|s| moto.events(&format!("{root}/shop"), s).len())
            .sum();
        let payments: usize = moto
            .streams(&format!("{root}/payments"))
            .iter()
            .map(|s| moto.events(&format!("{root}/payments"), s).len())
            .sum();
        let unknown = moto.events(&format!("{root}/unknown"), "kube.other").len();
        shop + payments + unknown == 51
    });
    assert!(all, "{}", nagare.logs());
    assert_eq!(
        moto.describe_group(&format!("{root}/shop"))
            .unwrap()
            .retention_days,
        Some(7)
    );
    assert_eq!(
        moto.streams(&format!("{root}/shop")),
        ["web-0", "web-1", "web-2"]
    );
    let events = moto.events(&format!("{root}/shop"), "web-0");
    let numbers: Vec<i64> = events
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(&e.message).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(numbers, [0, 6, 12, 18, 24, 30, 36, 42, 48]);
    let dead = dir.path().join("data/dead-letter/cloudwatch.ndjson");
    assert!(
        !dead.exists(),
        "{}",
        std::fs::read_to_string(&dead).unwrap_or_default()
    );
    nagare.kill();
}

/// Runs `nagare run` on `config` with only the AWS files of `dir` (nothing from the
/// machine's environment), and waits for its http source on `port`.
fn spawn(dir: &Path, config: &str, port: u16) -> Child {
    let config_path = dir.join("nagare.yaml");
    std::fs::write(&config_path, config).unwrap();
    let mut cmd = Command::new(binary());
    cmd.args(["run", "-c"])
        .arg(&config_path)
        // A destination that refuses every request is logged once a minute; the
        // refusals between are at debug level, counted below.
        .env("NAGARE_LOG", "info,nagare_core::sink=debug")
        .env("AWS_CONFIG_FILE", dir.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("aws-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        cmd.env_remove(var);
    }
    let mut nagare = Child::spawn("nagare", cmd);
    let up = wait_until(Duration::from_secs(20), || {
        nagare.try_wait().is_none() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "the http source listens\n{}", nagare.logs());
    nagare
}

trait Logs {
    fn child_logs(&self) -> String;
}

impl Logs for Child {
    fn child_logs(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }
}
