//! nagare's forwarder to nagare's aggregator over TLS with the shared-key handshake,
//! both ends in one process on 127.0.0.1 with real routers and buffers. Certificates
//! are made per test (rcgen, and the openssl command line for keys encrypted with a
//! passphrase); nothing is committed. Every refusal is checked on both
//! sides: the aggregator's warning and the forwarder's.
#![cfg(all(feature = "forwarder", feature = "aggregator"))]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nagare_aggregator::sources::forward::{
    ForwardServer, ForwardSourceConfig, SecurityConfig, ServerTlsConfig, UserConfig,
};
use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::config::{HumanDuration, Secret};
use nagare_core::{Chunk, ChunkBuilder, EventTime, Map, Tag};
use nagare_forwarder::sinks::forward::{
    ClientSecurityConfig, ClientTlsConfig, ForwardSinkConfig, ServerConfig,
};
use nagare_testkit::{LogCapture, capture_logs};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use support::link::{Aggregator, Forwarder};
use tracing::Level;

const WAIT: Duration = Duration::from_secs(10);

/// A CA and what it signed, written as PEM files into a temporary folder.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Makes CA `name`; returns its signer.
    fn ca(&self, name: &str) -> Issuer<'static, KeyPair> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(self.path(&format!("{name}.crt")), cert.pem()).unwrap();
        Issuer::new(params, key)
    }

    /// Makes a certificate for `names`, signed by `ca`, as `<file>.crt` / `.key`.
    fn leaf(&self, file: &str, names: &[&str], ca: &Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, file);
        let cert = params.signed_by(&key, ca).unwrap();
        std::fs::write(self.path(&format!("{file}.crt")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{file}.key")), key.serialize_pem()).unwrap();
    }
}

/// Waits until a warning of `target` contains every one of `needles`.
async fn wait_for_warning(logs: &LogCapture, target: &str, needles: &[&str]) -> String {
    let all: Vec<&str> = ["WARN", target]
        .into_iter()
        .chain(needles.iter().copied())
        .collect();
    match logs.wait_for(WAIT, &all).await {
        Some(line) => line,
        None => panic!(
            "no {target} warning with {needles:?}; warnings: {:#?}",
            logs.matching(&["WARN", target])
        ),
    }
}

/// Waits until a warning of the forwarder contains every one of `needles`.
async fn forwarder_warning(logs: &LogCapture, needles: &[&str]) -> String {
    wait_for_warning(logs, "nagare_forwarder", needles).await
}

/// Waits until a warning of the aggregator contains every one of `needles`.
async fn aggregator_warning(logs: &LogCapture, needles: &[&str]) -> String {
    wait_for_warning(logs, "nagare_aggregator", needles).await
}

async fn start_aggregator(config: ForwardSourceConfig) -> Aggregator {
    let collected = Buffer::new("collected", &BufferConfig::default());
    support::link::start_aggregator(&config, collected).await
}

impl Aggregator {
    /// Takes `events` events off the aggregator's buffer.
    async fn expect_events(&self, events: u32) {
        let mut got = 0;
        tokio::time::timeout(WAIT, async {
            while got < events {
                let lease = self.buffer.pop().await.unwrap();
                got += lease.chunk().count();
                lease.delivered();
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{got} of {events} events arrived"));
    }
}

fn server_config(pki: &Pki, require_client_cert: bool) -> ForwardSourceConfig {
    ForwardSourceConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        tls: Some(ServerTlsConfig {
            cert_path: pki.path("aggregator.crt"),
            private_key_path: pki.path("aggregator.key"),
            private_key_passphrase: None,
            ca_path: Some(pki.path("cluster.crt")),
            client_cert_auth: require_client_cert,
        }),
        security: Some(SecurityConfig {
            self_hostname: Some("aggregator-0".into()),
            shared_key: Secret::new("cluster-key"),
            user_auth: true,
            users: vec![UserConfig {
                username: "node".into(),
                password: Secret::new("node-password"),
            }],
            allow_anonymous_source: true,
            clients: Vec::new(),
            resolve_interval: HumanDuration::secs(60),
        }),
        ..ForwardSourceConfig::default()
    }
}

fn sink_config(addr: SocketAddr, pki: &Pki, ca: &str, key: &str, cert: bool) -> ForwardSinkConfig {
    let mut c = ForwardSinkConfig::new(vec![ServerConfig::new("localhost", addr.port())]);
    c.connect_timeout = HumanDuration::secs(3);
    c.heartbeat_interval = HumanDuration::millis(200);
    c.recover_wait = HumanDuration::millis(300);
    c.tls = Some(ClientTlsConfig {
        ca_path: Some(pki.path(&format!("{ca}.crt"))),
        cert_path: cert.then(|| pki.path("node.crt")),
        private_key_path: cert.then(|| pki.path("node.key")),
        private_key_passphrase: None,
        server_name: None,
        verify_hostname: true,
        insecure_skip_verify: false,
    });
    c.security = Some(ClientSecurityConfig {
        self_hostname: Some("node-1".into()),
        shared_key: Secret::new(key),
        username: Some("node".into()),
        password: Some(Secret::new("node-password")),
    });
    c
}

fn start_forwarder(config: ForwardSinkConfig) -> Forwarder {
    support::link::start_forwarder("to_aggregator", config)
}

/// Starts a forwarder to `aggregator` (`sink_config` with `ca`, `key` and `cert`)
/// and hands it a chunk of one event.
async fn forward_one(
    aggregator: &Aggregator,
    pki: &Pki,
    ca: &str,
    key: &str,
    cert: bool,
) -> Forwarder {
    let forwarder = start_forwarder(sink_config(aggregator.addr, pki, ca, key, cert));
    forwarder.buffer.push(chunk(1)).await.unwrap();
    forwarder
}

/// Pushes `chunks` chunks of `events` events each through the forwarder, checks
/// that every event arrives and every chunk is acknowledged, and stops both ends.
async fn deliver(forwarder: Forwarder, aggregator: Aggregator, chunks: u32, events: u32) {
    for _ in 0..chunks {
        forwarder.buffer.push(chunk(events)).await.unwrap();
    }
    aggregator.expect_events(chunks * events).await;
    let drained = tokio::time::timeout(WAIT, forwarder.buffer.drained(WAIT)).await;
    assert!(matches!(drained, Ok(true)), "every chunk was acknowledged");
    forwarder.stop().await;
    aggregator.stop().await;
}

/// The error a forwarder with `config` stops with at its start.
async fn start_error(config: ForwardSinkConfig) -> String {
    let forwarder = start_forwarder(config);
    tokio::time::timeout(WAIT, forwarder.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err()
        .to_string()
}

/// The error an aggregator with `config` fails to bind with.
async fn bind_error(config: &ForwardSourceConfig) -> String {
    ForwardServer::bind(config).await.unwrap_err().to_string()
}

fn chunk(n: u32) -> Chunk {
    let mut b = ChunkBuilder::new(Tag::new("kube.secure"));
    for i in 0..n {
        let mut m = Map::new();
        m.insert("message", format!("line {i}"));
        b.push(EventTime::new(1_700_000_000, i), &m);
    }
    b.finish().unwrap()
}

/// The CA `cluster` signs the aggregator's and the node's certificates; `other` is a
/// CA nobody here trusts.
fn pki() -> Pki {
    let pki = Pki::new();
    let cluster = pki.ca("cluster");
    pki.leaf("aggregator", &["localhost", "127.0.0.1"], &cluster);
    pki.leaf("node", &["node-1"], &cluster);
    let other = pki.ca("other");
    pki.leaf("impostor", &["localhost"], &other);
    pki
}

#[tokio::test]
async fn tls_with_client_certificates_and_the_shared_key_delivers() {
    let _logs = capture_logs(Level::INFO);
    let pki = pki();
    let aggregator = start_aggregator(server_config(&pki, true)).await;
    let forwarder = start_forwarder(sink_config(
        aggregator.addr,
        &pki,
        "cluster",
        "cluster-key",
        true,
    ));
    deliver(forwarder, aggregator, 5, 20).await;
}

#[tokio::test]
async fn a_server_certificate_from_an_untrusted_ca_is_refused_on_both_sides() {
    let logs = capture_logs(Level::INFO);
    let pki = pki();
    let mut config = server_config(&pki, false);
    // The aggregator presents a certificate the forwarder's CA did not sign.
    config.tls.as_mut().unwrap().cert_path = pki.path("impostor.crt");
    config.tls.as_mut().unwrap().private_key_path = pki.path("impostor.key");
    let aggregator = start_aggregator(config).await;
    let forwarder = forward_one(&aggregator, &pki, "cluster", "cluster-key", false).await;
    let client = forwarder_warning(&logs, &["TLS handshake failed", "UnknownIssuer"]).await;
    assert!(client.contains("tls.ca_path"), "{client}");
    let server = aggregator_warning(&logs, &["refused forward client: TLS handshake failed"]).await;
    assert!(server.contains("peer=127.0.0.1:"), "{server}");
    assert_eq!(
        forwarder.buffer.stats().in_flight_chunks,
        1,
        "the chunk is kept"
    );
    forwarder.stop().await;
    aggregator.stop().await;
}

#[tokio::test]
async fn a_client_without_the_required_certificate_is_refused_on_both_sides() {
    let logs = capture_logs(Level::INFO);
    let pki = pki();
    let aggregator = start_aggregator(server_config(&pki, true)).await;
    let forwarder = forward_one(&aggregator, &pki, "cluster", "cluster-key", false).await;
    let server = aggregator_warning(&logs, &["TLS handshake failed", "no certificates"]).await;
    assert!(
        server.contains("check the client's certificate"),
        "{server}"
    );
    forwarder_warning(&logs, &["lost the forward server", "CertificateRequired"]).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(200), aggregator.buffer.pop())
            .await
            .is_err(),
        "nothing got through"
    );
    forwarder.stop().await;
    aggregator.stop().await;
}

#[tokio::test]
async fn a_wrong_shared_key_is_refused_on_both_sides() {
    let logs = capture_logs(Level::INFO);
    let pki = pki();
    let aggregator = start_aggregator(server_config(&pki, false)).await;
    let forwarder = forward_one(&aggregator, &pki, "cluster", "not-the-key", false).await;
    let server = aggregator_warning(&logs, &["authentication failed", "shared_key mismatch"]).await;
    assert!(server.contains("hostname=node-1"), "{server}");
    assert!(!server.contains("not-the-key") && !server.contains("cluster-key"));
    let client = forwarder_warning(
        &logs,
        &["the server refused the handshake: shared_key mismatch"],
    )
    .await;
    assert!(client.contains("security.shared_key"), "{client}");
    forwarder.stop().await;
    aggregator.stop().await;
}

fn copy(pki: &Pki, from: &str, to: &Path) {
    std::fs::copy(pki.path(from), to).unwrap();
}

#[tokio::test]
async fn a_key_that_does_not_match_its_certificate_fails_the_start_on_both_sides() {
    let pki = pki();
    // The aggregator's certificate with the node's key.
    let mismatched = pki.path("mismatched.key");
    copy(&pki, "node.key", &mismatched);
    let mut config = server_config(&pki, false);
    config.tls.as_mut().unwrap().private_key_path = mismatched.clone();
    let err = bind_error(&config).await;
    assert!(err.contains("cannot be used together"), "{err}");
    assert!(
        err.contains("aggregator.crt") && err.contains("mismatched.key"),
        "{err}"
    );

    let mut sink = sink_config("127.0.0.1:1".parse().unwrap(), &pki, "cluster", "k", true);
    sink.tls.as_mut().unwrap().private_key_path = Some(pki.path("aggregator.key"));
    let err = start_error(sink).await;
    assert!(err.contains("cannot be used together"), "{err}");

    let missing = ServerTlsConfig {
        cert_path: pki.path("nope.crt"),
        ..config.tls.clone().unwrap()
    };
    config.tls = Some(missing);
    let err = bind_error(&config).await;
    assert!(
        err.contains("tls.cert_path") && err.contains("nope.crt"),
        "{err}"
    );
}

fn encrypted_server_config(d: &Path, passphrase: Option<&str>) -> ForwardSourceConfig {
    ForwardSourceConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        tls: Some(ServerTlsConfig {
            cert_path: d.join("aggregator.crt"),
            private_key_path: d.join("aggregator.key"),
            private_key_passphrase: passphrase.map(Secret::new),
            ca_path: Some(d.join("ca.crt")),
            client_cert_auth: true,
        }),
        ..ForwardSourceConfig::default()
    }
}

fn encrypted_sink_config(addr: SocketAddr, d: &Path, passphrase: &str) -> ForwardSinkConfig {
    let mut c = ForwardSinkConfig::new(vec![ServerConfig::new("localhost", addr.port())]);
    c.connect_timeout = HumanDuration::secs(3);
    c.tls = Some(ClientTlsConfig {
        ca_path: Some(d.join("ca.crt")),
        cert_path: Some(d.join("node.crt")),
        private_key_path: Some(d.join("node.key")),
        private_key_passphrase: Some(Secret::new(passphrase)),
        server_name: None,
        verify_hostname: true,
        insecure_skip_verify: false,
    });
    c
}

#[tokio::test]
async fn keys_encrypted_with_a_passphrase_serve_tls_on_both_sides() {
    let _logs = capture_logs(Level::INFO);
    let pki = support::openssl::encrypted_pki();
    let d = pki.path();
    let aggregator = start_aggregator(encrypted_server_config(d, Some("aggregator-pass"))).await;
    let forwarder = start_forwarder(encrypted_sink_config(aggregator.addr, d, "node-pass"));
    deliver(forwarder, aggregator, 3, 10).await;
}

#[tokio::test]
async fn a_wrong_or_missing_passphrase_fails_the_start_naming_the_file_and_the_key() {
    let pki = support::openssl::encrypted_pki();
    let d = pki.path();
    let err = bind_error(&encrypted_server_config(d, Some("nope"))).await;
    assert!(
        err.contains("tls.private_key_path")
            && err.contains("aggregator.key")
            && err.contains("tls.private_key_passphrase does not decrypt the key"),
        "{err}"
    );
    assert!(
        !err.contains("nope"),
        "the passphrase is never printed: {err}"
    );
    let err = bind_error(&encrypted_server_config(d, None)).await;
    assert!(
        err.contains("aggregator.key")
            && err.contains("give its passphrase in tls.private_key_passphrase"),
        "{err}"
    );

    let err = start_error(encrypted_sink_config(
        "127.0.0.1:1".parse().unwrap(),
        d,
        "aggregator-pass",
    ))
    .await;
    assert!(
        err.contains("node.key") && err.contains("tls.private_key_passphrase does not decrypt"),
        "{err}"
    );
}
