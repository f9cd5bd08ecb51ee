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
    let api: Api<Pod> = Api::all(client);
    let selector = format!("spec.nodeName={node}");
    let stream =
        watcher::watcher(api, watcher::Config::default().fields(&selector)).default_backoff();
    let mut stream = pin!(stream);
    let mut listed: Vec<Pod> = Vec::new();
    let mut errors = Throttled {
        last: None,
        suppressed: 0,
    };
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = stream.next() => e,
        };
        match event {
            None => return,
            Some(Ok(Event::Init)) => listed.clear(),
            Some(Ok(Event::InitApply(pod))) => listed.push(pod),
            Some(Ok(Event::InitDone)) => {
                let n = listed.len();
                cache.replace_pods(std::mem::take(&mut listed), &config);
                tracing::info!(source = %source, node = %node, pods = n, "listed this node's pods from the Kubernetes API");
            }
            Some(Ok(Event::Apply(pod))) => cache.apply_pod(&pod, &config),
            Some(Ok(Event::Delete(pod))) => cache.delete_pod(&pod),
            Some(Err(e)) => errors.warn(&source, "pods", &e),
        }
    }
}

/// Keeps every namespace's labels in `cache` until `shutdown`.
pub async fn watch_namespaces(
    client: kube::Client,
    cache: Arc<PodCache>,
    source: String,
    shutdown: Shutdown,
) {
    let api: Api<Namespace> = Api::all(client);
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = pin!(stream);
    let mut listed: Vec<Namespace> = Vec::new();
    let mut errors = Throttled {
        last: None,
        suppressed: 0,
    };
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = stream.next() => e,
        };
        match event {
            None => return,
            Some(Ok(Event::Init)) => listed.clear(),
            Some(Ok(Event::InitApply(ns))) => listed.push(ns),
            Some(Ok(Event::InitDone)) => cache.replace_namespaces(std::mem::take(&mut listed)),
            Some(Ok(Event::Apply(ns))) => cache.apply_namespace(&ns),
            Some(Ok(Event::Delete(ns))) => cache.delete_namespace(&ns),
            Some(Err(e)) => errors.warn(&source, "namespaces", &e),
        }
    }
}
