//! Host names to addresses, and how a new set of addresses changes the node list.
//!
//! Every address a server's host resolves to is a node of its own: a Kubernetes
//! headless Service name gives one node per aggregator pod, and pods that come or go
//! are followed at the next resolution.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A node's key: the index of its server in the config, and its address.
pub(super) type NodeKey = (usize, SocketAddr);

/// The addresses of `host`: itself if it is an IP address, else what DNS says,
/// sorted (resolvers rotate the order; sorted, an unchanged set is seen as such).
pub(super) async fn lookup(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(format!("no answer within connect_timeout ({timeout:?})")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(addrs)) => {
            let mut out: Vec<SocketAddr> = addrs.collect();
            out.sort();
            out.dedup();
            if out.is_empty() {
                Err("the name resolves to no address".into())
            } else {
                Ok(out)
            }
        }
    }
}

/// How to get from the `current` nodes to the `wanted` ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    /// For each wanted node, in order: the index of the current node it keeps, or
    /// `None` for a new node.
    pub(super) kept: Vec<Option<usize>>,
    /// Indexes of current nodes that are no longer wanted.
    pub(super) removed: Vec<usize>,
}

impl Plan {
    /// Whether nothing changes.
    pub(super) fn is_unchanged(&self, current: usize) -> bool {
        self.removed.is_empty()
            && self.kept.len() == current
            && self.kept.iter().enumerate().all(|(i, k)| *k == Some(i))
    }
}

/// Plans the change from `current` to `wanted` (duplicates in `wanted` count once).
pub(super) fn plan(current: &[NodeKey], wanted: &[NodeKey]) -> Plan {
    let mut seen = HashSet::new();
    let kept: Vec<Option<usize>> = wanted
        .iter()
        .filter(|w| seen.insert(**w))
        .map(|w| current.iter().position(|c| c == w))
        .collect();
    let removed = (0..current.len())
        .filter(|i| !kept.contains(&Some(*i)))
        .collect();
    Plan { kept, removed }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(server: usize, last: u8) -> NodeKey {
        (server, SocketAddr::from(([10, 0, 0, last], 24224)))
    }

    #[test]
    fn pods_added_and_removed_behind_one_name() {
        // A headless Service with pods .1 .2 .3; .2 goes, .4 comes.
        let current = [key(0, 1), key(0, 2), key(0, 3)];
        let wanted = [key(0, 1), key(0, 3), key(0, 4), key(0, 4)];
        let p = plan(&current, &wanted);
        assert_eq!(p.kept, vec![Some(0), Some(2), None]);
        assert_eq!(p.removed, vec![1]);
        assert!(!p.is_unchanged(3));
        assert!(plan(&current, &current).is_unchanged(3));
        // The same address under two server entries is two nodes.
        let p = plan(&[], &[key(0, 1), key(1, 1)]);
        assert_eq!(p.kept, vec![None, None]);
    }

    #[tokio::test]
    async fn ip_literals_and_names() {
        let t = Duration::from_secs(5);
        assert_eq!(
            lookup("10.1.2.3", 1, t).await.unwrap(),
            vec![SocketAddr::from(([10, 1, 2, 3], 1))]
        );
        assert_eq!(
            lookup("::1", 2, t).await.unwrap(),
            vec!["[::1]:2".parse().unwrap()]
        );
        let local = lookup("localhost", 3, t).await.unwrap();
        assert!(
            local.iter().all(|a| a.ip().is_loopback() && a.port() == 3),
            "{local:?}"
        );
        let err = lookup("no-such-host.invalid", 4, t).await.unwrap_err();
        assert!(!err.is_empty());
    }
}
