//! Record enrichment that runs on the node.
//!
//! - [`kubernetes`]: pod metadata from the Kubernetes API server (labels,
//!   annotations, owner workload, image), cached from a watch of this node's pods.

pub mod kubernetes;
