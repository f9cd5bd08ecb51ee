//! What the documentation and the deploy manifests show must work: every complete
//! config in README.md and docs/ and every config embedded in deploy/kubernetes and
//! deploy/ecs passes `nagare validate`, every manifest passes Kubernetes' own schemas
//! (offline, `kubernetes-validate --strict`), and every ECS task definition the ECS
//! API's model, with its volumes, dependencies and FireLens socket consistent.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use nagare_testkit::docs::{markdown_yaml_blocks, module_doc_yaml};
use serde::Deserialize as _;
use support::binary;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Values for the environment variables the examples reference.
const ENV: [(&str, &str); 15] = [
    ("NODE_NAME", "node-1"),
    ("FORWARD_SHARED_KEY", "cluster-key"),
    ("LEGACY_SHARED_KEY", "legacy-key"),
    ("ES_URL", "http://elasticsearch:9200"),
    ("ES_PASSWORD", "secret"),
    ("POD_NAME", "legacy-app"),
    ("POD_NAMESPACE", "default"),
    ("CLUSTER_NAME", "prod"),
    ("HTTP_INPUT_TOKEN", "token"),
    ("TLS_KEY_PASSPHRASE", "passphrase"),
    ("FORWARD_PASSWORD", "node-password"),
    ("LEGACY_PASSWORD", "legacy-password"),
    ("GOOGLE_CLOUD_PROJECT", "prod-logs"),
    // Elastic's published example Cloud ID, and an API key in the `encoded` form.
    (
        "ES_CLOUD_ID",
        "staging:dXMtZWFzdC0xLmF3cy5mb3VuZC5pbyRjZWM2ZjI2MWE3NGJmMjRjZTMzYmI4ODExYjg0Mjk0ZiRjNmMyY2E2ZDA0MjI0OWFmMGNjN2Q3YTllOTYyNTc0Mw==",
    ),
    (
        "ES_API_KEY",
        "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==",
    ),
];

/// Runs `cmd`: whether it succeeded, and what it printed.
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn validate(name: &str, config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, config).unwrap();
    run(Command::new(binary())
        .args(["validate", "-c"])
        .arg(&path)
        .envs(ENV))
}

/// A stand-in for each section a snippet leaves out, so that a snippet showing one
/// component validates as a whole config around it.
const STAND_INS: [(&str, &str); 2] = [
    (
        "sources:",
        "sources:\n  stand_in_source:\n    type: http\n    bind: 127.0.0.1:0\n",
    ),
    (
        "sinks:",
        "sinks:\n  stand_in_sink:\n    type: stdout\n    match: \"**\"\n",
    ),
];

/// The config a ```yaml block of the docs shows: the block itself when it is a whole
/// config (it has `sources:` and `sinks:`), else the block with a stand-in for the
/// section it leaves out; `None` for a block that shows no component.
fn as_config(block: &str) -> Option<(bool, String)> {
    let has = |k: &str| block.lines().any(|l| l.starts_with(k));
    if !["sources:", "filters:", "sinks:"].iter().any(|k| has(k)) {
        return None;
    }
    let whole = has("sources:") && has("sinks:");
    let mut config = block.to_string();
    for (section, stand_in) in STAND_INS {
        if !has(section) {
            config.push_str(stand_in);
        }
    }
    Some((whole, config))
}

/// Every page of the docs that shows configs.
fn doc_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    pages.insert(0, repo().join("README.md"));
    pages
}

#[test]
fn documented_configs_are_valid() {
    let (mut whole, mut snippets) = (0, 0);
    for page in doc_pages() {
        let name = page.strip_prefix(repo()).unwrap().display().to_string();
        for (line, block) in markdown_yaml_blocks(&page) {
            let Some((is_whole, config)) = as_config(&block) else {
                continue;
            };
            let (ok, out) = validate("example.yaml", &config);
            assert!(
                ok,
                "{name}, the config at line {line}, does not validate:\n{config}\n{out}"
            );
            if is_whole {
                whole += 1;
            } else {
                snippets += 1;
            }
        }
    }
    assert!(
        whole >= 3 && snippets >= 10,
        "expected the README and the reference to show whole configs and one per component, found {whole} and {snippets}"
    );
}

/// The `.rs` files under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The examples in the module docs of components (and of the config module) are
/// configs the binary accepts, each with a stand-in for the sections it leaves out.
#[test]
fn module_doc_configs_are_valid() {
    let mut files = Vec::new();
    for dir in [
        "src",
        "core/src",
        "parsers/src",
        "forwarder/src",
        "aggregator/src",
    ] {
        rust_files(&repo().join(dir), &mut files);
    }
    files.sort();
    let mut checked = Vec::new();
    for file in files {
        let block = module_doc_yaml(&std::fs::read_to_string(&file).unwrap());
        let Some((_, config)) = as_config(&block) else {
            continue;
        };
        let name = file.strip_prefix(repo()).unwrap().display().to_string();
        let (ok, out) = validate("example.yaml", &config);
        assert!(
            ok,
            "the example in {name} does not validate:\n{config}\n{out}"
        );
        checked.push(name);
    }
    assert!(
        checked.len() >= 8,
        "expected an example in the docs of every component, found {checked:?}"
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
        6,
        "forwarder, aggregator (Elasticsearch, CloudWatch Logs and BigQuery), sidecar and Fargate sidecar ConfigMaps"
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
    run(Command::new(bin)
        .args(["--strict", "-k", "1.30.0"])
        .args(files))
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

// ---------------------------------------------------------------------------
// ECS task definitions (deploy/ecs).

/// Every task definition in deploy/ecs: its file name and its JSON.
fn task_definitions() -> Vec<(String, serde_json::Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/ecs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let json =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
            (name, json)
        })
        .collect()
}

/// Checks task definitions against the ECS API's own description of
/// RegisterTaskDefinition (botocore's service model, with which the AWS CLI and the
/// SDK for Python check a request before sending it): unknown keys, types, required
/// members.
const ECS_MODEL_CHECK: &str = r#"
import json, sys
import botocore.session
from botocore.validate import ParamValidator
model = botocore.session.get_session().get_service_model('ecs')
shape = model.operation_model('RegisterTaskDefinition').input_shape
failed = False
for path in sys.argv[1:]:
    report = ParamValidator().validate(json.load(open(path)), shape)
    if report.has_errors():
        print(path + ':\n' + report.generate_report())
        failed = True
sys.exit(1 if failed else 0)
"#;

fn ecs_model_check(files: &[PathBuf]) -> (bool, String) {
    run(Command::new(nagare_testkit::paths::moto_python())
        .arg("-c")
        .arg(ECS_MODEL_CHECK)
        .args(files))
}

#[test]
fn ecs_task_definitions_match_the_ecs_api_model() {
    let files: Vec<PathBuf> = task_definitions()
        .iter()
        .map(|(name, _)| repo().join("deploy/ecs").join(name))
        .collect();
    assert_eq!(
        files.len(),
        2,
        "the tail sidecar and the FireLens task definitions"
    );
    let (ok, out) = ecs_model_check(&files);
    assert!(ok, "{out}");
    // The check itself catches a misspelled key.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.json");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    std::fs::write(
        &broken,
        text.replacen("\"mountPoints\"", "\"mountpoints\"", 1),
    )
    .unwrap();
    let (ok, out) = ecs_model_check(&[broken]);
    assert!(
        !ok && out.contains("mountpoints"),
        "a misspelled key must fail:\n{out}"
    );
}

/// The container definitions of a task definition, by name.
fn containers(td: &serde_json::Value) -> Vec<&serde_json::Value> {
    td["containerDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .collect()
}

/// The nagare config a container gets in `NAGARE_CONFIG_YAML`, if it gets one.
fn config_of(container: &serde_json::Value) -> Option<String> {
    container["environment"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == "NAGARE_CONFIG_YAML")
        .and_then(|e| e["value"].as_str())
        .map(str::to_string)
}

/// The volume a container mounts at `dir`, if any.
fn volume_at<'a>(container: &'a serde_json::Value, dir: &str) -> Option<&'a str> {
    container["mountPoints"]
        .as_array()?
        .iter()
        .find(|m| m["containerPath"] == dir)
        .and_then(|m| m["sourceVolume"].as_str())
}

#[test]
fn ecs_task_definitions_hang_together() {
    for (file, td) in task_definitions() {
        let all = containers(&td);
        let names: Vec<&str> = all.iter().map(|c| c["name"].as_str().unwrap()).collect();
        let volumes: Vec<&str> = td["volumes"]
            .as_array()
            .map(|v| v.iter().map(|v| v["name"].as_str().unwrap()).collect())
            .unwrap_or_default();
        let mut mounted = Vec::new();
        for c in &all {
            let name = c["name"].as_str().unwrap();
            assert!(
                c["image"].is_string() && c["essential"].is_boolean(),
                "{file}: {name}"
            );
            for m in c["mountPoints"].as_array().into_iter().flatten() {
                let v = m["sourceVolume"].as_str().unwrap();
                assert!(
                    volumes.contains(&v),
                    "{file}: {name} mounts `{v}`, not a volume of the task"
                );
                mounted.push(v);
            }
            for d in c["dependsOn"].as_array().into_iter().flatten() {
                let on = d["containerName"].as_str().unwrap();
                assert!(
                    names.contains(&on) && on != name,
                    "{file}: {name} depends on `{on}`"
                );
                let condition = d["condition"].as_str().unwrap();
                assert!(
                    ["START", "COMPLETE", "SUCCESS", "HEALTHY"].contains(&condition),
                    "{file}: {condition}"
                );
            }
            if c["logConfiguration"]["logDriver"] == "awsfirelens" {
                let router = all.iter().find(|r| r["firelensConfiguration"].is_object());
                let router = router.unwrap_or_else(|| {
                    panic!("{file}: {name} logs to FireLens, but no container is its log router")
                });
                let starts_after = c["dependsOn"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|d| d["containerName"] == router["name"]);
                assert!(
                    starts_after,
                    "{file}: {name} must start after the log router"
                );
            }
        }
        for v in &volumes {
            assert!(
                mounted.contains(v),
                "{file}: volume `{v}` is mounted nowhere"
            );
        }
        if td["requiresCompatibilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "FARGATE")
        {
            assert_eq!(td["networkMode"], "awsvpc", "{file}: Fargate needs awsvpc");
        }

        // The nagare container: its config in the environment, the image's command
        // without --config (which would conflict with it), its state on a volume.
        let nagare: Vec<_> = all.iter().filter(|c| config_of(c).is_some()).collect();
        assert_eq!(nagare.len(), 1, "{file}: one nagare container");
        let nagare = nagare[0];
        assert_eq!(nagare["command"], serde_json::json!(["run"]), "{file}");
        let config: serde_norway::Value =
            serde_norway::from_str(&config_of(nagare).unwrap()).unwrap();
        let data_dir = config["data_dir"].as_str().unwrap();
        assert!(
            volume_at(nagare, data_dir).is_some(),
            "{file}: data_dir {data_dir} is on no volume"
        );
        let sources = config["sources"].as_mapping().unwrap();
        for source in sources.values() {
            if source["type"] == "tail" {
                // Every tailed directory is a volume the app writes to.
                for glob in source["paths"].as_sequence().unwrap() {
                    let dir = Path::new(glob.as_str().unwrap())
                        .parent()
                        .unwrap()
                        .to_str()
                        .unwrap();
                    let volume = volume_at(nagare, dir)
                        .unwrap_or_else(|| panic!("{file}: {dir} is on no volume"));
                    let writer = all
                        .iter()
                        .any(|c| c["name"] != nagare["name"] && volume_at(c, dir) == Some(volume));
                    assert!(writer, "{file}: no other container writes to {dir}");
                }
            }
        }
        if nagare["firelensConfiguration"].is_object() {
            let kind = nagare["firelensConfiguration"]["type"].as_str().unwrap();
            assert!(["fluentbit", "fluentd"].contains(&kind), "{file}: {kind}");
            assert_ne!(
                nagare["logConfiguration"]["logDriver"], "awsfirelens",
                "{file}: the router cannot log to itself"
            );
            // The ECS agent mounts the task's socket directory at /var/run/ in the
            // log router, and points the app containers' fluentd log driver at the
            // fluent.sock in it.
            let on_socket = sources
                .values()
                .any(|s| s["type"] == "forward" && s["unix_path"] == "/var/run/fluent.sock");
            assert!(
                on_socket,
                "{file}: the log router must listen on /var/run/fluent.sock"
            );
        }
    }
}

#[test]
fn ecs_configs_are_valid() {
    for (file, td) in task_definitions() {
        let config = containers(&td).into_iter().find_map(config_of).unwrap();
        // As the container gets it: in NAGARE_CONFIG_YAML, no file.
        let (ok, out) = run(Command::new(binary())
            .arg("validate")
            .env_remove("NAGARE_CONFIG")
            .env("NAGARE_CONFIG_YAML", &config)
            .envs(ENV));
        assert!(
            ok,
            "the config in {file} does not validate:\n{config}\n{out}"
        );
        assert!(
            out.starts_with("NAGARE_CONFIG_YAML: valid") && out.contains("cloudwatch"),
            "{file}: {out}"
        );
    }
}

// ---------------------------------------------------------------------------
// Probes, scraping and monitoring (deploy/kubernetes).

/// Every document of every manifest in deploy/kubernetes, with its file name.
fn manifests() -> Vec<(String, serde_norway::Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            out.push((name.clone(), serde_norway::Value::deserialize(doc).unwrap()));
        }
    }
    out
}

/// The pod spec and pod metadata of a workload; `None` for other kinds.
fn pod_of(doc: &serde_norway::Value) -> Option<(&serde_norway::Value, &serde_norway::Value)> {
    match doc["kind"].as_str()? {
        "Pod" => Some((&doc["spec"], &doc["metadata"])),
        "DaemonSet" | "StatefulSet" | "Deployment" | "Job" => Some((
            &doc["spec"]["template"]["spec"],
            &doc["spec"]["template"]["metadata"],
        )),
        _ => None,
    }
}

/// The port a probe's `port` (a number or a container port's name) points at.
fn probe_port(container: &serde_norway::Value, port: &serde_norway::Value) -> Option<u64> {
    if let Some(n) = port.as_u64() {
        return Some(n);
    }
    let name = port.as_str()?;
    container["ports"]
        .as_sequence()?
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_u64())
}

/// Whether every label of `selector` is on `labels`.
fn selects(selector: &serde_norway::Value, labels: &serde_norway::Value) -> bool {
    let wanted = selector.as_mapping().expect("a selector's labels");
    !wanted.is_empty()
        && wanted
            .iter()
            .all(|(k, v)| labels[k.as_str().unwrap()] == *v)
}

#[test]
fn every_nagare_container_is_probed_and_scraped_on_its_api_port() {
    let docs = manifests();
    let config_maps: Vec<(String, serde_norway::Value)> = docs
        .iter()
        .filter(|(_, d)| d["kind"] == "ConfigMap")
        .filter_map(|(_, d)| {
            let config = serde_norway::from_str(d["data"]["nagare.yaml"].as_str()?).unwrap();
            Some((d["metadata"]["name"].as_str().unwrap().to_string(), config))
        })
        .collect();
    let mut checked = Vec::new();
    for (file, doc) in &docs {
        let Some((spec, metadata)) = pod_of(doc) else {
            continue;
        };
        let all = spec["containers"]
            .as_sequence()
            .into_iter()
            .chain(spec["initContainers"].as_sequence())
            .flatten();
        for container in all {
            if !container["image"].as_str().unwrap().starts_with("nagare") {
                continue;
            }
            let name = format!("{file}: {}", container["name"].as_str().unwrap());
            // The config it runs: the ConfigMap behind the volume at /etc/nagare.
            let volume = container["volumeMounts"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|m| m["mountPath"] == "/etc/nagare")
                .unwrap_or_else(|| panic!("{name}: no config volume"))["name"]
                .clone();
            let map = spec["volumes"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|v| v["name"] == volume)
                .unwrap()["configMap"]["name"]
                .as_str()
                .unwrap();
            let config = &config_maps
                .iter()
                .find(|(n, _)| n == map)
                .unwrap_or_else(|| panic!("{name}: ConfigMap {map} is not in deploy/kubernetes"))
                .1;
            let bind: std::net::SocketAddr = config["api"]["bind"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: the config sets no api.bind"))
                .parse()
                .unwrap();
            assert!(
                bind.ip().is_unspecified(),
                "{name}: api.bind {bind} is not reachable by the kubelet's probes"
            );
            for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
                let get = &container[probe]["httpGet"];
                assert_eq!(get["path"].as_str(), Some(path), "{name}: {probe}");
                assert_eq!(
                    probe_port(container, &get["port"]),
                    Some(u64::from(bind.port())),
                    "{name}: the {probe} is not on api.bind's port {}",
                    bind.port()
                );
            }
            let annotations = &metadata["annotations"];
            assert_eq!(annotations["prometheus.io/scrape"], "true", "{name}");
            assert_eq!(
                annotations["prometheus.io/port"].as_str(),
                Some(bind.port().to_string().as_str()),
                "{name}"
            );
            assert_eq!(annotations["prometheus.io/path"], "/metrics", "{name}");
            checked.push(name);
        }
    }
    assert_eq!(
        checked.len(),
        6,
        "forwarder, three aggregators, two sidecars: {checked:?}"
    );
}

#[test]
fn service_monitors_and_the_disruption_budget_select_the_workloads() {
    let docs = manifests();
    let of_kind = |kind: &str| -> Vec<&serde_norway::Value> {
        docs.iter()
            .filter(|(f, d)| d["kind"] == kind && (kind != "Service" || f == "monitoring.yaml"))
            .map(|(_, d)| d)
            .collect()
    };
    let workloads: Vec<(&serde_norway::Value, &serde_norway::Value)> = docs
        .iter()
        .filter_map(|(_, d)| pod_of(d).map(|p| (d, p.0)))
        .collect();
    let monitors = of_kind("ServiceMonitor");
    let mut scraped = Vec::new();
    for monitor in &monitors {
        let name = monitor["metadata"]["name"].as_str().unwrap();
        let services: Vec<_> = of_kind("Service")
            .into_iter()
            .filter(|s| {
                s["metadata"]["namespace"] == monitor["metadata"]["namespace"]
                    && selects(
                        &monitor["spec"]["selector"]["matchLabels"],
                        &s["metadata"]["labels"],
                    )
            })
            .collect();
        assert_eq!(
            services.len(),
            1,
            "ServiceMonitor {name} selects one Service"
        );
        let service = services[0];
        for endpoint in monitor["spec"]["endpoints"].as_sequence().unwrap() {
            assert_eq!(endpoint["path"], "/metrics", "{name}");
            let port = service["spec"]["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|p| p["name"] == endpoint["port"])
                .unwrap_or_else(|| {
                    panic!("{name}: the Service has no port {:?}", endpoint["port"])
                });
            // The Service's pods: its target port is their api port.
            let pods: Vec<_> = workloads
                .iter()
                .filter(|(w, _)| {
                    w["metadata"]["namespace"] == service["metadata"]["namespace"]
                        && selects(
                            &service["spec"]["selector"],
                            &pod_of(w).unwrap().1["labels"],
                        )
                })
                .collect();
            assert!(!pods.is_empty(), "{name}: the Service selects no workload");
            for (w, spec) in pods {
                let nagare = spec["containers"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .find(|c| c["image"].as_str().unwrap().starts_with("nagare"));
                let nagare = nagare.unwrap_or_else(|| panic!("{name}: no nagare container"));
                assert_eq!(
                    probe_port(nagare, &port["targetPort"]),
                    Some(24220),
                    "{name}: {} is not scraped on its api port",
                    w["metadata"]["name"].as_str().unwrap()
                );
                scraped.push(w["kind"].as_str().unwrap().to_string());
            }
        }
    }
    assert!(
        scraped.contains(&"DaemonSet".to_string()) && scraped.contains(&"StatefulSet".to_string()),
        "the forwarders and the aggregators are scraped: {scraped:?}"
    );
    let budgets = of_kind("PodDisruptionBudget");
    assert_eq!(budgets.len(), 1);
    let budget = &budgets[0]["spec"];
    assert!(budget["maxUnavailable"] == 1 || budget["minAvailable"].is_u64());
    let covered: Vec<_> = workloads
        .iter()
        .filter(|(w, _)| {
            selects(
                &budget["selector"]["matchLabels"],
                &pod_of(w).unwrap().1["labels"],
            )
        })
        .map(|(w, _)| w["kind"].as_str().unwrap())
        .collect();
    assert!(
        !covered.is_empty() && covered.iter().all(|k| *k == "StatefulSet"),
        "the budget covers the aggregators only: {covered:?}"
    );
}

#[test]
fn ecs_nagare_containers_check_their_health_with_the_image_binary() {
    let dockerfile = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    for (file, td) in task_definitions() {
        let nagare = containers(&td)
            .into_iter()
            .find(|c| config_of(c).is_some())
            .unwrap();
        let command: Vec<&str> = nagare["healthCheck"]["command"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: the nagare container has no healthCheck"))
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            command[..3],
            ["CMD", "/usr/local/bin/nagare", "health"],
            "{file}"
        );
        assert!(
            dockerfile.contains(&format!(
                "COPY --from=build /src/target/release/nagare {}",
                command[1]
            )),
            "{file}: the image has no {}",
            command[1]
        );
        // The URL it asks is where the config's admin API listens.
        let config: serde_norway::Value =
            serde_norway::from_str(&config_of(nagare).unwrap()).unwrap();
        let bind = config["api"]["bind"].as_str().unwrap_or("127.0.0.1:24220");
        let port = bind.rsplit(':').next().unwrap();
        let url = command
            .iter()
            .skip_while(|a| **a != "--url")
            .nth(1)
            .copied()
            .unwrap_or("http://127.0.0.1:24220");
        assert!(
            url.ends_with(&format!(":{port}")),
            "{file}: {url} vs api.bind {bind}"
        );
        // The arguments parse.
        let mut help = Command::new(binary());
        help.args(&command[2..]).arg("--help");
        let (ok, out) = run(&mut help);
        assert!(ok, "{file}: {command:?}: {out}");
    }
}
