//! The list/watch tasks that keep the [`PodCache`] current: this node's pods (field
//! selector `spec.nodeName=<node>`) and all namespaces. `kube`'s watcher lists, then
//! watches from the list's `resourceVersion` with bookmarks, and lists again when the
//! version expired (410 Gone); errors back off and retry forever, in the background,
//! so a slow or absent API server never holds up tailing.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use nagare_core::shutdown::Shutdown;

use super::cache::PodCache;
use super::config::KubernetesConfig;

/// Logs an error at most every 30 s per task.
struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    fn warn(&mut self, source: &str, what: &str, error: &watcher::Error) {
        if self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(30))
        {
            tracing::warn!(source = %source, resource = what, %error, suppressed = self.suppressed, "cannot list/watch the Kubernetes API; records carry the metadata cached so far (or the file name's) and the watch is retried");
            self.last = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
    }
}

/// Keeps the pods of `node` in `cache` until `shutdown`.
pub async fn watch_pods(
    client: kube::Client,
    node: String,
    config: KubernetesConfig,
    cache: Arc<PodCache>,
    source: String,
    shutdown: Shutdown,
) {
    let selector = format!("spec.nodeName={node}");
    let watch = Watch {
        what: "pods",
        source: &source,
        shutdown,
    };
    watch
        .follow(
            Api::<Pod>::all(client),
            watcher::Config::default().fields(&selector),
            |pods| {
                let n = pods.len();
                cache.replace_pods(pods, &config);
                tracing::info!(source = %source, node = %node, pods = n, "listed this node's pods from the Kubernetes API");
            },
            |pod| cache.apply_pod(pod, &config),
            |pod| cache.delete_pod(pod),
        )
        .await;
}

/// Keeps every namespace's labels in `cache` until `shutdown`.
pub async fn watch_namespaces(
    client: kube::Client,
    cache: Arc<PodCache>,
    source: String,
    shutdown: Shutdown,
) {
    let watch = Watch {
        what: "namespaces",
        source: &source,
        shutdown,
    };
    watch
        .follow(
            Api::<Namespace>::all(client),
            watcher::Config::default(),
            |namespaces| cache.replace_namespaces(namespaces),
            |ns| cache.apply_namespace(ns),
            |ns| cache.delete_namespace(ns),
        )
        .await;
}

/// One list/watch task: the kind of object it follows (`what`, for the logs), the
/// source it serves, and when it ends.
struct Watch<'a> {
    what: &'static str,
    source: &'a str,
    shutdown: Shutdown,
}

impl Watch<'_> {
    /// Follows the objects of `api` that `config` selects until shutdown: the whole
    /// list to `listed` after each (re)list, then each change to `applied` or
    /// `deleted`; errors are warned about (throttled) and retried with backoff.
    async fn follow<K>(
        self,
        api: Api<K>,
        config: watcher::Config,
        mut listed: impl FnMut(Vec<K>),
        applied: impl Fn(&K),
        deleted: impl Fn(&K),
    ) where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    {
        let stream = watcher::watcher(api, config).default_backoff();
        let mut stream = pin!(stream);
        let mut list: Vec<K> = Vec::new();
        let mut errors = Throttled {
            last: None,
            suppressed: 0,
        };
        loop {
            let event = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                e = stream.next() => e,
            };
            match event {
                None => return,
                Some(Ok(Event::Init)) => list.clear(),
                Some(Ok(Event::InitApply(object))) => list.push(object),
                Some(Ok(Event::InitDone)) => listed(std::mem::take(&mut list)),
                Some(Ok(Event::Apply(object))) => applied(&object),
                Some(Ok(Event::Delete(object))) => deleted(&object),
                Some(Err(e)) => errors.warn(self.source, self.what, &e),
            }
        }
    }
}
