//! The `template:` section: an index template installed at start, so that the
//! first document of a new index already has the types Kibana needs
//! (`@timestamp` a date, the Kubernetes metadata keywords, `log`/`message` text)
//! instead of whatever dynamic mapping guesses.
//!
//! A composable template (`PUT _index_template/<name>`) where the cluster has them;
//! a legacy one (`PUT _template/<name>`) on Elasticsearch before 7.8, with the
//! `_doc` type around the mappings on Elasticsearch 6. An existing template is left
//! alone (it is looked up with `GET` first) unless `overwrite`.

use std::path::PathBuf;

use nagare_core::component::Invalid;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::config::ElasticsearchConfig;
use super::index::Mode;
use super::version::{ApiVersion, Cluster};

/// The `template:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    /// Install the template at start.
    #[serde(default = "default_install")]
    pub install: bool,
    /// The template's name.
    #[serde(default = "default_name")]
    pub name: String,
    /// Replace a template of that name that is already there (otherwise it is left
    /// as it is, with whatever changes were made to it).
    #[serde(default)]
    pub overwrite: bool,
    /// A JSON file with the whole template body to install instead of nagare's
    /// (in the form of the API it goes to: composable, or legacy on Elasticsearch
    /// before 7.8).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// An Elasticsearch ILM policy for the indices (`index.lifecycle.name`).
    #[serde(default)]
    pub ilm_policy: Option<String>,
    /// An OpenSearch ISM policy for the indices
    /// (`plugins.index_state_management.policy_id`).
    #[serde(default)]
    pub ism_policy: Option<String>,
}

fn default_install() -> bool {
    true
}

fn default_name() -> String {
    "nagare".to_string()
}

/// Where a template goes and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateRequest {
    /// `/_index_template/<name>` or `/_template/<name>`.
    pub path: String,
    /// The body.
    pub body: Value,
}

impl TemplateConfig {
    /// Checks what serde cannot, with the sink's config around it.
    pub fn validate(&self, config: &ElasticsearchConfig) -> Result<(), Invalid> {
        if !self.install {
            return Ok(());
        }
        let name = &self.name;
        if name.is_empty()
            || name.starts_with(['_', '-', '+'])
            || name.contains(['/', '\\', '*', '?', '"', '<', '>', '|', ' ', ',', '#'])
        {
            return Err(Invalid::new(
                "template.name",
                format!(
                    "`{name}` is not a template name: it must be non-empty, not start with `_`, `-` or `+`, and hold none of `/\\*?\"<>|,#` or spaces"
                ),
            ));
        }
        if self.ilm_policy.is_some() && self.ism_policy.is_some() {
            return Err(Invalid::new(
                "template.ism_policy",
                "set `ilm_policy` (Elasticsearch) or `ism_policy` (OpenSearch), not both",
            ));
        }
        if config.serverless() {
            for (key, policy) in [
                ("template.ilm_policy", &self.ilm_policy),
                ("template.ism_policy", &self.ism_policy),
            ] {
                if policy.is_some() {
                    return Err(Invalid::new(
                        key,
                        "OpenSearch Serverless (`aws.service: aoss`) has neither ILM nor ISM: a collection keeps its indices as long as its data lifecycle policy says (`aws opensearchserverless create-lifecycle-policy`); remove the key",
                    ));
                }
            }
        }
        match config.api_version {
            ApiVersion::Opensearch if self.ilm_policy.is_some() => {
                return Err(Invalid::new(
                    "template.ilm_policy",
                    "OpenSearch has no ILM; use `ism_policy` with `api_version: opensearch`",
                ));
            }
            ApiVersion::V6 | ApiVersion::V7 | ApiVersion::V8 if self.ism_policy.is_some() => {
                return Err(Invalid::new(
                    "template.ism_policy",
                    "Elasticsearch has no ISM; use `ilm_policy` with an Elasticsearch `api_version`",
                ));
            }
            _ => {}
        }
        for (key, policy) in [
            ("template.ilm_policy", &self.ilm_policy),
            ("template.ism_policy", &self.ism_policy),
        ] {
            if policy.as_deref().is_some_and(|p| p.trim().is_empty()) {
                return Err(Invalid::new(
                    key,
                    "the policy name is empty; remove the key or name the policy",
                ));
            }
        }
        match &self.file {
            Some(path) => {
                self.read_file(path)
                    .map_err(|why| Invalid::new("template.file", why))?;
            }
            None => {
                if index_patterns(config).is_none() {
                    return Err(Invalid::new(
                        "template",
                        "the index name starts with a field or a date, so there is no prefix to match indices by; give the whole template in `template.file`",
                    ));
                }
            }
        }
        Ok(())
    }

    fn read_file(&self, path: &std::path::Path) -> Result<Value, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let body: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        if !body.is_object() {
            return Err(format!(
                "{} holds no JSON object; a template body is an object with `index_patterns`",
                path.display()
            ));
        }
        Ok(body)
    }

    /// The template request for `cluster`.
    pub fn request(
        &self,
        config: &ElasticsearchConfig,
        cluster: Cluster,
    ) -> Result<TemplateRequest, String> {
        let legacy = cluster.legacy_templates_only();
        let path = if legacy {
            format!("/_template/{}", self.name)
        } else {
            format!("/_index_template/{}", self.name)
        };
        let body = match &self.file {
            Some(file) => self.read_file(file)?,
            None => self.body(config, cluster),
        };
        Ok(TemplateRequest { path, body })
    }

    /// nagare's template body.
    fn body(&self, config: &ElasticsearchConfig, cluster: Cluster) -> Value {
        let patterns = index_patterns(config).unwrap_or_default();
        let mut settings = Map::new();
        match (&self.ilm_policy, &self.ism_policy, cluster.is_opensearch()) {
            (Some(ilm), _, false) => {
                settings.insert("index.lifecycle.name".into(), json!(ilm));
            }
            (_, Some(ism), true) => {
                settings.insert(
                    "plugins.index_state_management.policy_id".into(),
                    json!(ism),
                );
            }
            _ => {}
        }
        let keyword = json!({"type": "keyword"});
        let k8s: Map<String, Value> = [
            "namespace_name",
            "namespace_id",
            "pod_name",
            "pod_id",
            "pod_ip",
            "container_name",
            "container_image",
            "container_image_id",
            "container_id",
            "host",
        ]
        .into_iter()
        .map(|field| (field.to_string(), keyword.clone()))
        .collect();
        let mappings = json!({
            "dynamic_templates": [
                {"kubernetes_labels": {
                    "path_match": "kubernetes.labels.*",
                    "mapping": {"type": "keyword"}
                }},
                {"kubernetes_annotations": {
                    "path_match": "kubernetes.annotations.*",
                    "mapping": {"type": "keyword"}
                }}
            ],
            "properties": {
                "@timestamp": {"type": "date"},
                "log": {"type": "text"},
                "message": {"type": "text"},
                "stream": {"type": "keyword"},
                "tag": {"type": "keyword"},
                "kubernetes": {"properties": k8s}
            }
        });
        let meta = json!({"managed_by": "nagare"});
        if cluster.legacy_templates_only() {
            let mappings = if cluster.wants_type_name() {
                json!({"_doc": mappings})
            } else {
                mappings
            };
            json!({
                "index_patterns": patterns,
                "order": 0,
                "settings": settings,
                "mappings": mappings,
            })
        } else {
            let mut body = json!({
                "index_patterns": patterns,
                "priority": 150,
                "_meta": meta,
                "template": {"settings": settings, "mappings": mappings},
            });
            if config.mode == Mode::DataStream {
                // Writes to a name the template matches create a data stream.
                body["data_stream"] = json!({});
            }
            body
        }
    }
}

/// The indices the sink writes to, as template patterns: `<logstash_prefix>-*`, or
/// `index` (or, with `mode: data_stream`, `<type>-<dataset>-<namespace>`) up to its
/// first `{` or `%` followed by `*` (the name itself if it has neither); then
/// `index_fallback`'s, made the same way, where the first does not cover it (so the
/// events that fall back get the same mappings). `None` when nothing comes before
/// the first `{` or `%` of the indices.
pub fn index_patterns(config: &ElasticsearchConfig) -> Option<Vec<String>> {
    let stream;
    let (text, daily) = match (&config.index, config.mode) {
        (_, Mode::DataStream) => {
            let parts = config.data_stream.clone().unwrap_or_default();
            stream = format!("{}-{}-{}", parts.r#type, parts.dataset, parts.namespace);
            (stream.as_str(), false)
        }
        (Some(index), Mode::Index) => (index.as_str(), false),
        (None, Mode::Index) => (config.logstash_prefix.as_str(), true),
    };
    let mut patterns = vec![pattern(text, daily)?];
    if let Some(fallback) = config
        .index_fallback
        .as_deref()
        .and_then(|f| pattern(f, false))
        && !patterns.iter().any(|p| covers(p, &fallback))
    {
        patterns.push(fallback);
    }
    Some(patterns)
}

/// `name` up to its first `{` or `%`, then `*`; the name itself if it has neither
/// (with `-*` if `daily`).
fn pattern(name: &str, daily: bool) -> Option<String> {
    match name.find(['{', '%']) {
        Some(0) => None,
        Some(at) => Some(format!("{}*", &name[..at])),
        None if daily => Some(format!("{name}-*")),
        None => Some(name.to_string()),
    }
}

/// Whether every index `other` matches is matched by `pattern`.
fn covers(pattern: &str, other: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => other.starts_with(prefix),
        None => pattern == other,
    }
}
