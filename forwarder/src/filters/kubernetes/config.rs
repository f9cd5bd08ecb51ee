//! The `kubernetes` block of the `tail` source: where the API server is and which
//! metadata to add.

use std::path::PathBuf;

use nagare_core::component::Invalid;
use serde::Deserialize;

/// Whether pod metadata is read from the API server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiMode {
    /// When running in a cluster (`KUBERNETES_SERVICE_HOST` is set) or when
    /// `api_server` or `kubeconfig` is given; otherwise only the file name's metadata.
    #[default]
    Auto,
    /// Always; the source fails to start if no API server is configured or found.
    Enabled,
    /// Never: only the metadata in the file name.
    Disabled,
}

/// Pod metadata from the Kubernetes API server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// `auto`, `enabled` or `disabled`.
    #[serde(default)]
    pub api: ApiMode,
    /// The API server's URL; by default the in-cluster address
    /// (`https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`).
    #[serde(default)]
    pub api_server: Option<String>,
    /// A kubeconfig file to read the server and credentials from instead (for running
    /// outside the cluster).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The bearer token file used with `api_server` (re-read when it rotates).
    #[serde(default = "default_token_file")]
    pub token_file: PathBuf,
    /// The CA bundle used with an `https` `api_server`.
    #[serde(default = "default_ca_file")]
    pub ca_file: PathBuf,
    /// This node's name: only its pods are watched (`spec.nodeName`). Defaults to the
    /// `NODE_NAME` environment variable (set it from the downward API).
    #[serde(default)]
    pub node_name: Option<String>,
    /// Add the pod's labels under `kubernetes.labels`.
    #[serde(default = "default_true")]
    pub labels: bool,
    /// Annotations to add under `kubernetes.annotations`: exact keys, or prefixes
    /// ending with `*` (`prometheus.io/*`). None by default: annotations often hold
    /// large or sensitive values.
    #[serde(default)]
    pub annotations: Vec<String>,
    /// Add the namespace's labels under `kubernetes.namespace_labels`.
    #[serde(default = "default_true")]
    pub namespace_labels: bool,
}

fn default_token_file() -> PathBuf {
    PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token")
}

fn default_ca_file() -> PathBuf {
    PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
}

fn default_true() -> bool {
    true
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            api: ApiMode::default(),
            api_server: None,
            kubeconfig: None,
            token_file: default_token_file(),
            ca_file: default_ca_file(),
            node_name: None,
            labels: true,
            annotations: Vec::new(),
            namespace_labels: true,
        }
    }
}

impl KubernetesConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(url) = &self.api_server
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(Invalid::new(
                "api_server",
                format!("`{url}` is not an http(s) URL; use e.g. `https://kubernetes.default.svc`"),
            ));
        }
        if self.api_server.is_some() && self.kubeconfig.is_some() {
            return Err(Invalid::new(
                "kubeconfig",
                "give either `api_server` or `kubeconfig`, not both",
            ));
        }
        if let Some(node) = &self.node_name
            && node.trim().is_empty()
        {
            return Err(Invalid::new(
                "node_name",
                "the node name is empty; set it from the downward API (`spec.nodeName`)",
            ));
        }
        for (i, a) in self.annotations.iter().enumerate() {
            if a.is_empty() || a[..a.len() - 1].contains('*') {
                return Err(Invalid::new(
                    format!("annotations.{i}"),
                    format!("`{a}` must be an annotation key, or a prefix ending with one `*`"),
                ));
            }
        }
        Ok(())
    }

    /// Whether the annotation `key` is in the allow list.
    pub fn allows_annotation(&self, key: &str) -> bool {
        self.annotations.iter().any(|a| match a.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => a == key,
        })
    }
}
