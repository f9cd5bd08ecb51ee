//! `security.clients`: keys and users per client address, `allow_anonymous_source`,
//! and their config checks. Clients connect from loopback aliases (127.0.0.2, ...,
//! all of 127.0.0.0/8 reaches the loopback interface on Linux) to act as different
//! hosts.

use std::net::IpAddr;

use nagare_core::config::ConfigError;
use tokio::net::TcpSocket;

use super::*;

/// Connects to the server from `from` (a loopback alias).
async fn connect_from(from: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    socket.connect(server).await.unwrap()
}

fn with_clients(yaml: &str) -> ForwardSourceConfig {
    let text = format!(
        "bind: 127.0.0.1:0\nsecurity:\n  self_hostname: aggregator-0\n  shared_key: global-key\n{yaml}"
    );
    let config = ConfigDocument::from_text("nagare.yaml", &text, |_| None)
        .unwrap()
        .parse::<ForwardSourceConfig>()
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    config.validate().unwrap();
    config
}

/// Runs the handshake from `from` with `key` (and `user`): the PONG's verdict and
/// reason; an accepted client's frame is acked.
async fn try_client(
    server: &Server,
    from: &str,
    key: &str,
    user: Option<(&str, &str)>,
) -> (bool, String, SocketAddr) {
    let mut stream = connect_from(from, server.addr).await;
    let peer = stream.local_addr().unwrap();
    let (helo, pong) = handshake(&mut stream, key, user, b"0123456789abcdef").await;
    if pong.auth_ok {
        assert_eq!(
            pong.shared_key_digest,
            hs::shared_key_digest(b"0123456789abcdef", "aggregator-0", &helo.nonce, key),
            "the server proves it knows this client's key"
        );
        send_acked(
            &mut stream,
            &packed("t", &entries(0, 1), 1, "c", Compression::None),
            "c",
        )
        .await;
        assert_eq!(take(&server.buffer).await.count(), 1);
    } else {
        assert!(closed_by_server(&mut stream).await);
    }
    (pong.auth_ok, pong.reason, peer)
}

#[tokio::test]
async fn each_client_address_uses_its_own_key_and_others_are_refused() {
    let server = start(
        with_clients(
            "  allow_anonymous_source: false\n  clients:\n    - host: localhost\n      shared_key: loopback-key\n    - network: 127.0.0.2/32\n    - network: 127.0.0.3/32\n      shared_key: three-key\n",
        ),
        BufferConfig::default(),
    )
    .await;

    // 127.0.0.1 is `localhost`: its own key, not the global one.
    assert!(
        try_client(&server, "127.0.0.1", "loopback-key", None)
            .await
            .0
    );
    let (ok, reason, _) = try_client(&server, "127.0.0.1", "global-key", None).await;
    assert!(!ok);
    assert_eq!(reason, "shared_key mismatch");
    // 127.0.0.2 has no key of its own: the global one.
    assert!(try_client(&server, "127.0.0.2", "global-key", None).await.0);
    assert!(try_client(&server, "127.0.0.3", "three-key", None).await.0);
    assert!(!try_client(&server, "127.0.0.3", "global-key", None).await.0);

    // 127.0.0.4 matches no entry: refused whatever its key. (The log line that
    // names its address is checked on the real binary, in tests/forward_clients.rs:
    // tracing's per-thread capture can miss events of tests run in parallel.)
    for key in ["global-key", "loopback-key"] {
        let (ok, reason, _) = try_client(&server, "127.0.0.4", key, None).await;
        assert!(!ok);
        assert_eq!(reason, "anonymous source denied");
    }
    assert!(pop_or_none(&server.buffer).await.is_none());
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn anonymous_clients_use_the_global_key_unless_refused() {
    // A network that leaves loopback out: loopback clients are anonymous.
    let clients = "  clients:\n    - network: 10.0.0.0/8\n      shared_key: ten-key\n";
    let server = start(with_clients(clients), BufferConfig::default()).await;
    assert!(try_client(&server, "127.0.0.1", "global-key", None).await.0);
    assert!(!try_client(&server, "127.0.0.1", "ten-key", None).await.0);
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();

    let strict = format!("  allow_anonymous_source: false\n{clients}");
    let server = start(with_clients(&strict), BufferConfig::default()).await;
    let (ok, reason, _) = try_client(&server, "127.0.0.1", "global-key", None).await;
    assert!(!ok);
    assert_eq!(reason, "anonymous source denied");
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_clients_users_list_restricts_who_may_log_in_from_it() {
    let server = start(
        with_clients(
            "  user_auth: true\n  users:\n    - {username: alice, password: a-pw}\n    - {username: bob, password: b-pw}\n  clients:\n    - network: 127.0.0.2\n      users: [alice]\n",
        ),
        BufferConfig::default(),
    )
    .await;
    let alice = Some(("alice", "a-pw"));
    let bob = Some(("bob", "b-pw"));
    assert!(
        try_client(&server, "127.0.0.2", "global-key", alice)
            .await
            .0
    );
    let (ok, reason, _) = try_client(&server, "127.0.0.2", "global-key", bob).await;
    assert!(!ok, "bob may not log in from 127.0.0.2");
    assert_eq!(reason, "username/password mismatch");
    // Anywhere else, any user of security.users.
    assert!(try_client(&server, "127.0.0.1", "global-key", bob).await.0);
    assert!(
        !try_client(&server, "127.0.0.1", "global-key", Some(("bob", "a-pw")))
            .await
            .0
    );
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

fn config_error(yaml: &str) -> ConfigError {
    let text = format!("security:\n  shared_key: k\n{yaml}");
    let doc = ConfigDocument::from_text("nagare.yaml", &text, |_| None).unwrap();
    match doc.parse::<ForwardSourceConfig>() {
        Err(e) => e,
        Ok(c) => {
            let invalid = c.validate().expect_err(&text);
            ConfigError {
                file: "nagare.yaml".into(),
                line: None,
                key: Some(invalid.key),
                message: invalid.message,
            }
        }
    }
}

#[test]
fn client_config_mistakes_name_their_key() {
    // A bad network is refused where it is written.
    let e = config_error("  clients:\n    - network: 10.0.0.0/33\n");
    assert_eq!(e.key.as_deref(), Some("security.clients.0.network"), "{e}");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("prefix length must be 0 to 32"), "{e}");
    let e = config_error("  clients:\n    - network: 10.0.0.0/8\n    - network: 10.0.0/8\n");
    assert_eq!(e.key.as_deref(), Some("security.clients.1.network"), "{e}");
    assert_eq!(e.line, Some(5), "{e}");

    let cases = [
        (
            "  allow_anonymous_source: false\n",
            "security.allow_anonymous_source",
            "would refuse every client",
        ),
        (
            "  clients:\n    - host: a\n      network: 10.0.0.0/8\n",
            "security.clients.0",
            "not both",
        ),
        (
            "  clients:\n    - shared_key: k2\n",
            "security.clients.0",
            "give host",
        ),
        (
            "  clients:\n    - host: ' '\n",
            "security.clients.0.host",
            "empty",
        ),
        (
            "  clients:\n    - host: a\n      shared_key: ''\n",
            "security.clients.0.shared_key",
            "empty",
        ),
        (
            "  clients:\n    - host: a\n      users: [u]\n",
            "security.clients.0.users",
            "user_auth: true",
        ),
        (
            "  user_auth: true\n  users:\n    - {username: u, password: p}\n  clients:\n    - host: a\n      users: [u, v]\n",
            "security.clients.0.users",
            "`v` is not one of security.users",
        ),
    ];
    for (yaml, key, says) in cases {
        let e = config_error(yaml);
        assert_eq!(e.key.as_deref(), Some(key), "{yaml}: {e}");
        assert!(e.message.contains(says), "{yaml}: {e}");
    }
    let e = config_error("  clients:\n    - host: a\n      netwrok: 10.0.0.0/8\n");
    assert!(e.message.starts_with("unknown field `netwrok`"), "{e}");
}
