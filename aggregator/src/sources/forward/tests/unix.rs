//! `unix_path`: the server on a Unix socket (frames, acks and the handshake as on
//! TCP), the socket file's permissions, its removal at stop, a stale file replaced,
//! and what the config refuses there.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;

use nagare_core::config::ConfigError;
use tokio::net::UnixStream;

use super::*;

struct UnixServer {
    path: PathBuf,
    buffer: Buffer,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), ForwardSourceError>>,
}

fn parse(yaml: &str) -> Result<ForwardSourceConfig, ConfigError> {
    ConfigDocument::from_text("nagare.yaml", yaml, |_| None)
        .unwrap()
        .parse::<ForwardSourceConfig>()
}

fn on_socket(path: &Path) -> ForwardSourceConfig {
    parse(&format!("unix_path: {}\n", path.display())).unwrap()
}

async fn start_unix(config: ForwardSourceConfig) -> UnixServer {
    let path = config.unix_path.clone().unwrap();
    let buffer = Buffer::new("out", &BufferConfig::default());
    let mut routes = RouterBuilder::new();
    routes.sink("out", TagPattern::new("**").unwrap(), buffer.clone());
    let (ctx, shutdown) = source_context("from_router", routes.build(), Path::new(""));
    let server = ForwardServer::bind(&config).await.unwrap();
    assert_eq!(server.endpoint(), Endpoint::Unix(path.clone()));
    assert_eq!(
        server.endpoint().to_string(),
        format!("unix://{}", path.display())
    );
    let task = tokio::spawn(server.run(ctx));
    UnixServer {
        path,
        buffer,
        shutdown,
        task,
    }
}

impl UnixServer {
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

async fn bind_error(config: &ForwardSourceConfig) -> String {
    ForwardServer::bind(config).await.unwrap_err().to_string()
}

#[test]
fn unix_path_and_unix_perm_are_read_from_the_config() {
    let c = parse("unix_path: /var/run/fluent.sock\nunix_perm: \"0660\"\n").unwrap();
    assert_eq!(c.unix_path, Some(PathBuf::from("/var/run/fluent.sock")));
    assert_eq!(c.unix_perm, FileMode(0o660));
    c.validate().unwrap();
    // As chmod reads them, however YAML would type the plain scalar.
    for (text, mode) in [("0644", 0o644), ("600", 0o600), ("0o666", 0o666)] {
        let c = parse(&format!("unix_path: /s\nunix_perm: {text}\n")).unwrap();
        assert_eq!(c.unix_perm, FileMode(mode), "{text}");
    }
    assert_eq!(parse("{}\n").unwrap().unix_perm, FileMode(0o644));
    assert_eq!(FileMode(0o640).to_string(), "0640");
    for bad in ["0689", "rw-r--r--", "\"\"", "+644", "17777"] {
        let err = parse(&format!("unix_perm: {bad}\n")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("unix_perm"), "{bad}: {err}");
        assert!(err.message.contains("octal permission bits"), "{err}");
    }
}

#[test]
fn what_needs_a_network_address_is_refused_on_a_unix_socket() {
    let refused = |yaml: &str| {
        let e = parse(&format!("unix_path: /var/run/fluent.sock\n{yaml}"))
            .unwrap()
            .validate()
            .unwrap_err();
        (e.key, e.message)
    };
    let (key, why) = refused("tls:\n  cert_path: /c.pem\n  private_key_path: /k.pem\n");
    assert_eq!(key, "tls");
    assert!(why.contains("not served on a Unix socket"), "{why}");
    let (key, why) = refused("security:\n  shared_key: k\n  clients:\n    - network: 10.0.0.0/8\n");
    assert_eq!(key, "security.clients");
    assert!(why.contains("a Unix socket's clients have none"), "{why}");
    let (key, why) = refused(
        "security:\n  shared_key: k\n  allow_anonymous_source: false\n  clients:\n    - host: a\n",
    );
    assert_eq!(key, "security.clients", "{why}");
    let (key, _) = refused("security:\n  shared_key: k\n  allow_anonymous_source: false\n");
    assert_eq!(key, "security.allow_anonymous_source");

    // The shared-key handshake needs no address: it stays allowed.
    parse("unix_path: /s\nsecurity:\n  shared_key: k\n  user_auth: true\n  users: [{username: u, password: p}]\n")
        .unwrap()
        .validate()
        .unwrap();

    let long = format!("unix_path: /{}\n", "d".repeat(107));
    let e = parse(&long).unwrap().validate().unwrap_err();
    assert_eq!(e.key, "unix_path");
    assert!(e.message.contains("108 bytes long"), "{}", e.message);
}

#[tokio::test]
async fn frames_over_the_socket_are_routed_and_acked() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_unix(on_socket(&dir.path().join("fluent.sock"))).await;
    let meta = std::fs::symlink_metadata(&server.path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o644,
        "unix_perm's default"
    );

    let mut client = UnixStream::connect(&server.path).await.unwrap();
    let frame = packed("ecs.app", &entries(0, 3), 3, "u1", Compression::None);
    send_acked(&mut client, &frame, "u1").await;
    let gz = gzip(&entries(3, 5));
    send_acked(
        &mut client,
        &packed("ecs.app", &gz, 2, "u2", Compression::Gzip),
        "u2",
    )
    .await;
    // The JSON form too, on a second connection.
    let mut json = UnixStream::connect(&server.path).await.unwrap();
    json.write_all(br#"["ecs.json", 1700000000, {"n": 5}, {"chunk": "j"}]"#)
        .await
        .unwrap();
    let ack = read_whole(&mut json, "ack", |b| {
        let text = std::str::from_utf8(b).ok()?;
        text.ends_with('}').then(|| (text.to_string(), b.len()))
    })
    .await;
    assert_eq!(ack, r#"{"ack":"j"}"#);

    let first = take(&server.buffer).await;
    assert_eq!(
        (first.tag().as_str(), numbers(&first)),
        ("ecs.app", vec![0, 1, 2])
    );
    assert_eq!(numbers(&take(&server.buffer).await), vec![3, 4]);
    assert_eq!(numbers(&take(&server.buffer).await), vec![5]);

    drop((client, json));
    let path = server.path.clone();
    server.stop().await;
    assert!(!path.exists(), "the socket file is removed at stop");
}

#[tokio::test]
async fn the_handshake_works_on_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = secured(true);
    config.unix_path = Some(dir.path().join("secured.sock"));
    config.unix_perm = FileMode(0o600);
    let server = start_unix(config).await;
    let mode = std::fs::metadata(&server.path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o600);

    let mut good = UnixStream::connect(&server.path).await.unwrap();
    let (_, pong) = handshake(&mut good, "s3cret", Some(("node", "pw")), b"salt").await;
    assert!(pong.auth_ok, "{pong:?}");
    send_acked(
        &mut good,
        &packed("t", &entries(0, 2), 2, "a", Compression::None),
        "a",
    )
    .await;
    assert_eq!(take(&server.buffer).await.count(), 2);

    let mut bad = UnixStream::connect(&server.path).await.unwrap();
    let (_, pong) = handshake(&mut bad, "wrong", Some(("node", "pw")), b"salt").await;
    assert!(!pong.auth_ok);
    assert_eq!(pong.reason, "shared_key mismatch");
    assert!(closed_by_server(&mut bad).await);
    server.stop().await;
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced_and_other_files_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fluent.sock");

    // A socket file whose server is gone, as a killed process leaves it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(
        std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_socket()
    );
    let server = start_unix(on_socket(&path)).await;
    let mut client = UnixStream::connect(&path).await.unwrap();
    send_acked(
        &mut client,
        &packed("t", &entries(0, 1), 1, "s", Compression::None),
        "s",
    )
    .await;

    // While it listens, a second server on the same path refuses to start and leaves
    // the first one's socket in place.
    let err = bind_error(&on_socket(&path)).await;
    assert!(err.contains("another process"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    let mut again = UnixStream::connect(&path).await.unwrap();
    send_acked(
        &mut again,
        &packed("t", &entries(1, 2), 1, "s2", Compression::None),
        "s2",
    )
    .await;
    server.stop().await;

    // A regular file is never removed.
    let file = dir.path().join("app.log");
    std::fs::write(&file, "keep me").unwrap();
    let err = bind_error(&on_socket(&file)).await;
    assert!(
        err.contains("is not a socket") && err.contains(&file.display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");

    let err = bind_error(&on_socket(&dir.path().join("missing/dir/x.sock"))).await;
    assert!(err.contains("its directory does not exist"), "{err}");
}

#[tokio::test]
async fn a_socket_replaced_while_stopping_is_not_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fluent.sock");
    let server = start_unix(on_socket(&path)).await;
    // Another server took the path over (as a new process started while this one
    // stops would, after removing what it took for a stale file).
    std::fs::remove_file(&path).unwrap();
    let newer = std::os::unix::net::UnixListener::bind(&path).unwrap();
    server.stop().await;
    assert!(path.exists(), "the newer server's socket stays");
    drop(newer);
}
