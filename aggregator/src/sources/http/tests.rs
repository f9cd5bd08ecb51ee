//! The HTTP input on 127.0.0.1 port 0, driven by a real HTTP client (reqwest), with
//! a real router, filter and buffers behind it.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nagare_core::buffer::{Buffer, BufferConfig, OverflowAction};
use nagare_core::config::{ByteSize, ConfigDocument, Secret};
use nagare_core::filters::record_modifier::{RecordModifier, RecordModifierConfig};
use nagare_core::pattern::TagPattern;
use nagare_core::router::RouterBuilder;
use nagare_core::shutdown::Shutdown;
use nagare_core::testing::{self, numbers, source_context};
use nagare_core::{Chunk, EventTime, Value};
use nagare_testkit::docs::documented_example;
use reqwest::StatusCode;
use tokio::task::JoinHandle;

use super::*;

const WAIT: Duration = Duration::from_secs(5);

struct Server {
    url: String,
    app: Buffer,
    all: Buffer,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), HttpSourceError>>,
}

async fn start(config: HttpSourceConfig, app_buffer: BufferConfig) -> Server {
    let app = Buffer::new("app", &app_buffer);
    let all = Buffer::new("all", &BufferConfig::default());
    let mut routes = RouterBuilder::new();
    let modifier: RecordModifierConfig =
        ConfigDocument::from_text("t.yaml", "records:\n  via: http\n", |_| None)
            .unwrap()
            .parse()
            .unwrap();
    routes.filter(
        "mark",
        TagPattern::new("app.**").unwrap(),
        Arc::new(RecordModifier::new(&modifier)),
    );
    routes.sink("app", TagPattern::new("app.**").unwrap(), app.clone());
    routes.sink("all", TagPattern::new("**").unwrap(), all.clone());
    let (ctx, shutdown) = source_context("from_apps", routes.build(), Path::new(""));
    let server = HttpServer::bind(&HttpSourceConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..config
    })
    .await
    .unwrap();
    let url = format!("http://{}", server.local_addr());
    Server {
        url,
        app,
        all,
        shutdown,
        task: tokio::spawn(server.run(ctx)),
    }
}

impl Server {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the server did not stop")
            .unwrap()
            .unwrap();
    }
}

async fn take(buffer: &Buffer) -> Chunk {
    testing::take(buffer, WAIT).await
}

#[tokio::test]
async fn every_body_form_is_routed_through_filters_to_every_matching_sink() {
    let server = start(HttpSourceConfig::default(), BufferConfig::default()).await;
    let http = reqwest::Client::new();
    let post = |path: &str| http.post(format!("{}{path}", server.url));

    let r = post("/app/web?time=1700000000.5")
        .header("content-type", "application/json")
        .body(r#"[{"n":1},{"n":2,"time":1700000009}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let chunk = take(&server.app).await;
    assert_eq!(
        (chunk.tag().as_str(), numbers(&chunk)),
        ("app.web", vec![1, 2])
    );
    let events: Vec<_> = chunk.events().map(Result::unwrap).collect();
    assert_eq!(events[0].0, EventTime::new(1_700_000_000, 500_000_000));
    assert_eq!(events[1].0, EventTime::new(1_700_000_009, 0));
    assert_eq!(
        events[0].1.get("via").and_then(Value::as_str),
        Some("http"),
        "the filter ran"
    );
    assert_eq!(
        numbers(&take(&server.all).await),
        vec![1, 2],
        "and every matching sink got it"
    );

    let r = post("/app.ndjson")
        .header("content-type", "application/x-ndjson")
        .body("{\"n\":3}\n{\"n\":4}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(numbers(&take(&server.app).await), vec![3, 4]);
    assert_eq!(numbers(&take(&server.all).await), vec![3, 4]);

    let mut mp = Vec::new();
    let mut m = nagare_core::Map::new();
    m.insert("n", 5);
    nagare_core::msgpack::write_map(&mut mp, &m);
    let r = post("/other.mp")
        .header("content-type", "application/msgpack")
        .body(mp)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let chunk = take(&server.all).await;
    assert_eq!(
        (chunk.tag().as_str(), numbers(&chunk)),
        ("other.mp", vec![5])
    );
    let (_, record) = chunk.events().next().unwrap().unwrap();
    assert_eq!(
        record.get("via"),
        None,
        "app.** filter does not apply to other.mp"
    );

    // Fluentd's classic form: curl -d 'json={...}' http://host:9880/app.form
    let r = post("/app.form")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("json=%7B%22n%22%3A6%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(numbers(&take(&server.app).await), vec![6]);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(br#"{"n":7}"#).unwrap();
    let r = post("/app.gz")
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(numbers(&take(&server.app).await), vec![7]);
    server.stop().await;
}

#[tokio::test]
async fn the_answer_waits_until_the_records_are_in_the_buffer() {
    // The app sink's buffer holds one chunk; nothing drains it until we do.
    let tight = BufferConfig {
        total_limit_size: ByteSize(1),
        overflow_action: OverflowAction::Block,
        ..BufferConfig::default()
    };
    let server = start(HttpSourceConfig::default(), tight).await;
    let http = reqwest::Client::new();
    let send = |n: i64| {
        http.post(format!("{}/app.slow", server.url))
            .header("content-type", "application/json")
            .body(format!(r#"{{"n":{n}}}"#))
            .send()
    };
    assert_eq!(send(1).await.unwrap().status(), StatusCode::OK);
    let second = tokio::spawn(send(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "answered before the buffer took the records"
    );
    assert_eq!(numbers(&take(&server.app).await), vec![1]);
    let answer = tokio::time::timeout(WAIT, second)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(numbers(&take(&server.app).await), vec![2]);
    server.stop().await;
}

#[tokio::test]
async fn bearer_token_body_limit_and_bad_requests() {
    let config = HttpSourceConfig {
        bearer_token: Some(Secret::new("t0ken")),
        body_size_limit: ByteSize(1024),
        use_204_response: true,
        add_remote_addr: true,
        ..HttpSourceConfig::default()
    };
    let server = start(config, BufferConfig::default()).await;
    let http = reqwest::Client::new();
    let post = || {
        http.post(format!("{}/app.auth", server.url))
            .header("content-type", "application/json")
    };

    let r = post().body(r#"{"n":1}"#).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = post()
        .bearer_auth("wrong")
        .body(r#"{"n":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = post()
        .bearer_auth("t0ken")
        .body(r#"{"n":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let chunk = take(&server.app).await;
    let (_, record) = chunk.events().next().unwrap().unwrap();
    assert_eq!(
        record.get("REMOTE_ADDR").and_then(Value::as_str),
        Some("127.0.0.1")
    );

    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2000));
    let r = post().bearer_auth("t0ken").body(big).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.text().await.unwrap().contains("body_size_limit (1KiB)"));

    let r = post()
        .bearer_auth("t0ken")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("not JSON"));
    let r = http
        .get(format!("{}/app.auth", server.url))
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = http
        .post(format!("{}/", server.url))
        .bearer_auth("t0ken")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("no tag"));
    assert!(
        tokio::time::timeout(Duration::from_millis(100), server.app.pop())
            .await
            .is_err(),
        "refused requests produced nothing"
    );
    server.stop().await;
}

#[tokio::test]
async fn compressed_bodies_are_unpacked_within_the_body_limit() {
    let config = HttpSourceConfig {
        body_size_limit: ByteSize(1024),
        ..HttpSourceConfig::default()
    };
    let server = start(config, BufferConfig::default()).await;
    let http = reqwest::Client::new();
    let post = |encoding: &str, body: Vec<u8>| {
        http.post(format!("{}/app.packed", server.url))
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(body)
            .send()
    };

    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    zlib.write_all(br#"{"n":8}"#).unwrap();
    let r = post("deflate", zlib.finish().unwrap()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(numbers(&take(&server.app).await), vec![8]);

    let r = post("x-gzip", b"not gzip at all".to_vec()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let text = r.text().await.unwrap();
    assert!(text.contains("the gzip body is broken: "), "{text}");

    // Small on the wire, more than body_size_limit once unpacked.
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(4000));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(big.as_bytes()).unwrap();
    let packed = gz.finish().unwrap();
    assert!(packed.len() < 1024, "{} bytes", packed.len());
    let r = post("gzip", packed).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let r = post("br", br#"{"n":9}"#.to_vec()).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    server.stop().await;
}

#[test]
fn documented_config_and_defaults() {
    let parse = |text: &str| {
        ConfigDocument::from_text("nagare.yaml", text, |_| Some("tok".into()))
            .unwrap()
            .parse::<HttpSourceConfig>()
    };
    // The example in config.rs, as written there.
    let c = parse(&documented_example(include_str!("config.rs"))).unwrap();
    c.validate().unwrap();
    assert_eq!(c.bearer_token.as_ref().map(Secret::expose), Some("tok"));
    let d = parse("{}\n").unwrap();
    assert_eq!(d.bind, "0.0.0.0:9880".parse().unwrap());
    assert_eq!(d.body_size_limit, ByteSize(32 << 20));
    assert_eq!(d.time_key, "time");
    assert!(d.bearer_token.is_none());
    let err = parse("bodysize: 1\n").unwrap_err();
    assert!(err.message.starts_with("unknown field `bodysize`"), "{err}");
    let bad = HttpSourceConfig {
        body_size_limit: ByteSize(0),
        ..HttpSourceConfig::default()
    };
    assert_eq!(bad.validate().unwrap_err().key, "body_size_limit");
}
