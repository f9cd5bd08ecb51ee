//! The `elasticsearch` sink against Amazon OpenSearch Service as the real binary sees
//! it: osmem-server behind a proxy that checks every SigV4 signature with botocore
//! (testkit's `SigV4Proxy`), independently of the signer under test.
//!
//! Signed requests pass with gzip on and off, for managed domains (`es`) and
//! Serverless (`aoss`: no `_id`, nothing but `_bulk`); a wrong secret is refused,
//! nothing is dead-lettered, the process stays up and says what to check, and after a
//! restart with the right secret every record arrives; temporary credentials from
//! moto's STS (web identity, as EKS IRSA, or a role assumed with an external id) are
//! signed with their session token, and so are a role session from EKS Pod Identity's
//! agent and from the instance metadata service (IMDSv2), both stand-ins handing out
//! sessions moto's STS issued; credentials near their expiry are replaced before
//! they are used; a refusal under IRSA names the role the key came
//! from; a clock off by more than 5 minutes is named in the log; Serverless stores
//! again what a crash sends again, and the resend is counted; an index template is
//! installed with signed requests, for `es` and `aoss`.
#![cfg(feature = "aggregator")]

mod aws_endpoints;
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use nagare_testkit::moto::{Moto, TEST_USER, web_identity_token};
use nagare_testkit::{Child, Osmem, Route, RouteSpec, Seen, SigV4Proxy, StallProxy, wait_until};
use serde_json::{Value, json};
use support::{run_without_aws_setup, signal};

/// Lines each aggregator delivers.
const LINES: usize = 60;
const KEY_ID: &str = "AKIDNAGAREOPENSEARCH";
const SECRET: &str = "opensearch-secret-7f3a";
const REGION: &str = "eu-west-1";

/// An aggregator tailing `dir/app.log` (LINES numbered JSON lines) into `index` at
/// `endpoint`, signing for `service`, with only `env` in its environment.
struct Sink<'a> {
    endpoint: &'a str,
    index: &'a str,
    service: &'a str,
    gzip: bool,
    /// Sink keys (indented by four spaces).
    extra: &'a str,
    /// `aws:` keys (indented by six spaces).
    aws_extra: &'a str,
    /// `buffer:` keys (indented by six spaces).
    buffer: &'a str,
}

impl<'a> Sink<'a> {
    /// Gzip on, no extra keys.
    fn new(endpoint: &'a str, index: &'a str, service: &'a str) -> Self {
        Sink {
            endpoint,
            index,
            service,
            gzip: true,
            extra: "",
            aws_extra: "",
            buffer: "",
        }
    }
}

fn start(dir: &Path, sink: &Sink<'_>, env: &[(&str, String)]) -> Child {
    start_with(dir, sink, env, "")
}

/// [`start`], with `top` (top-level keys) after `data_dir`.
fn start_with(dir: &Path, sink: &Sink<'_>, env: &[(&str, String)], top: &str) -> Child {
    let Sink {
        endpoint,
        index,
        service,
        gzip,
        extra,
        aws_extra,
        buffer,
    } = sink;
    let config = format!(
        "data_dir: {data}
{top}sources:
  app:
    type: tail
    paths: [\"{log}\"]
    format: raw
    read_from_head: true
    kubernetes_metadata: false
    refresh_interval: 100ms
    poll_interval: 50ms
    tag: app
    event_id_key: line_id
sinks:
  es:
    type: elasticsearch
    match: app
    endpoints: [\"{endpoint}\"]
    index: {index}
    compress: {gzip}
    request_timeout: 5s
    batch: {{ max_events: 25, timeout: 200ms }}
{extra}    aws:
      region: {REGION}
      service: {service}
{aws_extra}    buffer:
{buffer}      flush_interval: 100ms
      retry_wait: 100ms
      retry_max_interval: 500ms
      retry_max_times: 2
",
        data = dir.join("data").display(),
        log = dir.join("app.log").display(),
    );
    let path = dir.join("nagare.yaml");
    std::fs::write(&path, config).unwrap();
    if !dir.join("app.log").exists() {
        std::fs::write(dir.join("app.log"), numbered(0..LINES)).unwrap();
    }
    Child::spawn("aggregator", run_without_aws_setup(&path, dir, env))
}

/// The lines `range` of the log the aggregators tail, numbered in `seq`.
fn numbered(range: std::ops::Range<usize>) -> String {
    range
        .map(|n| format!("{{\"seq\":{n},\"msg\":\"order placed\"}}\n"))
        .collect()
}

/// Checks the aggregator of `dir` dead-lettered nothing.
fn assert_nothing_dead_lettered(dir: &Path, what: &str) {
    let dead = dir.join("data/dead-letter/es.ndjson");
    assert!(
        std::fs::read_to_string(&dead)
            .unwrap_or_default()
            .is_empty(),
        "{what}"
    );
}

fn static_keys(secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", KEY_ID.to_string()),
        ("AWS_SECRET_ACCESS_KEY", secret.to_string()),
    ]
}

fn route(osmem: &Osmem, moto: Option<&Moto>, clock_offset: i64) -> Route {
    SigV4Proxy::shared().route(&RouteSpec {
        upstream: osmem.url().to_string(),
        keys: vec![(KEY_ID.into(), SECRET.into())],
        moto: moto.map(|m| m.url().to_string()),
        clock_offset,
        ..RouteSpec::default()
    })
}

/// Waits until `index` holds LINES documents, checks each line is there once, and
/// stops the aggregator.
fn expect_delivered(child: &mut Child, osmem: &Osmem, index: &str, what: &str) {
    let all = wait_until(Duration::from_secs(40), || {
        assert!(
            child.try_wait().is_none(),
            "{what}: exited\n{}",
            child.logs()
        );
        osmem.count(index) >= LINES as u64
    });
    assert!(
        all,
        "{what}: {} of {LINES} documents\n{}",
        osmem.count(index),
        child.logs()
    );
    let seqs: BTreeSet<u64> = osmem
        .documents(index)
        .iter()
        .filter_map(|d| d.source["seq"].as_u64())
        .collect();
    assert_eq!(osmem.count(index), LINES as u64, "{what}: no duplicate");
    assert_eq!(seqs, (0..LINES as u64).collect(), "{what}: every line");
    signal(child.pid(), nix::sys::signal::Signal::SIGTERM);
    let status = child.wait_timeout(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "{what}: {}",
        child.logs()
    );
}

/// Runs an aggregator for `sink` with `env` until every line is in osmem, where
/// its credentials come from moto's STS: every request `route` saw is signed, for
/// the sink's service, accepted, and carries a session token moto issued. What the
/// route saw.
fn deliver_with_session(
    dir: &Path,
    sink: &Sink<'_>,
    env: &[(&str, String)],
    route: &Route,
    osmem: &Osmem,
    what: &str,
) -> Vec<Seen> {
    let mut child = start(dir, sink, env);
    expect_delivered(&mut child, osmem, sink.index, what);
    let seen = route.log();
    assert_signed(&seen, sink.service, what);
    for s in &seen {
        assert_eq!(s.verdict, "ok", "{what}: {s:?}");
        assert_eq!(
            s.auth["session_token"], true,
            "{what}: a key moto's STS issued: {s:?}"
        );
    }
    seen
}

/// What every signed request must show, accepted or not.
fn assert_signed(seen: &[Seen], service: &str, what: &str) {
    assert!(!seen.is_empty(), "{what}: no request");
    for s in seen {
        let sha = s.header("x-amz-content-sha256");
        assert!(sha.is_some_and(|h| h.len() == 64), "{what}: {s:?}");
        let authorization = s.header("authorization").unwrap_or_default();
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential="),
            "{what}: {s:?}"
        );
        assert!(
            authorization.contains(&format!("/{REGION}/{service}/aws4_request")),
            "{what}: {authorization}"
        );
    }
}

/// The metadata of a `_bulk` action line, whatever its kind: the line is an object
/// with one key, `index`, `create`, `update` or `delete`.
fn action_meta(action: &Value) -> &Value {
    let (kind, meta) = action
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.iter().next())
        .unwrap_or_else(|| panic!("an action line is an object with one key: {action}"));
    assert!(
        ["index", "create", "update", "delete"].contains(&kind.as_str()),
        "an action: {action}"
    );
    meta
}

#[test]
fn signed_requests_pass_with_gzip_on_and_off_for_es_and_aoss() {
    let osmem = Osmem::start();
    for (service, gzip) in [("es", true), ("es", false), ("aoss", true), ("aoss", false)] {
        let what = format!("{service}, gzip {gzip}");
        let route = route(&osmem, None, 0);
        let index = format!("signed-{service}-{gzip}");
        let dir = tempfile::tempdir().unwrap();
        let endpoint = route.url();
        let sink = Sink {
            gzip,
            ..Sink::new(&endpoint, &index, service)
        };
        let mut child = start(dir.path(), &sink, &static_keys(SECRET));
        expect_delivered(&mut child, &osmem, &index, &what);
        let seen = route.log();
        assert_signed(&seen, service, &what);
        for s in &seen {
            assert_eq!((s.status, s.verdict.as_str()), (200, "ok"), "{what}: {s:?}");
            assert_eq!(s.auth["service"], service, "{what}");
            let signed = s.auth["signed"].as_array().cloned().unwrap_or_default();
            for h in ["host", "x-amz-date", "x-amz-content-sha256"] {
                assert!(signed.contains(&json!(h)), "{what}: {h} signed: {signed:?}");
            }
            if s.method != "POST" {
                // The calls at start (`GET /`, the index template): no body.
                assert_eq!(service, "es", "{what}: Serverless gets only _bulk: {s:?}");
                continue;
            }
            assert!(
                signed.contains(&json!("content-type")),
                "{what}: content-type signed: {signed:?}"
            );
            assert_eq!(
                s.header("content-encoding") == Some("gzip"),
                gzip,
                "{what}: the body is signed as sent: {s:?}"
            );
        }
        let actions: Vec<&Value> = seen
            .iter()
            .flat_map(|s| s.actions.iter().flatten())
            .collect();
        assert_eq!(actions.len(), LINES, "{what}: one action per line");
        if service == "aoss" {
            // Serverless: only `_bulk`, never `_refresh` or any other call, and no ids.
            assert!(
                seen.iter()
                    .all(|s| s.method == "POST" && s.path == "/_bulk"),
                "{what}: {seen:?}"
            );
            assert!(!seen.iter().any(|s| s.path.contains("_refresh")));
            for a in &actions {
                assert!(action_meta(a).get("_id").is_none(), "{what}: no _id: {a}");
            }
        } else {
            for a in &actions {
                assert!(action_meta(a)["_id"].is_string(), "{what}: an _id: {a}");
            }
        }
    }
}

/// `template: {install: true}` through the proxy, for a managed domain and for
/// Serverless: the sink asks for the template and puts it, both signed and
/// accepted, before the first `_bulk`; the template is then in the cluster, the
/// index has its types (`log` a text without the `.keyword` dynamic mapping adds),
/// and every line arrives.
#[test]
fn an_index_template_is_installed_with_signed_requests_for_es_and_aoss() {
    let osmem = Osmem::start();
    for service in ["es", "aoss"] {
        let route = route(&osmem, None, 0);
        let dir = tempfile::tempdir().unwrap();
        let endpoint = route.url();
        let (index, name) = (format!("templated-{service}"), format!("nagare-{service}"));
        let extra = format!("    template: {{install: true, name: {name}}}\n");
        let sink = Sink {
            extra: &extra,
            ..Sink::new(&endpoint, &index, service)
        };
        let mut child = start(dir.path(), &sink, &static_keys(SECRET));
        expect_delivered(&mut child, &osmem, &index, service);
        let seen = route.log();
        assert_signed(&seen, service, service);
        for s in &seen {
            assert_eq!(s.verdict, "ok", "{service}: {s:?}");
            assert_eq!(s.auth["service"], service, "{service}: {s:?}");
        }
        let path = format!("/_index_template/{name}");
        let calls: Vec<(&str, &str, u16)> = seen
            .iter()
            .map(|s| (s.method.as_str(), s.path.as_str(), s.status))
            .collect();
        let at = |call: (&str, &str, u16)| calls.iter().position(|c| *c == call);
        let asked = at(("GET", &path, 404)).unwrap_or_else(|| panic!("{service}: {calls:?}"));
        let put = at(("PUT", &path, 200)).unwrap_or_else(|| panic!("{service}: {calls:?}"));
        let first_bulk = calls.iter().position(|c| c.1 == "/_bulk");
        assert!(
            asked < put && first_bulk.is_some_and(|b| put < b),
            "{service}: asked, put, then _bulk: {calls:?}"
        );
        assert_eq!(
            calls.iter().any(|c| (c.0, c.1) == ("GET", "/")),
            service == "es",
            "{service}: `GET /` for a managed domain only: {calls:?}"
        );
        let r = osmem.request("GET", &path, None).unwrap();
        assert_eq!(
            r.status,
            200,
            "{service}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let template: Value = serde_json::from_slice(&r.body).unwrap();
        let template = &template["index_templates"][0]["index_template"];
        assert_eq!(template["index_patterns"], json!([index]), "{template}");
        assert_eq!(template["_meta"]["managed_by"], "nagare", "{template}");
        let r = osmem
            .request("GET", &format!("/{index}/_mapping"), None)
            .unwrap();
        let mapping: Value = serde_json::from_slice(&r.body).unwrap();
        let props = &mapping[&index]["mappings"]["properties"];
        assert_eq!(props["log"], json!({"type": "text"}), "{service}: {props}");
    }
}

#[test]
fn a_wrong_secret_is_refused_nothing_is_lost_and_a_restart_delivers_everything() {
    let osmem = Osmem::start();
    let route = route(&osmem, None, 0);
    let dir = tempfile::tempdir().unwrap();
    let index = "refused-then-signed";
    let endpoint = route.url();
    // Lines the tail reads again after the kill overwrite their document.
    let sink = Sink {
        extra: "    id_key: line_id\n    remove_keys: [line_id]\n",
        ..Sink::new(&endpoint, index, "es")
    };
    let mut child = start(dir.path(), &sink, &static_keys("not-the-secret"));
    // More refusals than `retry_max_times` allows: a plain retry would have given up.
    let refused = wait_until(Duration::from_secs(30), || {
        assert!(child.try_wait().is_none(), "{}", child.logs());
        route.log().iter().filter(|s| s.status == 403).count() >= 5
    });
    assert!(refused, "{:?}\n{}", route.log(), child.logs());
    assert_signed(&route.log(), "es", "wrong secret");
    assert!(
        route
            .log()
            .iter()
            .all(|s| s.verdict.contains("signature we calculated"))
    );
    assert_eq!(osmem.count(index), 0);
    assert_nothing_dead_lettered(dir.path(), "refused credentials never dead-letter events");
    let logs = child.logs();
    // Said once a minute, however many refusals: one line within this test.
    let blocked: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("sending again without end"))
        .collect();
    assert_eq!(blocked.len(), 1, "{logs}");
    let line = blocked[0];
    for words in [
        "status=403",
        "signature we calculated",
        "signed with access key AKID…ARCH, from the environment (AWS_ACCESS_KEY_ID)",
        "the credentials of the default chain",
        "for service `es` in region eu-west-1",
        "es:ESHttpPost",
        "access policy",
        "clock",
    ] {
        assert!(
            line.contains(words),
            "the log line says what was tried and what to check ({words}):\n{line}"
        );
    }
    assert!(
        !logs.contains("not-the-secret"),
        "the secret is never logged"
    );
    // A crash, then the right secret: the file buffer still holds every line.
    child.kill();
    let mut child = start(dir.path(), &sink, &static_keys(SECRET));
    expect_delivered(&mut child, &osmem, index, "after the restart");
}

/// Serverless makes its own ids, so what was stored before a crash is stored again:
/// requests reach the collection but their answers never come back (a relay holds
/// them), the aggregator is killed, and the restarted one sends the chunks its file
/// buffer still holds again.
/// Every line arrives, some twice, and the resend is counted in the metrics, as
/// docs/delivery.md says.
#[test]
fn serverless_duplicates_what_a_crash_sends_again_and_counts_it() {
    let osmem = Osmem::start();
    let route = route(&osmem, None, 0);
    let relay = StallProxy::start(
        route
            .url()
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap(),
    );
    relay.hold_answers();
    let dir = tempfile::tempdir().unwrap();
    let index = "serverless-resent";
    let path = route
        .url()
        .splitn(4, '/')
        .nth(3)
        .map(|p| format!("/{p}"))
        .unwrap_or_default();
    let held = format!("{}{path}", relay.url());
    let sink = |endpoint| Sink {
        buffer: "      type: file\n",
        ..Sink::new(endpoint, index, "aoss")
    };
    let mut first = start(dir.path(), &sink(&held), &static_keys(SECRET));
    let stored = wait_until(Duration::from_secs(30), || {
        assert!(first.try_wait().is_none(), "{}", first.logs());
        osmem.count(index) > 0
    });
    assert!(stored, "{}", first.logs());
    first.kill();
    let before = osmem.count(index);

    let api = nagare_testkit::free_port();
    let endpoint = route.url();
    let mut second = start_with(
        dir.path(),
        &sink(&endpoint),
        &static_keys(SECRET),
        &format!("api:\n  bind: 127.0.0.1:{api}\n"),
    );
    let all = wait_until(Duration::from_secs(40), || {
        assert!(second.try_wait().is_none(), "{}", second.logs());
        osmem.count(index) >= (LINES as u64) + before
    });
    assert!(all, "{} documents\n{}", osmem.count(index), second.logs());
    let mut copies = std::collections::BTreeMap::<u64, usize>::new();
    for d in osmem.documents(index) {
        *copies.entry(d.source["seq"].as_u64().unwrap()).or_default() += 1;
    }
    assert_eq!(
        copies.keys().copied().collect::<Vec<_>>(),
        (0..LINES as u64).collect::<Vec<_>>(),
        "every line"
    );
    assert!(
        copies.values().any(|&n| n == 2),
        "what the first run stored ({before}) was stored again: {copies:?}"
    );
    let recovered = support::metric(
        api,
        "nagare_buffer_recovered_chunks_total{component_id=\"es\",component_kind=\"sink\",component_type=\"elasticsearch\"}",
    );
    assert!(
        recovered.is_some_and(|n| n >= 1.0),
        "the resent chunks are counted: {recovered:?}\n{}",
        second.logs()
    );
    signal(second.pid(), nix::sys::signal::Signal::SIGTERM);
    assert!(second.wait_timeout(Duration::from_secs(30)).is_some());
}

/// Temporary credentials from web identity (IRSA), both ways they are had: with
/// `sts_endpoint`, from nagare's own web identity provider; without it, from the AWS
/// SDK's in its default chain (the path EKS runs), here pointed at moto's STS by the
/// SDK's own variable `AWS_ENDPOINT_URL_STS`. Every request is signed with the
/// session token moto issued.
#[test]
fn temporary_credentials_from_web_identity_are_signed_with_their_session_token() {
    let moto = Moto::shared();
    let osmem = Osmem::start();
    for (what, service, own_provider) in
        [("web identity", "aoss", true), ("SDK chain", "es", false)]
    {
        let route = route(&osmem, Some(moto), 0);
        let dir = tempfile::tempdir().unwrap();
        let token = web_identity_token(dir.path());
        let mut env = vec![
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
            ("AWS_ROLE_ARN", moto.web_identity_role()),
        ];
        let aws = if own_provider {
            format!("      sts_endpoint: \"{}\"\n", moto.url())
        } else {
            env.push(("AWS_ENDPOINT_URL_STS", moto.url().to_string()));
            String::new()
        };
        let index = format!("web-identity-{service}");
        let endpoint = route.url();
        let sink = Sink {
            aws_extra: &aws,
            ..Sink::new(&endpoint, &index, service)
        };
        let seen = deliver_with_session(dir.path(), &sink, &env, &route, &osmem, what);
        for s in &seen {
            assert!(s.header("x-amz-security-token").is_some(), "{what}: {s:?}");
            let signed = s.auth["signed"].as_array().cloned().unwrap_or_default();
            assert!(
                signed.contains(&json!("x-amz-security-token")),
                "{what}: {signed:?}"
            );
        }
    }
}

/// A refusal under IRSA names the role the credentials came from: the proxy knows
/// none of the keys moto's STS issues here (its route is not told of moto), so it
/// refuses each request as AWS refuses an unknown session, and the once-a-minute
/// log line says the key came from web identity, with the role in `AWS_ROLE_ARN`.
#[test]
fn a_refusal_under_irsa_names_the_role_the_key_came_from() {
    let moto = Moto::shared();
    let osmem = Osmem::start();
    let route = route(&osmem, None, 0);
    let dir = tempfile::tempdir().unwrap();
    let role = moto.web_identity_role();
    let token = web_identity_token(dir.path());
    let env = [
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
        ("AWS_ROLE_ARN", role.clone()),
    ];
    let aws = format!("      sts_endpoint: \"{}\"\n", moto.url());
    let endpoint = route.url();
    let sink = Sink {
        aws_extra: &aws,
        ..Sink::new(&endpoint, "irsa-refused", "es")
    };
    let mut child = start(dir.path(), &sink, &env);
    let said = wait_until(Duration::from_secs(30), || {
        assert!(child.try_wait().is_none(), "{}", child.logs());
        child.logs().contains("sending again without end")
    });
    let logs = child.logs();
    assert!(said, "{logs}");
    let line = logs
        .lines()
        .find(|l| l.contains("sending again without end"))
        .unwrap_or_default();
    let origin = format!("from web identity (IRSA): the role {role} (AWS_ROLE_ARN)");
    assert!(line.contains(&origin), "{origin} in:\n{line}");
    assert!(
        line.contains("security token included in the request is invalid"),
        "{line}"
    );
    assert_eq!(osmem.count("irsa-refused"), 0);
    child.kill();
}

/// EKS Pod Identity: the chain asks the agent's endpoint (a stand-in on 127.0.0.1;
/// the SDK takes loopback as well as the agent's 169.254.170.23) with the token the
/// kubelet mounts, read from `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`; every request
/// is signed with the role session it hands out, which the proxy checks against
/// moto's STS.
#[test]
fn a_role_session_from_eks_pod_identity_signs_every_request() {
    const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwb2QtaWRlbnRpdHkifQ.c2ln";
    let moto = Moto::shared();
    let osmem = Osmem::start();
    let route = route(&osmem, Some(moto), 0);
    let agent = aws_endpoints::CredentialsEndpoint::start(TOKEN, moto.role_session("pod"));
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("eks-pod-identity-token");
    std::fs::write(&token, TOKEN).unwrap();
    let env = [
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://127.0.0.1:{}/v1/credentials", agent.port),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token.display().to_string(),
        ),
    ];
    let endpoint = route.url();
    let sink = Sink::new(&endpoint, "pod-identity", "es");
    deliver_with_session(dir.path(), &sink, &env, &route, &osmem, "EKS Pod Identity");
    let asked = agent.seen.lock().unwrap().clone();
    assert!(!asked.is_empty(), "the agent was asked");
    for request in &asked {
        assert_eq!(request.path, "/v1/credentials");
        assert_eq!(
            request.headers.get("authorization").map(String::as_str),
            Some(TOKEN),
            "the token file's contents"
        );
    }
}

/// Credentials are replaced before they expire: the container credentials endpoint
/// (a stand-in, as for EKS Pod Identity) hands out a role session that has a few
/// seconds left before the last five minutes of its life, then a second session.
/// What is delivered first is signed with the first; once those seconds are past,
/// the endpoint is asked again and every later request is signed with the second.
#[test]
fn credentials_near_their_expiry_are_replaced_before_signing() {
    const TOKEN: &str = "task-auth-token-rotating";
    /// How long the first session is good for before the sink replaces it.
    /// (The first half of the lines must arrive within it, with the other tests of
    /// this binary running beside it.)
    const GRACE: Duration = Duration::from_secs(12);
    let moto = Moto::shared();
    let osmem = Osmem::start();
    let route = route(&osmem, Some(moto), 0);
    let mut first = moto.role_session("rotating-1");
    let second = moto.role_session("rotating-2");
    let started = std::time::Instant::now();
    // Five minutes is the margin the sink keeps (`CachedCredentials::REFRESH_BEFORE`).
    let expiry = std::time::SystemTime::now() + Duration::from_secs(5 * 60) + GRACE;
    first["Expiration"] = json!(humantime::format_rfc3339_seconds(expiry).to_string());
    let (first_key, second_key) = (first["AccessKeyId"].clone(), second["AccessKeyId"].clone());
    assert_ne!(first_key, second_key, "two sessions");
    let endpoint = aws_endpoints::CredentialsEndpoint::start_rotating(TOKEN, vec![first, second]);
    let dir = tempfile::tempdir().unwrap();
    let half = LINES / 2;
    std::fs::write(dir.path().join("app.log"), numbered(0..half)).unwrap();
    let env = [
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://127.0.0.1:{}/v2/credentials/task-1", endpoint.port),
        ),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", TOKEN.to_string()),
    ];
    let url = route.url();
    let sink = Sink::new(&url, "rotating", "es");
    let mut child = start(dir.path(), &sink, &env);
    assert!(
        wait_until(Duration::from_secs(30), || osmem.count("rotating")
            >= half as u64),
        "the first half: {} documents\n{}",
        osmem.count("rotating"),
        child.logs()
    );
    assert!(
        started.elapsed() < GRACE,
        "the first half arrived within the first session's grace ({:?}): the test \
         cannot tell the sessions apart on a host this slow",
        started.elapsed()
    );
    let before = route.log().len();
    std::thread::sleep(GRACE.saturating_sub(started.elapsed()) + Duration::from_secs(1));
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("app.log"))
        .unwrap();
    std::io::Write::write_all(&mut log, numbered(half..LINES).as_bytes()).unwrap();
    expect_delivered(&mut child, &osmem, "rotating", "rotated credentials");

    let seen = route.log();
    assert_signed(&seen, "es", "rotated credentials");
    for s in &seen {
        assert_eq!(s.verdict, "ok", "{s:?}");
        assert_eq!(s.auth["session_token"], true, "{s:?}");
    }
    let keys = |seen: &[Seen]| -> BTreeSet<String> {
        seen.iter()
            .map(|s| s.auth["key_id"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(
        keys(&seen[..before]),
        BTreeSet::from([first_key.as_str().unwrap().to_string()]),
        "the first half signed with the first session"
    );
    assert!(seen.len() > before, "requests after the grace");
    assert_eq!(
        keys(&seen[before..]),
        BTreeSet::from([second_key.as_str().unwrap().to_string()]),
        "after the grace, every request signed with the second session"
    );
    let asked = endpoint.seen.lock().unwrap().len();
    assert_eq!(
        asked, 2,
        "asked once for each session, not for every request"
    );
}

/// An instance role from IMDSv2 (a stand-in at `AWS_EC2_METADATA_SERVICE_ENDPOINT`):
/// the chain takes a session token first and sends it with each GET; every request
/// is signed with the role session the instance profile hands out.
#[test]
fn a_role_session_from_imdsv2_signs_every_request() {
    let moto = Moto::shared();
    let osmem = Osmem::start();
    let route = route(&osmem, Some(moto), 0);
    let imds = aws_endpoints::Imds::start("nagare-node", moto.role_session("instance"));
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("AWS_EC2_METADATA_DISABLED", "false".to_string()),
        (
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://127.0.0.1:{}", imds.port),
        ),
    ];
    let endpoint = route.url();
    let sink = Sink::new(&endpoint, "instance-role", "es");
    deliver_with_session(dir.path(), &sink, &env, &route, &osmem, "IMDSv2");
    let asked = imds.seen.lock().unwrap().clone();
    assert_eq!(
        (asked[0].method.as_str(), asked[0].path.as_str()),
        ("PUT", "/latest/api/token"),
        "a session token first: {asked:?}"
    );
    assert!(
        asked
            .iter()
            .any(|r| r.path == "/latest/meta-data/iam/security-credentials/nagare-node"),
        "{asked:?}"
    );
    for request in asked.iter().filter(|r| r.method == "GET") {
        assert_eq!(
            request
                .headers
                .get("x-aws-ec2-metadata-token")
                .map(String::as_str),
            Some(aws_endpoints::Imds::TOKEN),
            "every GET carries the session token: {request:?}"
        );
    }
}

/// A role assumed with an external id on top of the chain (the static keys of
/// moto's test user, which may assume it only with that id): every request is
/// signed with the role session's temporary credentials, which the proxy checks
/// against moto's STS, and moto recorded the id with the session.
#[test]
fn a_role_assumed_with_an_external_id_signs_every_request() {
    const EXTERNAL_ID: &str = "search-logs-2b9c";
    let moto = Moto::shared();
    let osmem = Osmem::start();
    let route = route(&osmem, Some(moto), 0);
    let role = moto.create_role(&json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": TEST_USER},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}},
        }],
    }));
    let dir = tempfile::tempdir().unwrap();
    let key = moto.credentials();
    let env = [
        ("AWS_ACCESS_KEY_ID", key.id.clone()),
        ("AWS_SECRET_ACCESS_KEY", key.secret.clone()),
    ];
    let aws = format!(
        "      role_arn: \"{role}\"\n      external_id: {EXTERNAL_ID}\n      sts_endpoint: \"{}\"\n",
        moto.url()
    );
    let index = "assumed-role";
    let endpoint = route.url();
    let sink = Sink {
        aws_extra: &aws,
        ..Sink::new(&endpoint, index, "es")
    };
    let seen = deliver_with_session(dir.path(), &sink, &env, &route, &osmem, "assumed role");
    let sessions = moto.sessions_of(&role);
    assert!(!sessions.is_empty(), "the role was assumed");
    assert!(
        sessions.iter().all(|r| r["external_id"] == EXTERNAL_ID),
        "AssumeRole carried the external id: {sessions:?}"
    );
    let session_keys: Vec<&str> = sessions
        .iter()
        .filter_map(|r| r["access_key_id"].as_str())
        .collect();
    for s in &seen {
        assert!(
            s.auth["key_id"]
                .as_str()
                .is_some_and(|k| session_keys.contains(&k)),
            "signed with the role session's key, not the user's: {s:?}"
        );
    }
}

/// The server's clock 15 minutes ahead (this machine's signatures expired) and 15
/// minutes behind (not yet current): the log says by how much and which way, from
/// the server's time in AWS's words.
#[test]
fn a_clock_off_by_more_than_five_minutes_is_named_in_the_log() {
    let osmem = Osmem::start();
    for (offset, refusal, way) in [
        (900, "Signature expired", "ahead of"),
        (-900, "Signature not yet current", "behind"),
    ] {
        let route = route(&osmem, None, offset);
        let dir = tempfile::tempdir().unwrap();
        let endpoint = route.url();
        let sink = Sink::new(&endpoint, "skewed", "es");
        let mut child = start(dir.path(), &sink, &static_keys(SECRET));
        let said = wait_until(Duration::from_secs(30), || {
            assert!(child.try_wait().is_none(), "{}", child.logs());
            child.logs().contains(&format!("s {way} this machine's"))
        });
        let logs = child.logs();
        assert!(said, "{offset}: {logs}");
        assert!(logs.contains(refusal), "{offset}: {logs}");
        assert!(
            [899, 900, 901]
                .iter()
                .any(|s| logs.contains(&format!("clock is {s} s {way} this machine's"))),
            "the skew in seconds: {logs}"
        );
        assert_eq!(osmem.count("skewed"), 0);
    }
}

/// No credentials to sign with: the role cannot be assumed (its STS does not answer).
/// Nothing is sent, nothing dead-lettered, the process stays up, and the log says
/// once (not at each of the retries) what failed and what was tried: the role, the
/// service and the region.
#[test]
fn credentials_that_cannot_be_had_are_said_once_with_what_was_tried() {
    let osmem = Osmem::start();
    let route = route(&osmem, None, 0);
    let dir = tempfile::tempdir().unwrap();
    let endpoint = route.url();
    let role = "arn:aws:iam::123456789012:role/nagare-aggregator";
    // A port nothing listens on: STS refuses the connection.
    let sts = format!("http://127.0.0.1:{}", nagare_testkit::free_port());
    let aws_extra = format!("      role_arn: {role}\n      sts_endpoint: {sts}\n");
    let sink = Sink {
        aws_extra: &aws_extra,
        ..Sink::new(&endpoint, "no-credentials", "es")
    };
    let mut child = start_with(
        dir.path(),
        &sink,
        &static_keys(SECRET),
        "shutdown_timeout: 2s\n",
    );
    let said = wait_until(Duration::from_secs(20), || {
        assert!(child.try_wait().is_none(), "{}", child.logs());
        child.logs().contains("cannot reach Elasticsearch at start")
    });
    assert!(said, "{}", child.logs());
    // Several retries go by (0.5, 1, 2, 4 s apart) while the log stays quiet.
    std::thread::sleep(Duration::from_secs(8));
    assert!(child.try_wait().is_none(), "{}", child.logs());
    let logs = child.logs();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("cannot reach Elasticsearch at start"))
        .collect();
    assert_eq!(lines.len(), 1, "said once a minute: {logs}");
    for words in [
        "no AWS credentials",
        &format!("by the role {role}"),
        "for service `es` in region eu-west-1",
        "attempts=1",
    ] {
        assert!(lines[0].contains(words), "{words}: {}", lines[0]);
    }
    assert!(
        route.log().is_empty(),
        "nothing unsigned is sent: {:?}",
        route.log()
    );
    assert_eq!(osmem.count("no-credentials"), 0);
    assert_nothing_dead_lettered(dir.path(), "nothing is dead-lettered");
    // A stop gives up on the undeliverable lines after `shutdown_timeout`.
    signal(child.pid(), nix::sys::signal::Signal::SIGTERM);
    assert!(
        child.wait_timeout(Duration::from_secs(20)).is_some(),
        "{}",
        child.logs()
    );
}
