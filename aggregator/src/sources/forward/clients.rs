//! Which `security.clients` entry a connecting peer is (Fluentd's `<client>`): by
//! its address, against a `network` or the addresses a `host` name resolves to.
//!
//! Fluentd resolves a `<client>`'s `host` once, when it reads its config, and keeps
//! that one address. Here every address of the name counts, and names are resolved
//! again every `security.resolve_interval`, so that clients whose addresses change
//! (pods, DHCP) stay recognised. A name that does not resolve (yet) matches nobody:
//! a warning says so, and its last known addresses, if any, are kept.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::RwLock;
use std::time::Duration;

use nagare_core::config::Secret;
use nagare_core::shutdown::Shutdown;
use serde::Deserialize;

use super::config::SecurityConfig;

/// An IP network, `10.0.0.0/8` or `fd00::/8`; a bare address is that address alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Whether `ip` is in the network. IPv4 peers that reach an IPv6 socket as
    /// `::ffff:a.b.c.d` count as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    a[..full] == b[..full]
        && (rest == 0 || {
            let mask = 0xffu8 << (8 - rest);
            a[full] & mask == b[full] & mask
        })
}

impl FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hint = "write an address and a prefix length, like 10.0.0.0/8, 192.168.1.7 or fd00::/8";
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("`{s}` is not a network: `{addr}` is not an IP address; {hint}")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                format!("`{s}` is not a network: the prefix length must be 0 to {max}; {hint}")
            })?,
        };
        Ok(Network {
            addr: addr.to_canonical(),
            prefix: if addr.to_canonical().is_ipv4() && addr.is_ipv6() {
                prefix.saturating_sub(96)
            } else {
                prefix
            },
        })
    }
}

impl TryFrom<String> for Network {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Where an entry's clients connect from.
#[derive(Debug)]
enum Source {
    Network(Network),
    /// A name and the addresses it resolved to last.
    Host(String, RwLock<Vec<IpAddr>>),
}

/// One `security.clients` entry.
#[derive(Debug)]
struct Entry {
    /// `security.clients.<n>`, for log lines.
    name: String,
    source: Source,
    shared_key: Secret,
    users: Vec<String>,
}

/// The entry a peer matched.
#[derive(Debug, Clone, Copy)]
pub(super) struct Client<'a> {
    /// `security.clients.<n>`.
    pub(super) name: &'a str,
    /// Its key (its own, or `security.shared_key`).
    pub(super) shared_key: &'a Secret,
    /// The users it may authenticate as; empty for any of `security.users`.
    pub(super) users: &'a [String],
}

/// The `security.clients` of a server.
#[derive(Debug)]
pub(super) struct Clients {
    entries: Vec<Entry>,
    resolve_interval: Option<Duration>,
}

impl Clients {
    pub(super) fn new(config: &SecurityConfig) -> Self {
        let entries = config
            .clients
            .iter()
            .enumerate()
            .map(|(i, c)| Entry {
                name: format!("security.clients.{i}"),
                source: match (&c.network, &c.host) {
                    (Some(net), _) => Source::Network(*net),
                    (None, host) => {
                        Source::Host(host.clone().unwrap_or_default(), RwLock::new(Vec::new()))
                    }
                },
                shared_key: c
                    .shared_key
                    .clone()
                    .unwrap_or_else(|| config.shared_key.clone()),
                users: c.users.clone(),
            })
            .collect();
        let interval = Duration::from(config.resolve_interval);
        Self {
            entries,
            resolve_interval: (!interval.is_zero()).then_some(interval),
        }
    }

    /// The first entry, in config order, that `peer` belongs to.
    pub(super) fn find(&self, peer: IpAddr) -> Option<Client<'_>> {
        let peer = peer.to_canonical();
        self.entries
            .iter()
            .find(|e| match &e.source {
                Source::Network(net) => net.contains(peer),
                Source::Host(_, addrs) => addrs
                    .read()
                    .expect("the address list lock is never poisoned")
                    .contains(&peer),
            })
            .map(|e| Client {
                name: &e.name,
                shared_key: &e.shared_key,
                users: &e.users,
            })
    }

    /// Whether any entry names a host.
    fn has_hosts(&self) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e.source, Source::Host(..)))
    }

    /// Resolves every `host` entry once; a failure keeps the last known addresses.
    pub(super) async fn resolve(&self, source: &str) {
        for entry in &self.entries {
            let Source::Host(host, addrs) = &entry.source else {
                continue;
            };
            match tokio::net::lookup_host((host.as_str(), 0)).await {
                Ok(found) => {
                    let mut found: Vec<IpAddr> = found.map(|a| a.ip().to_canonical()).collect();
                    found.sort_unstable();
                    found.dedup();
                    let mut addrs = addrs
                        .write()
                        .expect("the address list lock is never poisoned");
                    if *addrs != found {
                        tracing::info!(source, client = %entry.name, host = %host, addresses = ?found, "forward client host resolved");
                        *addrs = found;
                    }
                }
                Err(e) => tracing::warn!(
                    source,
                    client = %entry.name,
                    host = %host,
                    error = %e,
                    "cannot resolve a security.clients host; until it resolves, connections from it match this entry only at its last known addresses (anonymous otherwise)"
                ),
            }
        }
    }

    /// Resolves the `host` entries again every `resolve_interval` until `shutdown`.
    pub(super) async fn keep_resolved(&self, source: String, shutdown: Shutdown) {
        let Some(every) = self.resolve_interval.filter(|_| self.has_hosts()) else {
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            self.resolve(&source).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses() {
        let net: Network = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.255.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(
            net.contains(ip("::ffff:10.1.0.9")),
            "IPv4 seen on an IPv6 socket"
        );
        let odd: Network = "192.168.1.64/27".parse().unwrap();
        assert!(odd.contains(ip("192.168.1.95")) && !odd.contains(ip("192.168.1.96")));
        let one: Network = "127.0.0.2".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.2/32");
        assert!(one.contains(ip("127.0.0.2")) && !one.contains(ip("127.0.0.1")));
        let v6: Network = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        let mapped: Network = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
    }

    #[test]
    fn bad_networks_say_what_is_wrong() {
        let e = "10.0.0.0/33".parse::<Network>().unwrap_err();
        assert!(e.contains("prefix length must be 0 to 32"), "{e}");
        let e = "10.0.0/8".parse::<Network>().unwrap_err();
        assert!(e.contains("`10.0.0` is not an IP address"), "{e}");
        let e = "fd00::/129".parse::<Network>().unwrap_err();
        assert!(e.contains("0 to 128"), "{e}");
        let e = "10.0.0.0/x".parse::<Network>().unwrap_err();
        assert!(e.contains("like 10.0.0.0/8"), "{e}");
    }
}
