//! [`KubernetesMetadata`]: the handle the tail source enriches its records with.

use std::sync::Arc;

use nagare_core::Map;
use nagare_core::shutdown::Shutdown;
use thiserror::Error;

use super::cache::PodCache;
use super::client::client;
use super::config::{ApiMode, KubernetesConfig};
use super::watcher::{watch_namespaces, watch_pods};

/// Why pod metadata cannot be read.
#[derive(Debug, Error)]
pub enum KubernetesError {
    /// The config or environment does not lead to an API server.
    #[error("kubernetes metadata: {what}")]
    Config {
        /// What is wrong and what to do.
        what: String,
    },
}

/// What the API says about one container's pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    /// Fields to add under `kubernetes` after the file name's.
    pub fields: Map,
    /// The pod is annotated `nagare.io/exclude: "true"`.
    pub excluded: bool,
}

/// Pod metadata from the API server, cached. Lookups never wait for the API: they
/// answer from the cache, which background watch tasks keep current.
#[derive(Debug, Clone)]
pub struct KubernetesMetadata {
    cache: Arc<PodCache>,
    namespace_labels: bool,
}

impl KubernetesMetadata {
    /// Starts watching this node's pods and all namespaces, until `shutdown`. `None`
    /// when the config says not to use the API (or, with `api: auto`, when there is
    /// none to use).
    pub async fn start(
        config: &KubernetesConfig,
        source: &str,
        shutdown: &Shutdown,
    ) -> Result<Option<Self>, KubernetesError> {
        let Some(client) = client(config).await? else {
            tracing::info!(source = %source, "no Kubernetes API server configured or found; records carry the metadata in the file name only");
            return Ok(None);
        };
        let node = match config
            .node_name
            .clone()
            .or_else(|| std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()))
        {
            Some(n) => n,
            None if config.api == ApiMode::Auto => {
                tracing::warn!(source = %source, "a Kubernetes API server is reachable but the node name is unknown (set `kubernetes.node_name` or NODE_NAME from the downward API); records carry the metadata in the file name only");
                return Ok(None);
            }
            None => {
                return Err(KubernetesError::Config {
                    what: "the node name is unknown: set `node_name`, or the NODE_NAME environment variable from the downward API (`spec.nodeName`), so that only this node's pods are watched".into(),
                });
            }
        };
        let cache = PodCache::new();
        tokio::spawn(watch_pods(
            client.clone(),
            node.clone(),
            config.clone(),
            cache.clone(),
            source.to_string(),
            shutdown.clone(),
        ));
        if config.namespace_labels {
            tokio::spawn(watch_namespaces(
                client,
                cache.clone(),
                source.to_string(),
                shutdown.clone(),
            ));
        }
        tracing::info!(source = %source, node = %node, "watching this node's pods for metadata");
        Ok(Some(Self {
            cache,
            namespace_labels: config.namespace_labels,
        }))
    }

    /// A handle over an existing cache (tests, or a cache fed another way).
    pub fn from_cache(cache: Arc<PodCache>, namespace_labels: bool) -> Self {
        Self {
            cache,
            namespace_labels,
        }
    }

    /// The cache.
    pub fn cache(&self) -> &Arc<PodCache> {
        &self.cache
    }

    /// Changes whenever the cache changes.
    pub fn generation(&self) -> u64 {
        self.cache.generation()
    }

    /// What to add to records of `container` in pod `namespace/pod`; `None` while the
    /// pod is unknown.
    pub fn lookup(&self, namespace: &str, pod: &str, container: &str) -> Option<Lookup> {
        let meta = self.cache.pod(namespace, pod)?;
        let ns = if self.namespace_labels {
            self.cache.namespace(namespace)
        } else {
            None
        };
        Some(Lookup {
            fields: meta.fields(container, ns.as_deref()),
            excluded: meta.excluded,
        })
    }
}
