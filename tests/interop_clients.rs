//! Real third-party Forward Protocol clients against the real `nagare` aggregator:
//! Python's fluent-logger (Message mode, EventTime), Node's fluent-logger (Message,
//! PackedForward and CompressedPackedForward with acks, and the shared-key
//! handshake, and over TLS to a key encrypted with a passphrase), and Go's
//! fluent-logger-golang (Message mode with EventTime, and the JSON form, both with
//! acks). Records land in the file sink. Python's and Go's clients also send over a
//! Unix socket (`unix_path`), as the ECS agent's FireLens log router receives them,
//! into the file sink and, through the `cloudwatch_logs` sink, into moto.

mod support;

use std::path::Path;
use std::time::Duration;

use nagare_testkit::clients::Go;
use nagare_testkit::moto::{Moto, REGION};
use nagare_testkit::{Node, Python, free_port, wait_until};
use support::{Nagare, plain, read_ndjson};

fn aggregator(dir: &Path, port: u16) -> Nagare {
    aggregator_with(dir, port, "")
}

/// An aggregator whose forward source has `extra` keys (indented for it).
fn aggregator_with(dir: &Path, port: u16, extra: &str) -> Nagare {
    let config = format!(
        "data_dir: {data}\n\
         sources:\n  clients:\n    type: forward\n    bind: 127.0.0.1:{port}\n{extra}\
         sinks:\n  out:\n    type: file\n    match: \"**\"\n    path: {out}\n",
        data = dir.join("data").display(),
        out = dir.join("out.ndjson").display(),
    );
    Nagare::listening("aggregator", dir, &config, port)
}

/// An aggregator whose forward source listens on the Unix socket `dir/fluent.sock`,
/// with a file sink of everything into `dir/out.ndjson`, once the socket accepts
/// connections; the socket's path.
fn aggregator_on_socket(dir: &Path) -> (Nagare, std::path::PathBuf) {
    let sinks = format!(
        "  out:\n    type: file\n    match: \"**\"\n    path: {}\n",
        dir.join("out.ndjson").display()
    );
    aggregator_on_socket_with(dir, &sinks, &[])
}

/// Like `aggregator_on_socket`, with `sinks` (YAML entries indented by two spaces)
/// and `env` added to its environment.
fn aggregator_on_socket_with(
    dir: &Path,
    sinks: &str,
    env: &[(&str, &str)],
) -> (Nagare, std::path::PathBuf) {
    let socket = dir.join("fluent.sock");
    let config = format!(
        "data_dir: {data}\n\
         sources:\n  firelens:\n    type: forward\n    unix_path: {socket}\n\
         sinks:\n{sinks}",
        data = dir.join("data").display(),
        socket = socket.display(),
    );
    let mut agg = Nagare::start_with_env("aggregator", dir, &config, env);
    let listening = wait_until(Duration::from_secs(20), || {
        agg.assert_running();
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    assert!(
        listening,
        "nothing listens on {}\n{}",
        socket.display(),
        agg.child.logs()
    );
    (agg, socket)
}

/// Waits until the aggregator wrote `n` records to `dir/out.ndjson`, stops it, and
/// returns them, checked to be `n`; `context` goes with a failure.
fn records(agg: &mut Nagare, dir: &Path, n: usize, context: &str) -> Vec<serde_json::Value> {
    let out = dir.join("out.ndjson");
    assert!(
        wait_until(Duration::from_secs(20), || read_ndjson(&out).len() >= n),
        "{context}\n{}",
        agg.child.logs()
    );
    assert!(agg.terminate(Duration::from_secs(20)).success());
    let lines = read_ndjson(&out);
    assert_eq!(lines.len(), n, "{context}");
    lines
}

#[test]
fn python_fluent_logger_message_mode_with_nanoseconds() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut agg = aggregator(dir.path(), port);
    let script = r#"
import sys
from fluent import sender, event
s = sender.FluentSender('py.app', host='127.0.0.1', port=int(sys.argv[1]), nanosecond_precision=True)
for i in range(100):
    if not s.emit_with_time('access', 1714564800.123456789 + i, {'n': i, 'path': '/cart', 'ok': True}):
        print('emit failed', s.last_error, file=sys.stderr)
        sys.exit(1)
s.close()
"#;
    Python::fluent_logger()
        .spawn_script(script, &[&port.to_string()])
        .expect_success(Duration::from_secs(30));
    let lines = records(&mut agg, dir.path(), 100, "");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["tag"], "py.app.access");
        assert_eq!(l["record"]["n"], i);
        assert_eq!(l["record"]["path"], "/cart");
        assert_eq!(l["record"]["ok"], true);
        // EventTime keeps sub-second precision (Python floats carry ~microseconds).
        let t = l["time"].as_str().unwrap();
        assert!(
            t.starts_with(&format!("2024-05-01T12:{:02}:{:02}.123", i / 60, i % 60)),
            "{t}"
        );
    }
}

#[test]
fn python_fluent_logger_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agg, socket) = aggregator_on_socket(dir.path());
    let script = r#"
import sys
from fluent import sender
s = sender.FluentSender('firelens.app', host='unix://' + sys.argv[1], nanosecond_precision=True)
for i in range(500):
    if not s.emit_with_time('stdout', 1714564800 + i, {'n': i, 'log': 'line %d' % i}):
        print('emit failed', s.last_error, file=sys.stderr)
        sys.exit(1)
s.close()
"#;
    Python::fluent_logger()
        .spawn_script(script, &[socket.to_str().unwrap()])
        .expect_success(Duration::from_secs(30));
    let lines = records(&mut agg, dir.path(), 500, "");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["tag"], "firelens.app.stdout");
        assert_eq!(l["record"]["n"], i);
        assert_eq!(l["record"]["log"], format!("line {i}"));
    }
    assert!(!socket.exists(), "the socket file is removed at stop");
    let logs = plain(&agg.child.stderr());
    assert!(
        logs.contains(&format!("unix://{}", socket.display())),
        "the log says where it listens:\n{logs}"
    );
}

#[test]
fn python_fluent_logger_over_a_unix_socket_to_cloudwatch_logs() {
    let moto = Moto::shared();
    let key = moto.credentials();
    let group = Moto::unique("/firelens");
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "  cloudwatch:\n    type: cloudwatch_logs\n    match: \"**\"\n    log_group_name: \"{group}\"\n    log_stream_name: \"{{tag}}\"\n    endpoint: \"{url}\"\n    batch: {{ timeout: 200ms }}\n    aws:\n      region: {REGION}\n",
        url = moto.url()
    );
    let env = [
        ("AWS_ACCESS_KEY_ID", key.id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", key.secret.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let (mut agg, socket) = aggregator_on_socket_with(dir.path(), &sinks, &env);
    // As Docker's fluentd log driver sends a FireLens container's lines: its
    // `<container>-firelens-<task id>` tag, `log` and `source` fields; times of now.
    let script = r#"
import sys, time
from fluent import sender
s = sender.FluentSender('app-firelens-4f1c2b', host='unix://' + sys.argv[1], nanosecond_precision=True)
now = time.time()
for i in range(300):
    if not s.emit_with_time(None, now + i / 1000, {'log': '{"n": %d}' % i, 'source': 'stdout', 'container_name': '/ecs-shop-app'}):
        print('emit failed', s.last_error, file=sys.stderr)
        sys.exit(1)
s.close()
"#;
    Python::fluent_logger()
        .spawn_script(script, &[socket.to_str().unwrap()])
        .expect_success(Duration::from_secs(30));
    let mut events = Vec::new();
    let arrived = wait_until(Duration::from_secs(30), || {
        agg.assert_running();
        events = if moto.streams(&group).is_empty() {
            Vec::new()
        } else {
            moto.events(&group, "app-firelens-4f1c2b")
        };
        events.len() >= 300
    });
    assert!(
        arrived,
        "{} of 300 events\n{}",
        events.len(),
        agg.child.logs()
    );
    assert!(agg.terminate(Duration::from_secs(20)).success());
    assert_eq!(events.len(), 300);
    for (i, e) in events.iter().enumerate() {
        let record: serde_json::Value = serde_json::from_str(&e.message).unwrap();
        assert_eq!(record["log"], format!("{{\"n\": {i}}}"));
        assert_eq!(record["source"], "stdout");
    }
}

fn node_sends(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut agg = aggregator(dir.path(), port);
    let script = r#"
const port = Number(process.argv[1]);
const mode = process.argv[2];
const logger = require('fluent-logger').createFluentSender('node', {
  host: '127.0.0.1', port, timeout: 3.0, reconnectInterval: 600000,
  eventMode: mode, requireAckResponse: true, ackResponseTimeout: 10000,
  flushInterval: 50,
});
let acked = 0;
logger.on('error', (e) => { console.error('error', e); process.exit(1); });
const timer = setTimeout(() => { console.error('only', acked, 'acks'); process.exit(1); }, 20000);
for (let i = 0; i < 100; i++) {
  // The callback runs when the server's ack for the event's chunk arrives.
  logger.emit('api', { n: i, mode }, (err) => {
    if (err) { console.error('emit', err); process.exit(1); }
    acked++;
    if (acked === 100) {
      clearTimeout(timer);
      logger.end(null, null, () => console.log('acked', acked));
    }
  });
}
"#;
    let mut node = Node::fluent_logger().spawn_script(script, &[&port.to_string(), mode]);
    node.expect_success(Duration::from_secs(30));
    let lines = records(&mut agg, dir.path(), 100, &node.logs());
    let mut ns: Vec<u64> = lines
        .iter()
        .map(|l| l["record"]["n"].as_u64().unwrap())
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..100).collect::<Vec<u64>>());
    assert!(
        lines
            .iter()
            .all(|l| l["tag"] == "node.api" && l["record"]["mode"] == mode)
    );
    assert!(
        node.stdout().contains("acked 100"),
        "every emit was acked: {}",
        node.logs()
    );
}

#[test]
fn node_fluent_logger_packed_forward_with_acks() {
    node_sends("PackedForward");
}

#[test]
fn node_fluent_logger_compressed_packed_forward_with_acks() {
    node_sends("CompressedPackedForward");
}

#[test]
fn node_fluent_logger_message_mode_with_acks() {
    node_sends("Message");
}

const SECURED: &str =
    "    security:\n      self_hostname: aggregator-0\n      shared_key: node-shared-key\n";

/// Node's fluent-logger with `security` (the HELO / PING / PONG handshake): `key` is
/// the shared key it uses. Prints `acked N` when every emit was acknowledged, or
/// `handshake error: ...` when the handshake was refused.
fn node_with_shared_key(port: u16, key: &str) -> nagare_testkit::Child {
    let script = r#"
const [port, key] = [Number(process.argv[1]), process.argv[2]];
const logger = require('fluent-logger').createFluentSender('secure', {
  host: '127.0.0.1', port, timeout: 3.0, reconnectInterval: 600000,
  eventMode: 'PackedForward', requireAckResponse: true, ackResponseTimeout: 10000,
  flushInterval: 50,
  security: { clientHostname: 'node-client', sharedKey: key },
});
let acked = 0;
logger.on('error', (e) => {
  console.log('handshake error:', e.message);
  process.exit(0);
});
setTimeout(() => { console.error('only', acked, 'acks'); process.exit(1); }, 20000);
for (let i = 0; i < 50; i++) {
  logger.emit('api', { n: i }, (err) => {
    if (err) { console.log('handshake error:', err.message); process.exit(0); }
    if (++acked === 50) logger.end(null, null, () => { console.log('acked', acked); process.exit(0); });
  });
}
"#;
    Node::fluent_logger().spawn_script(script, &[&port.to_string(), key])
}

#[test]
fn node_fluent_logger_shared_key_handshake_admits_the_right_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut agg = aggregator_with(dir.path(), port, SECURED);

    let mut wrong = node_with_shared_key(port, "not-the-key");
    wrong.expect_success(Duration::from_secs(30));
    assert!(
        wrong
            .stdout()
            .contains("handshake error: Authentication failed: shared_key mismatch"),
        "{}",
        wrong.logs()
    );
    assert!(
        wait_until(Duration::from_secs(10), || agg
            .child
            .stderr()
            .contains("shared_key mismatch")),
        "{}",
        agg.child.logs()
    );
    let refusal = plain(&agg.child.stderr())
        .lines()
        .find(|l| l.contains("authentication failed"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        refusal.contains("WARN") && refusal.contains("hostname=node-client"),
        "{refusal}"
    );
    assert!(
        !agg.child.stderr().contains("not-the-key"),
        "keys are never logged"
    );

    let mut right = node_with_shared_key(port, "node-shared-key");
    right.expect_success(Duration::from_secs(30));
    assert!(right.stdout().contains("acked 50"), "{}", right.logs());
    let lines = records(&mut agg, dir.path(), 50, "only the right key delivered");
    assert!(lines.iter().all(|l| l["tag"] == "secure.api"));
}

const GO_CLIENT: &str = r#"package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"
)

func main() {
	// A port, or the path of a Unix socket (as Docker's fluentd log driver, which is
	// built on this library, connects to FireLens's).
	port, _ := strconv.Atoi(os.Args[1])
	network, socket := "tcp", ""
	if port == 0 {
		network, socket = "unix", os.Args[1]
	}
	mode := os.Args[2]
	logger, err := fluent.New(fluent.Config{
		FluentHost:         "127.0.0.1",
		FluentPort:         port,
		FluentNetwork:      network,
		FluentSocketPath:   socket,
		RequestAck:         true,
		SubSecondPrecision: mode == "msgpack",
		MarshalAsJSON:      mode == "json",
		Timeout:            5 * time.Second,
		WriteTimeout:       5 * time.Second,
		MaxRetry:           3,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "new:", err)
		os.Exit(1)
	}
	base := time.Unix(1714564800, 123456789)
	for i := 0; i < 100; i++ {
		record := map[string]interface{}{"n": i, "mode": mode}
		// Synchronous with RequestAck: returns once the server's ack matched.
		if err := logger.PostWithTime("go.app", base.Add(time.Duration(i)*time.Second), record); err != nil {
			fmt.Fprintln(os.Stderr, "post:", err)
			os.Exit(1)
		}
	}
	logger.Close()
	fmt.Println("acked 100")
}
"#;

fn go_sends(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut agg = aggregator(dir.path(), port);
    go_delivers(&mut agg, dir.path(), &port.to_string(), mode);
}

/// Go's client sends 100 records to `to` (a port or a socket path) with acks; checks
/// that they arrived.
fn go_delivers(agg: &mut Nagare, dir: &Path, to: &str, mode: &str) {
    let program = Go::fluent_logger().build("fluent-client", GO_CLIENT);
    let mut go = program.spawn(&[to, mode]);
    go.expect_success(Duration::from_secs(60));
    assert!(go.stdout().contains("acked 100"), "{}", go.logs());
    let lines = records(agg, dir, 100, "");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["tag"], "go.app");
        assert_eq!(l["record"]["n"], i);
        assert_eq!(l["record"]["mode"], mode);
        let t = l["time"].as_str().unwrap();
        let want = format!("2024-05-01T12:{:02}:{:02}", i / 60, i % 60);
        assert!(t.starts_with(&want), "{t}");
        if mode == "msgpack" {
            // EventTime keeps the nanoseconds.
            assert!(t.starts_with(&format!("{want}.123456789")), "{t}");
        }
    }
}

#[test]
fn go_fluent_logger_message_mode_with_event_time_and_acks() {
    go_sends("msgpack");
}

#[test]
fn go_fluent_logger_json_form_with_acks() {
    go_sends("json");
}

#[test]
fn go_fluent_logger_over_a_unix_socket_with_acks() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agg, socket) = aggregator_on_socket(dir.path());
    go_delivers(&mut agg, dir.path(), socket.to_str().unwrap(), "msgpack");
}

#[test]
fn node_fluent_logger_over_tls_to_a_key_encrypted_with_a_passphrase() {
    let pki = support::openssl::encrypted_pki();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let tls = |passphrase: &str| {
        format!(
            "    tls:\n      cert_path: {d}/aggregator.crt\n      private_key_path: {d}/aggregator.key\n      private_key_passphrase: {passphrase}\n{SECURED}",
            d = pki.path().display()
        )
    };

    // A wrong passphrase stops the start, naming the file and the setting.
    let mut wrong = Nagare::start(
        "aggregator-wrong",
        dir.path(),
        &format!(
            "data_dir: {data}\nsources:\n  clients:\n    type: forward\n    bind: 127.0.0.1:{port}\n{tls}sinks:\n  out:\n    type: stdout\n    match: \"**\"\n",
            data = dir.path().join("data-wrong").display(),
            tls = tls("not-it"),
        ),
    );
    let status = wrong
        .child
        .wait_timeout(Duration::from_secs(20))
        .expect("a wrong passphrase fails the start");
    assert!(!status.success());
    let err = plain(&wrong.child.stderr());
    assert!(
        err.contains("aggregator.key")
            && err.contains("tls.private_key_passphrase does not decrypt the key"),
        "{err}"
    );
    assert!(!err.contains("not-it"), "the passphrase is never printed");

    let mut agg = aggregator_with(dir.path(), port, &tls("aggregator-pass"));
    // Without acks: fluent-logger 3.4 listens for an ack only once its write's
    // callback has run, which over TLS can be after the ack arrived (seen here as
    // "ack response timeout" right after a successful handshake). The records
    // arriving in the file sink are the proof of delivery instead.
    let script = r#"
const fs = require('fs');
const [port, ca] = [Number(process.argv[1]), process.argv[2]];
const logger = require('fluent-logger').createFluentSender('tls', {
  host: 'localhost', port, timeout: 3.0, reconnectInterval: 600000,
  eventMode: 'PackedForward', flushInterval: 50,
  tls: true, tlsOptions: { ca: fs.readFileSync(ca), servername: 'localhost' },
  security: { clientHostname: 'node-client', sharedKey: 'node-shared-key' },
});
let sent = 0;
logger.on('error', (e) => { console.error('error', e); process.exit(1); });
setTimeout(() => { console.error('only', sent, 'sent'); process.exit(1); }, 20000);
for (let i = 0; i < 20; i++) {
  logger.emit('api', { n: i }, (err) => {
    if (err) { console.error('emit', err); process.exit(1); }
    if (++sent === 20) logger.end(null, null, () => { console.log('sent', sent); process.exit(0); });
  });
}
"#;
    let ca = pki.path().join("ca.crt");
    let mut node =
        Node::fluent_logger().spawn_script(script, &[&port.to_string(), ca.to_str().unwrap()]);
    node.expect_success(Duration::from_secs(30));
    assert!(node.stdout().contains("sent 20"), "{}", node.logs());
    let lines = records(&mut agg, dir.path(), 20, "");
    assert!(lines.iter().all(|l| l["tag"] == "tls.api"));
    assert!(!agg.child.stderr().contains("aggregator-pass"));
}
