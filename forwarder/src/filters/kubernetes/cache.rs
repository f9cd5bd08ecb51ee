//! The cache of this node's pods and of every namespace's labels, holding only what
//! records need, and what each pod contributes to a record.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use nagare_core::{Map, Value};

use super::config::KubernetesConfig;

/// The annotation that keeps a pod's logs from being shipped.
pub const EXCLUDE_ANNOTATION: &str = "nagare.io/exclude";

/// How long a deleted pod stays in the cache: its last lines are often read after
/// the API reported it gone.
pub const DELETED_POD_GRACE: Duration = Duration::from_secs(300);

/// What a pod contributes to its records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodMeta {
    /// `metadata.uid`.
    pub uid: String,
    /// `spec.nodeName`.
    pub node_name: Option<String>,
    /// Labels (empty unless `labels`).
    pub labels: BTreeMap<String, String>,
    /// Allowed annotations.
    pub annotations: BTreeMap<String, String>,
    /// The workload that owns the pod: (kind, name), a ReplicaSet resolved to its
    /// Deployment.
    pub owner: Option<(String, String)>,
    /// Container name → image.
    pub images: BTreeMap<String, String>,
    /// Annotated `nagare.io/exclude: "true"`.
    pub excluded: bool,
}

impl PodMeta {
    /// Extracts what records need from a pod.
    pub fn from_pod(pod: &Pod, config: &KubernetesConfig) -> Self {
        let meta = &pod.metadata;
        let labels = meta.labels.clone().unwrap_or_default();
        let annotations = meta.annotations.as_ref();
        let excluded = annotations
            .and_then(|a| a.get(EXCLUDE_ANNOTATION))
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let owner = meta.owner_references.as_ref().and_then(|refs| {
            let r = refs
                .iter()
                .find(|r| r.controller == Some(true))
                .or(refs.first())?;
            Some(workload(&r.kind, &r.name, &labels))
        });
        let mut images = BTreeMap::new();
        if let Some(spec) = &pod.spec {
            let init = spec.init_containers.iter().flatten();
            for c in spec.containers.iter().chain(init) {
                if let Some(image) = &c.image {
                    images.insert(c.name.clone(), image.clone());
                }
            }
        }
        Self {
            uid: meta.uid.clone().unwrap_or_default(),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            annotations: annotations
                .map(|a| {
                    a.iter()
                        .filter(|(k, _)| config.allows_annotation(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            labels: if config.labels {
                labels
            } else {
                BTreeMap::new()
            },
            owner,
            images,
            excluded,
        }
    }

    /// The fields this pod adds to a record of `container`, after the file name's
    /// (`pod_name`, `namespace_name`, `container_name`, `container_id`).
    pub fn fields(&self, container: &str, namespace_labels: Option<&NamespaceLabels>) -> Map {
        let mut m = Map::with_capacity(8);
        if !self.uid.is_empty() {
            m.push_unchecked("pod_id", Value::from(self.uid.as_str()));
        }
        if let Some(node) = &self.node_name {
            m.push_unchecked("host", Value::from(node.as_str()));
        }
        if let Some(image) = self.images.get(container) {
            m.push_unchecked("container_image", Value::from(image.as_str()));
        }
        if !self.labels.is_empty() {
            m.push_unchecked("labels", string_map(&self.labels));
        }
        if !self.annotations.is_empty() {
            m.push_unchecked("annotations", string_map(&self.annotations));
        }
        if let Some(ns) = namespace_labels
            && !ns.is_empty()
        {
            m.push_unchecked("namespace_labels", string_map(ns));
        }
        if let Some((kind, name)) = &self.owner {
            let mut o = Map::with_capacity(2);
            o.push_unchecked("kind", Value::from(kind.as_str()));
            o.push_unchecked("name", Value::from(name.as_str()));
            m.push_unchecked("owner", Value::Map(o));
        }
        m
    }
}

fn string_map(m: &BTreeMap<String, String>) -> Value {
    let mut out = Map::with_capacity(m.len());
    for (k, v) in m {
        out.push_unchecked(k.as_str(), Value::from(v.as_str()));
    }
    Value::Map(out)
}

/// The workload behind an owner reference. A ReplicaSet made by a Deployment is
/// named `<deployment>-<pod-template-hash>` and its pods carry that hash as a label,
/// so the Deployment is found without reading ReplicaSets (the RBAC role needs only
/// pods and namespaces).
pub fn workload(kind: &str, name: &str, labels: &BTreeMap<String, String>) -> (String, String) {
    if kind == "ReplicaSet"
        && let Some(hash) = labels.get("pod-template-hash")
        && let Some(deployment) = name
            .strip_suffix(hash.as_str())
            .and_then(|n| n.strip_suffix('-'))
        && !deployment.is_empty()
    {
        return ("Deployment".to_string(), deployment.to_string());
    }
    (kind.to_string(), name.to_string())
}

/// A namespace's labels.
pub type NamespaceLabels = BTreeMap<String, String>;

#[derive(Debug)]
struct CachedPod {
    meta: Arc<PodMeta>,
    deleted: Option<Instant>,
}

/// Pods and namespaces as last seen. Shared between the watch tasks and the tail
/// source; every change bumps [`PodCache::generation`], so the source knows when to
/// rebuild a file's metadata.
#[derive(Debug, Default)]
pub struct PodCache {
    pods: RwLock<HashMap<(String, String), CachedPod>>,
    namespaces: RwLock<HashMap<String, Arc<NamespaceLabels>>>,
    generation: AtomicU64,
    pods_synced: AtomicBool,
}

impl PodCache {
    /// An empty cache.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Bumped on every change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the pods have been listed once.
    pub fn is_synced(&self) -> bool {
        self.pods_synced.load(Ordering::Acquire)
    }

    /// The pod `namespace/name`, if known.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Arc<PodMeta>> {
        let pods = self.pods.read().unwrap_or_else(|p| p.into_inner());
        pods.get(&(namespace.to_string(), name.to_string()))
            .map(|p| p.meta.clone())
    }

    /// The labels of `namespace`, if known.
    pub fn namespace(&self, namespace: &str) -> Option<Arc<NamespaceLabels>> {
        let ns = self.namespaces.read().unwrap_or_else(|p| p.into_inner());
        ns.get(namespace).cloned()
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// A pod was added or changed.
    pub fn apply_pod(&self, pod: &Pod, config: &KubernetesConfig) {
        let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            return;
        };
        let meta = Arc::new(PodMeta::from_pod(pod, config));
        let mut pods = self.pods.write().unwrap_or_else(|p| p.into_inner());
        pods.insert(
            (ns.clone(), name.clone()),
            CachedPod {
                meta,
                deleted: None,
            },
        );
        drop(pods);
        self.bump();
    }

    /// A pod was deleted: it stays for [`DELETED_POD_GRACE`].
    pub fn delete_pod(&self, pod: &Pod) {
        let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            return;
        };
        let mut pods = self.pods.write().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pods.get_mut(&(ns.clone(), name.clone())) {
            p.deleted.get_or_insert_with(Instant::now);
        }
        Self::purge(&mut pods);
    }

    /// The pods were listed again: those not in `listed` were deleted meanwhile.
    pub fn replace_pods(&self, listed: Vec<Pod>, config: &KubernetesConfig) {
        let mut fresh = HashMap::with_capacity(listed.len());
        for pod in &listed {
            if let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) {
                fresh.insert(
                    (ns.clone(), name.clone()),
                    CachedPod {
                        meta: Arc::new(PodMeta::from_pod(pod, config)),
                        deleted: None,
                    },
                );
            }
        }
        let mut pods = self.pods.write().unwrap_or_else(|p| p.into_inner());
        for (key, old) in pods.drain() {
            fresh.entry(key).or_insert_with(|| CachedPod {
                meta: old.meta,
                deleted: old.deleted.or(Some(Instant::now())),
            });
        }
        *pods = fresh;
        Self::purge(&mut pods);
        drop(pods);
        self.pods_synced.store(true, Ordering::Release);
        self.bump();
    }

    fn purge(pods: &mut HashMap<(String, String), CachedPod>) {
        pods.retain(|_, p| p.deleted.is_none_or(|t| t.elapsed() < DELETED_POD_GRACE));
    }

    /// A namespace was added or changed.
    pub fn apply_namespace(&self, ns: &Namespace) {
        let Some(name) = &ns.metadata.name else {
            return;
        };
        let labels = Arc::new(ns.metadata.labels.clone().unwrap_or_default());
        let mut all = self.namespaces.write().unwrap_or_else(|p| p.into_inner());
        all.insert(name.clone(), labels);
        drop(all);
        self.bump();
    }

    /// A namespace was deleted.
    pub fn delete_namespace(&self, ns: &Namespace) {
        if let Some(name) = &ns.metadata.name {
            let mut all = self.namespaces.write().unwrap_or_else(|p| p.into_inner());
            all.remove(name);
        }
    }

    /// The namespaces were listed again.
    pub fn replace_namespaces(&self, listed: Vec<Namespace>) {
        let fresh = listed
            .iter()
            .filter_map(|ns| {
                let name = ns.metadata.name.clone()?;
                Some((
                    name,
                    Arc::new(ns.metadata.labels.clone().unwrap_or_default()),
                ))
            })
            .collect();
        *self.namespaces.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        self.bump();
    }
}
