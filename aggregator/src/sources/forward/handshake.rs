//! The server's side of the shared-key handshake: HELO out, PING checked, PONG back,
//! as Fluentd's `in_forward` does it with `<security>`.

use nagare_core::config::Secret;
use nagare_core::forward::handshake::{self, Helo, Ping, Pong};

use super::config::{SecurityConfig, machine_hostname};

/// What the server checks clients against.
#[derive(Debug)]
pub(super) struct Auth {
    pub(super) self_hostname: String,
    shared_key: Secret,
    /// `Some` with user authentication.
    users: Option<Vec<(String, Secret)>>,
    keepalive: bool,
}

/// A refused PING: the PONG to send and the reason to log.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) pong: Pong,
    pub(super) reason: &'static str,
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

    /// Checks a PING against the HELO it answers.
    pub(super) fn check(&self, helo: &Helo, ping: &Ping) -> Result<Pong, Refusal> {
        let refuse = |reason: &'static str| Refusal {
            pong: Pong {
                auth_ok: false,
                reason: reason.to_string(),
                hostname: String::new(),
                shared_key_digest: String::new(),
            },
            reason,
        };
        let key = self.shared_key.expose();
        let expected =
            handshake::shared_key_digest(&ping.shared_key_salt, &ping.hostname, &helo.nonce, key);
        if !same(&expected, &ping.shared_key_digest) {
            return Err(refuse("shared_key mismatch"));
        }
        if let Some(users) = &self.users {
            let known = users.iter().any(|(name, password)| {
                let digest = handshake::password_digest(&helo.auth_salt, name, password.expose());
                name == &ping.username && same(&digest, &ping.password_digest)
            });
            if !known {
                return Err(refuse("username/password mismatch"));
            }
        }
        Ok(Pong {
            auth_ok: true,
            reason: String::new(),
            hostname: self.self_hostname.clone(),
            shared_key_digest: handshake::shared_key_digest(
                &ping.shared_key_salt,
                &self.self_hostname,
                &helo.nonce,
                key,
            ),
        })
    }
}

/// Compares digests without returning early, so timing does not tell how much of a
/// guess was right.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
