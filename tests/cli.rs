//! The command line as a user meets it: `--version`, `validate` (route graph and
//! config errors with file, line and key), `run` refusing bad configs, and `demo`.

mod support;

use std::process::Command;

use support::binary;

fn nagare(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .env_remove("NAGARE_CONFIG")
        .env_remove("NAGARE_CONFIG_YAML")
        .output()
        .expect("run nagare");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn version_and_help() {
    let (code, out, _) = nagare(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("nagare {}", env!("CARGO_PKG_VERSION")));
    let (code, out, _) = nagare(&["--help"]);
    assert_eq!(code, 0);
    for word in ["run", "validate", "demo"] {
        assert!(out.contains(word), "help names `{word}`:\n{out}");
    }
}

const NODE: &str = "\
data_dir: /tmp/nagare-test
sources:
  containers:
    type: tail
    paths: [/var/log/containers/*.log]
  app:
    type: tail
    paths: [/var/log/app/*.log]
    tag: legacy.app
filters:
  cluster:
    type: record_modifier
    match: \"kube.**\"
    records: { cluster: prod }
sinks:
  aggregators:
    type: forward
    match: \"kube.**\"
    servers: [{ host: aggregator, port: 24224 }]
  debug:
    type: stdout
    match: \"nothing.**\"
";

#[test]
fn validate_prints_the_route_graph() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "node.yaml", NODE);
    let (code, out, err) = nagare(&["validate", "-c", &path]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("valid (2 sources, 1 filter, 2 sinks)"),
        "{out}"
    );
    assert!(
        out.contains("containers (tail: /var/log/containers/*.log)"),
        "{out}"
    );
    assert!(
        out.contains("tags like kube.var.log.containers.x.log"),
        "{out}"
    );
    assert!(out.contains("-> filters: cluster"), "{out}");
    assert!(out.contains("-> sinks:   aggregators"), "{out}");
    assert!(
        out.contains("tags like legacy.app\n    -> filters: (none)\n    -> sinks:   (none)"),
        "{out}"
    );
    assert!(
        out.contains("sink `debug` (match nothing.**) receives nothing"),
        "{out}"
    );
}

#[test]
fn config_errors_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // An unknown key inside a component.
        (
            NODE.replace(
                "    paths: [/var/log/app/*.log]",
                "    pathz: [/var/log/app/*.log]",
            ),
            "node.yaml:8: at `sources.app.pathz`: unknown field `pathz`",
        ),
        // A bad tag pattern.
        (
            NODE.replace(
                "match: \"kube.**\"\n    records",
                "match: \"kube.{a\"\n    records",
            ),
            "at `filters.cluster.match`: invalid tag pattern `kube.{a`",
        ),
        // A missing environment variable.
        (
            NODE.replace("cluster: prod", "cluster: ${NAGARE_TEST_UNSET_VAR}"),
            "node.yaml:14: at `records`: environment variable `NAGARE_TEST_UNSET_VAR` is not set",
        ),
        // An unknown component type.
        (
            NODE.replace("type: stdout", "type: stdot"),
            "node.yaml:21: at `sinks.debug.type`: unknown variant `stdot`",
        ),
        // A component's own check.
        (
            NODE.replace(
                "servers: [{ host: aggregator, port: 24224 }]",
                "servers: []",
            ),
            "at `sinks.aggregators.servers`",
        ),
    ];
    for (text, want) in cases {
        let path = write(&dir, "node.yaml", &text);
        for cmd in ["validate", "run"] {
            let (code, out, err) = nagare(&[cmd, "-c", &path]);
            assert_eq!(
                code, 2,
                "`nagare {cmd}` exits 2 on a bad config\n{out}{err}"
            );
            assert!(
                err.contains(want),
                "`nagare {cmd}` says {want:?}, got:\n{err}"
            );
            assert!(err.contains(&path), "names the file: {err}");
        }
    }
    let (code, _, err) = nagare(&["validate", "-c", "/nonexistent/nagare.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read the config file"), "{err}");
}

/// `nagare` with the config in `NAGARE_CONFIG_YAML`, as an ECS task definition gives
/// it to a container that has no config file.
fn nagare_with_config_text(args: &[&str], yaml: &str) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .env_remove("NAGARE_CONFIG")
        .env("NAGARE_CONFIG_YAML", yaml)
        .output()
        .expect("run nagare");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_config_can_be_given_as_text_in_an_environment_variable() {
    let (code, out, err) = nagare_with_config_text(&["validate"], NODE);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("NAGARE_CONFIG_YAML: valid (2 sources, 1 filter, 2 sinks)"),
        "{out}"
    );

    // Errors name the variable as the file, with the line and key.
    let bad = NODE.replace(
        "    paths: [/var/log/app/*.log]",
        "    pathz: [/var/log/app/*.log]",
    );
    for cmd in ["validate", "run"] {
        let (code, _, err) = nagare_with_config_text(&[cmd], &bad);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("NAGARE_CONFIG_YAML:8: at `sources.app.pathz`: unknown field `pathz`"),
            "{err}"
        );
    }

    // `run` starts from it.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("in.sock");
    let yaml = format!(
        "data_dir: {}\nsources:\n  app:\n    type: forward\n    unix_path: {}\nsinks:\n  out:\n    type: null\n    match: \"**\"\n",
        dir.path().join("data").display(),
        socket.display()
    );
    let mut cmd = Command::new(binary());
    cmd.arg("run")
        .env_remove("NAGARE_CONFIG")
        .env("NAGARE_CONFIG_YAML", &yaml);
    let mut run = nagare_testkit::Child::spawn("nagare", cmd);
    assert!(
        nagare_testkit::wait_until(std::time::Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        }),
        "{}",
        run.logs()
    );
    support::signal(run.pid(), nix::sys::signal::Signal::SIGTERM);
    let status = run.wait_timeout(std::time::Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{}", run.logs());

    // A file and a text at once is a mistake, said so.
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "node.yaml", NODE);
    let (code, _, err) = nagare_with_config_text(&["validate", "-c", &path], NODE);
    assert_eq!(code, 2);
    assert!(err.contains("cannot be used with"), "{err}");
    let (code, _, err) = nagare(&["validate"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--config <FILE>|--config-yaml <YAML>"),
        "{err}"
    );
}

#[test]
fn demo_delivers_every_line() {
    let (code, out, err) = nagare(&[
        "demo",
        "--lines",
        "200",
        "--timeout",
        "60",
        "--progress-interval",
        "50ms",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    // Progress on standard error, a line per report as it is not a terminal:
    // `nagare demo: generated G, delivered D (P%), R records/s, T s`.
    let reports: Vec<(usize, usize)> = err
        .lines()
        .filter_map(|l| l.strip_prefix("nagare demo: generated "))
        .map(|l| {
            let words: Vec<&str> = l.split([' ', ',']).filter(|w| !w.is_empty()).collect();
            assert_eq!(words[1], "delivered", "{l}");
            (words[0].parse().unwrap(), words[2].parse().unwrap())
        })
        .collect();
    assert!(!reports.is_empty(), "no progress reports:\n{err}");
    assert!(
        !err.contains('\r'),
        "no terminal rewrites in a pipe:\n{err}"
    );
    for window in reports.windows(2) {
        assert!(
            window[0].0 <= window[1].0 && window[0].1 <= window[1].1,
            "{reports:?}"
        );
    }
    assert!(
        reports.iter().all(|(g, d)| d <= g && *g >= 400),
        "{reports:?}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("delivered "))
        .unwrap_or_else(|| panic!("no summary:\n{out}"));
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!(words[1], words[3], "every record arrived: {line}");
    // 200 lines in each of 4 containers; the Python one's tracebacks add records.
    assert!(words[3].parse::<usize>().unwrap() >= 800, "{line}");
    for pod in [
        "shop/web-6d4cf56db6-x7k2p/nginx",
        "payments/billing-worker-0/worker",
    ] {
        assert!(out.contains(pod), "summary lists {pod}:\n{out}");
    }
    assert!(
        out.contains("\"kubernetes\""),
        "prints a stored record:\n{out}"
    );
}

/// A config whose `run` logs an error and exits at once: its forward source's port is
/// taken (by the listener the caller keeps open).
#[cfg(feature = "aggregator")]
#[test]
fn demo_delivers_to_cloudwatch_logs_and_reads_back_what_arrived() {
    use nagare_testkit::moto::{Moto, REGION};
    let moto = Moto::shared();
    let key = moto.credentials();
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(binary())
        .args([
            "demo",
            "--lines",
            "200",
            "--timeout",
            "90",
            "--cloudwatch",
            moto.url(),
        ])
        .env_remove("NAGARE_CONFIG")
        .env_remove("NAGARE_CONFIG_YAML")
        .env_remove("AWS_PROFILE")
        .env("HOME", home.path())
        .env("AWS_ACCESS_KEY_ID", &key.id)
        .env("AWS_SECRET_ACCESS_KEY", &key.secret)
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run nagare demo");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // Every record is in the file and in CloudWatch Logs, and the demo says where.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("delivered "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let expected: usize = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(
        stdout.contains(&format!(
            "in CloudWatch Logs: {expected} of {expected} events"
        )),
        "{stdout}"
    );
    // The groups it printed are in moto with those counts: one per namespace, a
    // stream per pod and container.
    let mut total = 0;
    let mut groups = std::collections::BTreeSet::new();
    for l in stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("/nagare-demo/"))
    {
        let parts: Vec<&str> = l.split_whitespace().collect();
        let (group, stream, n) = (parts[0], parts[1], parts[2].parse::<usize>().unwrap());
        assert_eq!(moto.events(group, stream).len(), n, "{l}");
        total += n;
        groups.insert(group.rsplit('/').next().unwrap().to_string());
    }
    assert_eq!(total, expected, "{stdout}");
    assert_eq!(
        groups.into_iter().collect::<Vec<_>>(),
        ["data", "payments", "shop"],
        "{stdout}"
    );
    assert!(
        stdout.contains("an event's message as CloudWatch Logs stored it"),
        "{stdout}"
    );
}

fn failing_run_config(dir: &tempfile::TempDir, taken: u16) -> String {
    write(
        dir,
        "taken.yaml",
        &format!(
            "data_dir: {}\nsources:\n  in:\n    type: forward\n    bind: 127.0.0.1:{taken}\nsinks:\n  out:\n    type: stdout\n    match: \"**\"\n",
            dir.path().display()
        ),
    )
}

#[test]
fn logs_are_coloured_only_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let path = failing_run_config(&dir, listener.local_addr().unwrap().port());
    const ESC: char = '\u{1b}';

    // Standard error to a pipe, as under journald, `kubectl logs` or a log shipper.
    let out = Command::new(binary())
        .args(["run", "-c", &path])
        .env_remove("NO_COLOR")
        .env_remove("NAGARE_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("nagare failed"), "{err}");
    assert!(!err.contains(ESC), "no colour codes into a pipe: {err:?}");

    // Standard error to a file.
    let log = dir.path().join("nagare.log");
    let status = Command::new(binary())
        .args(["run", "-c", &path])
        .env_remove("NO_COLOR")
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("nagare failed"), "{text}");
    assert!(!text.contains(ESC), "no colour codes into a file: {text:?}");

    // A terminal (a pseudo-terminal made by `script`) gets colour, unless NO_COLOR
    // says otherwise.
    let on_terminal = |no_color: Option<&str>| {
        let mut cmd = Command::new("script");
        cmd.args([
            "-qec",
            &format!("{} run -c {path}", binary().display()),
            "/dev/null",
        ])
        .env_remove("NAGARE_LOG")
        .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = cmd.output().expect("run `script` (util-linux)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains("nagare failed"), "{text}");
        text
    };
    assert!(on_terminal(None).contains(ESC), "a terminal gets colour");
    assert!(
        on_terminal(Some("")).contains(ESC),
        "an empty NO_COLOR is unset"
    );
    assert!(
        !on_terminal(Some("1")).contains(ESC),
        "NO_COLOR=1 turns colour off"
    );
    drop(listener);
}

/// The `null` sink as a user meets it: events posted to an http source are dropped,
/// and `nagare run` says how many when it stops.
#[cfg(feature = "aggregator")]
#[test]
fn the_null_sink_says_what_it_dropped_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let port = nagare_testkit::free_port();
    let config = format!(
        "data_dir: {}\nsources:\n  in:\n    type: http\n    bind: 127.0.0.1:{port}\nsinks:\n  discard:\n    type: \"null\"\n    match: \"**\"\n",
        dir.path().display()
    );
    let mut nagare = support::Nagare::start("null-sink", dir.path(), &config);
    support::wait_listening(&mut nagare, port);
    let events = serde_json::json!([{"n": 1}, {"n": 2}, {"n": 3}]);
    let base = format!("http://127.0.0.1:{port}");
    let answer = nagare_testkit::http::send_json(&base, "POST", "/app.test", Some(&events))
        .expect("the http source answers");
    assert!(answer.status < 300, "{}", answer.text());
    let status = nagare.terminate(std::time::Duration::from_secs(30));
    let logs = support::plain(&nagare.child.logs());
    assert!(status.success(), "{status}\n{logs}");
    let stopped: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("null sink stopped; dropped"))
        .collect();
    assert_eq!(stopped.len(), 1, "{logs}");
    assert!(stopped[0].contains("events=3"), "{logs}");
}

/// A stop with nothing to deliver ends at once, even while every destination is
/// down: the forward sink's only server taken for down (no heartbeat), the
/// Elasticsearch sink still asking its cluster at start. It does not wait out
/// `shutdown_timeout` (60 s here).
#[test]
fn a_stop_with_nothing_to_deliver_does_not_wait_for_dead_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let (port, dead) = (nagare_testkit::free_port(), nagare_testkit::free_port());
    let config = format!(
        "data_dir: {data}
shutdown_timeout: 60s
sources:
  in:
    type: forward
    bind: 127.0.0.1:{port}
sinks:
  to_aggregator:
    type: forward
    match: 'fwd.**'
    servers: [{{host: 127.0.0.1, port: {dead}}}]
    heartbeat_interval: 100ms
    hard_timeout: 300ms
  search:
    type: elasticsearch
    match: 'es.**'
    endpoints: ['http://127.0.0.1:{dead}']
",
        data = dir.path().join("data").display()
    );
    let mut nagare = support::Nagare::listening("dead-destinations", dir.path(), &config, port);
    let down = nagare_testkit::wait_until(std::time::Duration::from_secs(20), || {
        let logs = nagare.child.logs();
        logs.contains("marked the forward server down")
            && logs.contains("cannot reach Elasticsearch at start")
    });
    assert!(
        down,
        "the server taken for down, the cluster asked again\n{}",
        nagare.child.logs()
    );
    let status = nagare.terminate(std::time::Duration::from_secs(15));
    let logs = support::plain(&nagare.child.logs());
    assert!(status.success(), "{status}\n{logs}");
    assert!(!logs.contains("waiting for the sinks"), "{logs}");
}
