//! The server's side of the shared-key handshake: HELO out, PING checked, PONG back,
//! as Fluentd's `in_forward` does it with `<security>`: the key, and the users, are
//! those of the `clients` entry the peer's address matches, else the global ones
//! (or a refusal, without `allow_anonymous_source`).

use std::net::IpAddr;

use nagare_core::config::Secret;
use nagare_core::forward::handshake::{self, Helo, Ping, Pong};
use nagare_core::host::machine_hostname;
use subtle::ConstantTimeEq;

use super::clients::Clients;
use super::config::SecurityConfig;

/// What the server checks clients against.
#[derive(Debug)]
pub(super) struct Auth {
    pub(super) self_hostname: String,
    shared_key: Secret,
    /// `Some` with user authentication.
    users: Option<Vec<(String, Secret)>>,
    allow_anonymous_source: bool,
    pub(super) clients: Clients,
    keepalive: bool,
}

/// Why a PING was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefusalKind {
    /// The shared-key digest is wrong.
    SharedKey,
    /// No such user, a wrong password, or a user this client may not be.
    User,
    /// The address matches no `clients` entry and anonymous clients are refused.
    Anonymous,
}

impl RefusalKind {
    /// The reason PONG gives: Fluentd's words, and under
    /// [`handshake::MAX_REASON_BYTES`] (Fluent Bit's client copies it into a buffer of
    /// that size, so Fluentd's "anonymous source host '<address>' denied" is cut short
    /// here).
    pub(super) fn reason(self) -> &'static str {
        match self {
            RefusalKind::SharedKey => "shared_key mismatch",
            RefusalKind::User => "username/password mismatch",
            RefusalKind::Anonymous => "anonymous source denied",
        }
    }
}

/// A refused PING: the PONG to send, and why.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) pong: Pong,
    pub(super) kind: RefusalKind,
    /// The `clients` entry the peer matched, if any.
    pub(super) client: Option<String>,
}

/// An accepted PING: the PONG to send, and the `clients` entry matched.
#[derive(Debug)]
pub(super) struct Accepted {
    pub(super) pong: Pong,
    pub(super) client: Option<String>,
}

impl Auth {
    pub(super) fn new(config: &SecurityConfig, keepalive: bool) -> Self {
        Self {
            self_hostname: config
                .self_hostname
                .clone()
                .unwrap_or_else(machine_hostname),
            shared_key: config.shared_key.clone(),
            users: config.user_auth.then(|| {
                config
                    .users
                    .iter()
                    .map(|u| (u.username.clone(), u.password.clone()))
                    .collect()
            }),
            allow_anonymous_source: config.allow_anonymous_source,
            clients: Clients::new(config),
            keepalive,
        }
    }

    /// A fresh HELO: a random nonce, and a random salt when users are checked.
    pub(super) fn helo(&self) -> Helo {
        Helo {
            nonce: rand::random::<[u8; 16]>().to_vec(),
            auth_salt: if self.users.is_some() {
                rand::random::<[u8; 16]>().to_vec()
            } else {
                Vec::new()
            },
            keepalive: self.keepalive,
        }
    }

    /// Checks a PING from `peer` (no address: a Unix socket client, which matches no
    /// `clients` entry) against the HELO it answers.
    pub(super) fn check(
        &self,
        helo: &Helo,
        ping: &Ping,
        peer: Option<IpAddr>,
    ) -> Result<Accepted, Refusal> {
        let client = peer.and_then(|ip| self.clients.find(ip));
        let name = client.map(|c| c.name.to_string());
        let refuse = |kind: RefusalKind| Refusal {
            pong: Pong {
                auth_ok: false,
                reason: kind.reason().to_string(),
                hostname: String::new(),
                shared_key_digest: String::new(),
            },
            kind,
            client: name.clone(),
        };
        if client.is_none() && !self.allow_anonymous_source {
            return Err(refuse(RefusalKind::Anonymous));
        }
        let key = client.map_or(&self.shared_key, |c| c.shared_key).expose();
        let expected =
            handshake::shared_key_digest(&ping.shared_key_salt, &ping.hostname, &helo.nonce, key);
        // Digests are compared in constant time, so timing does not tell how much of
        // a guess was right.
        if !bool::from(expected.as_bytes().ct_eq(ping.shared_key_digest.as_bytes())) {
            return Err(refuse(RefusalKind::SharedKey));
        }
        if let Some(users) = &self.users {
            let allowed = client.map_or(&[][..], |c| c.users);
            let known = users.iter().any(|(name, password)| {
                let digest = handshake::password_digest(&helo.auth_salt, name, password.expose());
                name == &ping.username
                    && (allowed.is_empty() || allowed.contains(name))
                    && bool::from(digest.as_bytes().ct_eq(ping.password_digest.as_bytes()))
            });
            if !known {
                return Err(refuse(RefusalKind::User));
            }
        }
        Ok(Accepted {
            pong: Pong {
                auth_ok: true,
                reason: String::new(),
                hostname: self.self_hostname.clone(),
                shared_key_digest: handshake::shared_key_digest(
                    &ping.shared_key_salt,
                    &self.self_hostname,
                    &helo.nonce,
                    key,
                ),
            },
            client: name,
        })
    }
}
