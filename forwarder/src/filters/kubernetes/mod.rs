//! Kubernetes metadata from the API server: a pod's uid, node, labels, allowed
//! annotations, namespace labels, owner workload and container image, added under
//! `kubernetes` in the records of its containers' log files.
//!
//! It is built into the tail source rather than run as a generic filter: the metadata
//! belongs to a file (one container), so the source encodes it once per file and
//! copies the bytes into every record, keeping the tailer's no-allocation record path;
//! a filter would decode and re-encode every record. The source re-encodes a file's
//! metadata when the cache changes.
//!
//! - [`config`]: [`KubernetesConfig`], the source's `kubernetes:` block.
//! - [`client`]: the API client (explicit server + service account, kubeconfig, or
//!   in-cluster).
//! - [`cache`]: [`PodCache`], this node's pods and the namespaces' labels, reduced to
//!   what records need; [`PodMeta`], what one pod adds.
//! - [`watcher`]: the background list/watch tasks that keep the cache current.
//! - [`filter`]: [`KubernetesMetadata`], the handle the source looks pods up with.
//!
//! Only `get`, `list` and `watch` on `pods` and `namespaces` are needed. Without an
//! API server (or while it is slow or down) records carry what the file name says
//! and whatever was cached; lookups never wait. Pods annotated
//! `nagare.io/exclude: "true"` are not shipped.

pub mod cache;
pub mod client;
pub mod config;
pub mod filter;
pub mod watcher;

#[cfg(test)]
mod tests;

pub use cache::{EXCLUDE_ANNOTATION, PodCache, PodMeta};
pub use config::{ApiMode, KubernetesConfig};
pub use filter::{KubernetesError, KubernetesMetadata, Lookup};
