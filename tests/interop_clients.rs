//! Real third-party Forward Protocol clients against the real `nagare` aggregator:
//! Python's fluent-logger (Message mode, EventTime) and Node's fluent-logger
//! (PackedForward and CompressedPackedForward with acks). Records land in the file
//! sink.

mod support;

use std::time::Duration;

use nagare_testkit::{Node, Python, free_port, wait_until};
use support::{Nagare, read_ndjson};

fn aggregator(dir: &std::path::Path, port: u16) -> Nagare {
    let mut agg = Nagare::start(
        "aggregator",
        dir,
        &format!(
            "data_dir: {data}\n\
             sources:\n  clients:\n    type: forward\n    bind: 127.0.0.1:{port}\n\
             sinks:\n  out:\n    type: file\n    match: \"**\"\n    path: {out}\n",
            data = dir.join("data").display(),
            out = dir.join("out.ndjson").display(),
        ),
    );
    support::wait_listening(&mut agg, port);
    agg
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
    let out = dir.path().join("out.ndjson");
    assert!(
        wait_until(Duration::from_secs(20), || read_ndjson(&out).len() >= 100),
        "{}",
        agg.child.logs()
    );
    assert!(agg.terminate(Duration::from_secs(20)).success());
    let lines = read_ndjson(&out);
    assert_eq!(lines.len(), 100);
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
    let out = dir.path().join("out.ndjson");
    assert!(
        wait_until(Duration::from_secs(20), || read_ndjson(&out).len() >= 100),
        "{}\n{}",
        node.logs(),
        agg.child.logs()
    );
    assert!(agg.terminate(Duration::from_secs(20)).success());
    let lines = read_ndjson(&out);
    assert_eq!(lines.len(), 100, "{}", node.logs());
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
