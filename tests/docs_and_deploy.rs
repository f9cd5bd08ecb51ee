//! What the documentation and the deploy manifests show must work: every complete
//! config in README.md and docs/ and every config embedded in deploy/kubernetes passes
//! `nagare validate`, and every manifest passes Kubernetes' own schemas (offline,
//! `kubernetes-validate --strict`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize as _;
use support::binary;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Values for the environment variables the examples reference.
const ENV: [(&str, &str); 8] = [
    ("NODE_NAME", "node-1"),
    ("FORWARD_SHARED_KEY", "cluster-key"),
    ("LEGACY_SHARED_KEY", "legacy-key"),
    ("ES_URL", "http://elasticsearch:9200"),
    ("ES_PASSWORD", "secret"),
    ("POD_NAME", "legacy-app"),
    ("POD_NAMESPACE", "default"),
    ("CLUSTER_NAME", "prod"),
];

fn validate(name: &str, config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, config).unwrap();
    let out = Command::new(binary())
        .args(["validate", "-c"])
        .arg(&path)
        .envs(ENV)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The ```yaml blocks of a Markdown file that are whole configs.
fn complete_configs(markdown: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(markdown).unwrap();
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        match &mut block {
            None if line.trim_start().starts_with("```yaml") => block = Some(String::new()),
            Some(b) if line.trim_start().starts_with("```") => {
                let has = |k: &str| b.lines().any(|l| l.starts_with(k));
                if has("sources:") && has("sinks:") {
                    out.push(b.clone());
                }
                block = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    out
}

#[test]
fn documented_configs_are_valid() {
    let mut checked = 0;
    for doc in ["README.md", "docs/configuration.md"] {
        for (i, config) in complete_configs(&repo().join(doc)).into_iter().enumerate() {
            let (ok, out) = validate("example.yaml", &config);
            assert!(
                ok,
                "{doc}, complete config #{}, does not validate:\n{config}\n{out}",
                i + 1
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "expected the README and the reference to show whole configs, found {checked}"
    );
}

/// The `nagare.yaml` of every ConfigMap in deploy/kubernetes.
fn embedded_configs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo().join("deploy/kubernetes")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let v = serde_norway::Value::deserialize(doc).unwrap();
            if v["kind"].as_str() == Some("ConfigMap")
                && let Some(config) = v["data"]["nagare.yaml"].as_str()
            {
                out.push((path.display().to_string(), config.to_string()));
            }
        }
    }
    out
}

#[test]
fn deployed_configs_are_valid() {
    let configs = embedded_configs();
    assert_eq!(
        configs.len(),
        3,
        "forwarder, aggregator and sidecar ConfigMaps"
    );
    for (file, config) in configs {
        let (ok, out) = validate("nagare.yaml", &config);
        assert!(ok, "the config in {file} does not validate:\n{out}");
    }
}

fn kubernetes_validate(files: &[PathBuf]) -> (bool, String) {
    let bin = nagare_testkit::paths::require(
        nagare_testkit::paths::testenv().join("k8s/bin/kubernetes-validate"),
        "kubernetes-validate",
    );
    let out = Command::new(bin)
        .args(["--strict", "-k", "1.30.0"])
        .args(files)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn manifests_pass_kubernetes_schemas() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5);
    let (ok, out) = kubernetes_validate(&files);
    assert!(ok, "{out}");
    // The check itself catches a misspelled field.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let text = std::fs::read_to_string(repo().join("deploy/kubernetes/aggregator.yaml")).unwrap();
    std::fs::write(&broken, text.replace("replicas: 3", "replicaz: 3")).unwrap();
    let (ok, out) = kubernetes_validate(&[broken]);
    assert!(!ok, "a misspelled field must fail validation:\n{out}");
}
