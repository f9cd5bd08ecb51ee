//! The connection settings: `cloud_id`, `api_key`, `tls`, `api_version`,
//! `template`: how they parse, what is refused, and what they make.

use serde_json::json;

use super::super::template::index_patterns;
use super::super::version::Cluster;
use super::*;

fn refusal(yaml: &str) -> (String, String) {
    let e = config(yaml).validate().expect_err("should be invalid");
    (e.key, e.message)
}

const CLOUD_ID: &str = "staging:dXMtZWFzdC0xLmF3cy5mb3VuZC5pbyRjZWM2ZjI2MWE3NGJmMjRjZTMzYmI4ODExYjg0Mjk0ZiRjNmMyY2E2ZDA0MjI0OWFmMGNjN2Q3YTllOTYyNTc0Mw==";
/// base64("VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw"), the form Elasticsearch's
/// API key documentation shows as `encoded`.
const API_KEY: &str = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==";

#[test]
fn cloud_id_and_api_key_replace_endpoints_and_user() {
    let c = config(&format!("cloud_id: '{CLOUD_ID}'\napi_key: {API_KEY}\n"));
    c.validate().unwrap();
    assert_eq!(
        client::endpoints(&c).unwrap(),
        ["https://cec6f261a74bf24ce33bb8811b84294f.us-east-1.aws.found.io:443"]
    );
    assert!(matches!(Auth::of(&c), Auth::ApiKey(_)));
    assert_eq!(format!("{:?}", c.api_key), "Some(Secret(****))");
}

#[test]
fn connection_mistakes_are_refused_saying_why() {
    let cases: &[(&str, &str, &str)] = &[
        ("api_key: x\n", "endpoints", "or `cloud_id`"),
        (
            &format!("endpoints: [http://a:9200]\ncloud_id: '{CLOUD_ID}'\n"),
            "cloud_id",
            "not both",
        ),
        ("cloud_id: 'name:%%%'\n", "cloud_id", "not base64"),
        (
            "cloud_id: 'name:aG9zdA=='\n",
            "cloud_id",
            "host$elasticsearch_id$kibana_id",
        ),
        (
            &format!("endpoints: [http://a:9200]\napi_key: {API_KEY}\nuser: elastic\n"),
            "api_key",
            "not both",
        ),
        (
            "endpoints: [http://a:9200]\napi_key: 'VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw'\n",
            "api_key",
            "give the `encoded` value",
        ),
        (
            "endpoints: [http://a:9200]\napi_key: 'not base64!'\n",
            "api_key",
            "not base64",
        ),
        (
            "endpoints: [http://a:9200]\napi_key: aGVsbG8=\n",
            "api_key",
            "not to `id:api_key`",
        ),
        (
            "endpoints: [http://a:9200]\ntls: {ca_path: /x.pem}\n",
            "tls",
            "no endpoint is https://",
        ),
        (
            "endpoints: [https://a:9200]\ntls: {cert_path: /c.pem}\n",
            "tls",
            "both cert_path and private_key_path",
        ),
        (
            "endpoints: [https://a:9200]\ntls: {server_name: 'not a name'}\n",
            "tls.server_name",
            "not a host name",
        ),
        (
            "endpoints: [http://a:9200]\ntemplate: {name: _bad}\n",
            "template.name",
            "not a template name",
        ),
        (
            "endpoints: [http://a:9200]\ntemplate: {ilm_policy: a, ism_policy: b}\n",
            "template.ism_policy",
            "not both",
        ),
        (
            "endpoints: [http://a:9200]\napi_version: opensearch\ntemplate: {ilm_policy: a}\n",
            "template.ilm_policy",
            "OpenSearch has no ILM",
        ),
        (
            "endpoints: [http://a:9200]\napi_version: v8\ntemplate: {ism_policy: a}\n",
            "template.ism_policy",
            "Elasticsearch has no ISM",
        ),
        (
            "endpoints: [http://a:9200]\ntemplate: {file: /nonexistent/template.json}\n",
            "template.file",
            "cannot read /nonexistent/template.json",
        ),
    ];
    for (yaml, key, why) in cases {
        let (k, message) = refusal(yaml);
        assert_eq!(
            (k.as_str(), message.contains(why)),
            (*key, true),
            "{yaml}: {message}"
        );
    }
    // An api_version that does not exist is refused by the parser with the choices.
    let e = ConfigDocument::from_text("t.yaml", "endpoints: [http://a]\napi_version: v9\n", |_| {
        None
    })
    .unwrap()
    .parse::<ElasticsearchConfig>()
    .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("api_version"), "{e}");
    assert!(e.to_string().contains("opensearch"), "{e}");
}

#[test]
fn elasticsearch_6_actions_carry_the_doc_type() {
    let mut b = RequestBuilder::new(&config("endpoints: [http://a:9200]\nindex: app\n")).unwrap();
    b.set_type_name(true);
    let item = b
        .encode(CHUNK, 2, "t", EventTime::new(0, 0), &Map::new())
        .unwrap();
    assert_eq!(
        text(&item),
        format!(
            "{{\"index\":{{\"_index\":\"app\",\"_type\":\"_doc\",\"_id\":\"{CHUNK_HEX}-2\"}}}}\n{{\"@timestamp\":\"1970-01-01T00:00:00.000000000Z\"}}\n"
        )
    );
}

#[test]
fn index_patterns_follow_the_index_setting() {
    let patterns = |yaml: &str| index_patterns(&config(&format!("endpoints: [http://a]\n{yaml}")));
    assert_eq!(patterns(""), Some(vec!["logstash-*".to_string()]));
    assert_eq!(
        patterns("logstash_prefix: k8s\n"),
        Some(vec!["k8s-*".to_string()])
    );
    assert_eq!(
        patterns("index: app-logs\n"),
        Some(vec!["app-logs".to_string()])
    );
    assert_eq!(
        patterns("index: 'logs-{kubernetes.namespace_name}-%Y.%m.%d'\n"),
        Some(vec!["logs-*".to_string()])
    );
    assert_eq!(patterns("index: '%Y'\n"), None);
    // A fallback outside the indices' pattern gets its own, so its events get the
    // same mappings; one inside adds nothing.
    assert_eq!(
        patterns("index: 'logs-{kubernetes.namespace_name}'\nindex_fallback: 'unknown-%Y'\n"),
        Some(vec!["logs-*".to_string(), "unknown-*".to_string()])
    );
    assert_eq!(
        patterns("index: 'logs-{kubernetes.namespace_name}'\nindex_fallback: 'logs-unknown'\n"),
        Some(vec!["logs-*".to_string()])
    );
    assert_eq!(
        patterns("index: 'app-{tag}'\nindex_fallback: app-other\n"),
        Some(vec!["app-*".to_string()])
    );
    assert_eq!(
        patterns(
            "mode: data_stream\ndata_stream: {namespace: '{kubernetes.namespace_name}'}\nindex_fallback: logs-kubernetes-unknown\n"
        ),
        Some(vec![
            "logs-generic-*".to_string(),
            "logs-kubernetes-unknown".to_string()
        ])
    );
}

#[test]
fn template_bodies_per_cluster() {
    let c = config("endpoints: [http://a]\ntemplate: {name: kube, ilm_policy: logs-30d}\n");
    let t = c.template.as_ref().unwrap();
    let es8 = t.request(&c, Cluster::elasticsearch(8, 15)).unwrap();
    assert_eq!(es8.path, "/_index_template/kube");
    assert_eq!(es8.body["index_patterns"], json!(["logstash-*"]));
    assert_eq!(
        es8.body["template"]["settings"]["index.lifecycle.name"],
        "logs-30d"
    );
    let props = &es8.body["template"]["mappings"]["properties"];
    assert_eq!(props["@timestamp"], json!({"type": "date"}));
    assert_eq!(props["log"], json!({"type": "text"}));
    assert_eq!(props["message"], json!({"type": "text"}));
    for field in ["namespace_name", "pod_name", "container_name", "host"] {
        assert_eq!(
            props["kubernetes"]["properties"][field],
            json!({"type": "keyword"})
        );
    }
    assert_eq!(
        es8.body["template"]["mappings"]["dynamic_templates"][0]["kubernetes_labels"]["mapping"],
        json!({"type": "keyword"})
    );
    // Elasticsearch 7.2: a legacy template; 6.8: with the `_doc` type around the mappings.
    let es72 = t.request(&c, Cluster::elasticsearch(7, 2)).unwrap();
    assert_eq!(es72.path, "/_template/kube");
    assert_eq!(
        es72.body["mappings"]["properties"]["@timestamp"],
        json!({"type": "date"})
    );
    assert_eq!(es72.body["settings"]["index.lifecycle.name"], "logs-30d");
    let es68 = t.request(&c, Cluster::elasticsearch(6, 8)).unwrap();
    assert_eq!(
        es68.body["mappings"]["_doc"]["properties"]["message"],
        json!({"type": "text"})
    );
    // An ILM policy means nothing to OpenSearch, an ISM policy nothing to Elasticsearch.
    let os = t.request(&c, Cluster::OpenSearch { major: 2 }).unwrap();
    assert_eq!(os.body["template"]["settings"], json!({}));
    let c = config("endpoints: [http://a]\ntemplate: {ism_policy: hot-warm}\n");
    let t = c.template.as_ref().unwrap();
    let os = t.request(&c, Cluster::OpenSearch { major: 3 }).unwrap();
    assert_eq!(os.path, "/_index_template/nagare");
    assert_eq!(
        os.body["template"]["settings"]["plugins.index_state_management.policy_id"],
        "hot-warm"
    );
}

#[test]
fn a_data_stream_template_matches_the_streams_and_makes_them() {
    let c = config(
        "endpoints: [http://a]\nmode: data_stream\ndata_stream: {dataset: kubernetes, namespace: '{kubernetes.namespace_name}'}\ntemplate: {name: kube}\n",
    );
    c.validate().unwrap();
    let t = c.template.as_ref().unwrap();
    for cluster in [
        Cluster::elasticsearch(8, 15),
        Cluster::OpenSearch { major: 2 },
    ] {
        let r = t.request(&c, cluster).unwrap();
        assert_eq!(r.path, "/_index_template/kube");
        assert_eq!(r.body["index_patterns"], json!(["logs-kubernetes-*"]));
        assert_eq!(r.body["data_stream"], json!({}));
        assert_eq!(
            r.body["template"]["mappings"]["properties"]["@timestamp"],
            json!({"type": "date"})
        );
    }
    // Indices: no `data_stream` in the template.
    let c = config("endpoints: [http://a]\ntemplate: {name: kube}\n");
    let t = c.template.as_ref().unwrap();
    let r = t.request(&c, Cluster::elasticsearch(8, 15)).unwrap();
    assert!(r.body.get("data_stream").is_none(), "{}", r.body);
}

#[test]
fn tls_files_are_read_at_start_and_a_missing_one_is_named() {
    let c = config("endpoints: [https://a:9200]\ntls: {ca_path: /nonexistent/ca.pem}\n");
    c.validate().unwrap();
    let e = client::http_client(&c).unwrap_err().to_string();
    assert!(
        e.starts_with("tls: cannot use tls.ca_path /nonexistent/ca.pem"),
        "{e}"
    );
    // Without a CA file the system's trust store is used.
    let c = config("endpoints: [https://a:9200]\ntls: {verify_hostname: true}\n");
    client::http_client(&c).unwrap();
}
