//! `security.clients` of the forward source, on the real `nagare` binary, with the
//! real Node fluent-logger as the client: each client address with its own shared
//! key, a network that leaves loopback out, users per client, and
//! `allow_anonymous_source: false` refusing (and logging) a client that matches no
//! entry. The client picks its source address among the loopback aliases
//! (127.0.0.0/8 all reach the loopback interface on Linux) to act as different hosts.

mod support;

use std::time::Duration;

use nagare_testkit::{Node, free_port, wait_until};
use support::{Nagare, plain, read_ndjson};

/// An aggregator whose forward source has the `security` section `security`.
fn aggregator(dir: &std::path::Path, port: u16, security: &str) -> Nagare {
    let mut agg = Nagare::start(
        "aggregator",
        dir,
        &format!(
            "data_dir: {data}\n\
             sources:\n  clients:\n    type: forward\n    bind: 127.0.0.1:{port}\n    security:\n      self_hostname: aggregator-0\n{security}\
             sinks:\n  out:\n    type: file\n    match: \"**\"\n    path: {out}\n",
            data = dir.join("data").display(),
            out = dir.join("out.ndjson").display(),
        ),
    );
    support::wait_listening(&mut agg, port);
    agg
}

/// What one run of the Node client ended with.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Every event was acked.
    Delivered,
    /// The server refused the handshake, with this PONG reason.
    Refused(String),
}

/// Node's fluent-logger connecting from `from` with `key` (and `user`), sending 5
/// events tagged `secure.<label>`. fluent-logger has no setting for the source
/// address, so the script binds it the way a multi-homed host would pick one: by
/// giving the socket's `connect` a `localAddress`.
fn node_client(
    port: u16,
    from: &str,
    key: &str,
    user: Option<(&str, &str)>,
    label: &str,
) -> Outcome {
    let script = r#"
const net = require('net');
const [port, from, key, username, password, label] = process.argv.slice(1);
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (p, host, cb) {
  return connect.call(this, { port: p, host, localAddress: from }, cb);
};
const logger = require('fluent-logger').createFluentSender('secure', {
  host: '127.0.0.1', port: Number(port), timeout: 3.0, reconnectInterval: 600000,
  eventMode: 'PackedForward', requireAckResponse: true, ackResponseTimeout: 10000,
  flushInterval: 50, internalLogger: { info() {}, error() {} },
  security: { clientHostname: 'node-client', sharedKey: key, username, password },
});
let acked = 0;
const refused = (e) => { console.log('refused:', e.message); process.exit(0); };
logger.on('error', refused);
setTimeout(() => { console.error('only', acked, 'acks'); process.exit(1); }, 20000);
for (let i = 0; i < 5; i++) {
  logger.emit(label, { n: i }, (err) => {
    if (err) refused(err);
    if (++acked === 5) logger.end(null, null, () => { console.log('delivered'); process.exit(0); });
  });
}
"#;
    let (username, password) = user.unwrap_or(("", ""));
    let mut node = Node::fluent_logger().spawn_script(
        script,
        &[&port.to_string(), from, key, username, password, label],
    );
    node.expect_success(Duration::from_secs(30));
    let out = node.stdout();
    if out.contains("delivered") {
        Outcome::Delivered
    } else if let Some(reason) = out.strip_prefix("refused: Authentication failed: ") {
        Outcome::Refused(reason.trim().to_string())
    } else {
        panic!("neither delivered nor refused: {}", node.logs())
    }
}

fn labels(out: &std::path::Path) -> Vec<String> {
    let mut tags: Vec<String> = read_ndjson(out)
        .iter()
        .map(|l| l["tag"].as_str().unwrap().to_string())
        .collect();
    tags.sort();
    tags.dedup();
    tags
}

#[test]
fn each_client_address_has_its_own_key_and_unknown_addresses_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut agg = aggregator(
        dir.path(),
        port,
        "      shared_key: global-key\n      allow_anonymous_source: false\n      clients:\n        - host: localhost\n          shared_key: loopback-key\n        - network: 127.0.0.2/32\n        - network: 127.0.0.3/32\n          shared_key: three-key\n",
    );
    let mismatch = Outcome::Refused("shared_key mismatch".into());
    assert_eq!(
        node_client(port, "127.0.0.1", "loopback-key", None, "one"),
        Outcome::Delivered
    );
    assert_eq!(
        node_client(port, "127.0.0.1", "global-key", None, "x1"),
        mismatch
    );
    assert_eq!(
        node_client(port, "127.0.0.2", "global-key", None, "two"),
        Outcome::Delivered
    );
    assert_eq!(
        node_client(port, "127.0.0.3", "three-key", None, "three"),
        Outcome::Delivered
    );
    assert_eq!(
        node_client(port, "127.0.0.3", "global-key", None, "x3"),
        mismatch
    );
    assert_eq!(
        node_client(port, "127.0.0.4", "global-key", None, "x4"),
        Outcome::Refused("anonymous source denied".into())
    );
    assert!(
        wait_until(Duration::from_secs(10), || agg
            .child
            .stderr()
            .contains("127.0.0.4 matches no security.clients entry")),
        "{}",
        agg.child.logs()
    );
    let refusal = plain(&agg.child.stderr())
        .lines()
        .find(|l| l.contains("127.0.0.4 matches no"))
        .unwrap()
        .to_string();
    assert!(
        refusal.contains("WARN")
            && refusal.contains("peer=127.0.0.4:")
            && refusal.contains("allow_anonymous_source is false"),
        "{refusal}"
    );
    let out = dir.path().join("out.ndjson");
    assert!(
        wait_until(Duration::from_secs(20), || read_ndjson(&out).len() >= 15),
        "{}",
        agg.child.logs()
    );
    assert!(agg.terminate(Duration::from_secs(20)).success());
    assert_eq!(read_ndjson(&out).len(), 15);
    assert_eq!(labels(&out), ["secure.one", "secure.three", "secure.two"]);
    let logs = agg.child.stderr();
    for secret in ["global-key", "loopback-key", "three-key"] {
        assert!(!logs.contains(secret), "keys are never logged");
    }
}

#[test]
fn a_network_without_loopback_makes_loopback_anonymous_and_users_are_per_client() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Anonymous clients allowed: loopback, outside 10.0.0.0/8, uses the global key.
    // 127.0.0.2 may only log in as alice.
    let mut agg = aggregator(
        dir.path(),
        port,
        "      shared_key: global-key\n      user_auth: true\n      users:\n        - {username: alice, password: a-pw}\n        - {username: bob, password: b-pw}\n      clients:\n        - network: 10.0.0.0/8\n          shared_key: ten-key\n        - network: 127.0.0.2\n          users: [alice]\n",
    );
    let alice = Some(("alice", "a-pw"));
    let bob = Some(("bob", "b-pw"));
    assert_eq!(
        node_client(port, "127.0.0.1", "global-key", bob, "anon"),
        Outcome::Delivered
    );
    assert_eq!(
        node_client(port, "127.0.0.1", "ten-key", bob, "x1"),
        Outcome::Refused("shared_key mismatch".into())
    );
    assert_eq!(
        node_client(port, "127.0.0.2", "global-key", alice, "alice"),
        Outcome::Delivered
    );
    assert_eq!(
        node_client(port, "127.0.0.2", "global-key", bob, "x2"),
        Outcome::Refused("username/password mismatch".into())
    );
    let out = dir.path().join("out.ndjson");
    assert!(
        wait_until(Duration::from_secs(20), || read_ndjson(&out).len() >= 10),
        "{}",
        agg.child.logs()
    );
    assert!(agg.terminate(Duration::from_secs(20)).success());
    assert_eq!(labels(&out), ["secure.alice", "secure.anon"]);

    // The same network with anonymous clients refused: loopback is turned away.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut agg = aggregator(
        dir.path(),
        port,
        "      shared_key: global-key\n      allow_anonymous_source: false\n      clients:\n        - network: 10.0.0.0/8\n",
    );
    assert_eq!(
        node_client(port, "127.0.0.1", "global-key", None, "x"),
        Outcome::Refused("anonymous source denied".into())
    );
    assert!(agg.terminate(Duration::from_secs(20)).success());
    assert!(read_ndjson(&dir.path().join("out.ndjson")).is_empty());
}
