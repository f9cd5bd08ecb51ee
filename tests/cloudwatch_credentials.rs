//! Where the `cloudwatch_logs` sink's credentials come from, with the real `nagare`
//! binary and moto's server checking every signature: a web identity token and a
//! role ARN (EKS IRSA) exchanged with moto's STS, a named profile of a shared
//! credentials file, the ECS container credentials endpoint, and a role assumed with
//! an external id on top of the chain.
//!
//! Each aggregator runs with an environment of its own and nothing else (no
//! credentials of the machine, no instance metadata), so the events arriving in moto
//! prove that the one source under test supplied keys moto accepts.
#![cfg(feature = "aggregator")]

mod aws_endpoints;
mod support;

use std::path::Path;
use std::time::Duration;

use nagare_testkit::moto::{AccessKey, Moto, REGION, web_identity_token, xml_text};
use nagare_testkit::{Child, wait_until};
use serde_json::{Value, json};
use support::{run_without_aws_setup, signal};

/// moto's account.
const ACCOUNT: &str = "123456789012";

/// Lines each test delivers.
const LINES: usize = 50;

/// The text of the first `<tag>` element of `xml`.
fn element(xml: &str, tag: &str) -> String {
    xml_text(xml, tag).unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
}

/// A user of moto allowed only `actions`: its ARN and access key.
fn create_user(moto: &Moto, actions: &[&str]) -> (String, AccessKey) {
    let name = Moto::unique("nagare-user");
    let key = moto.credentials();
    moto.query_as(key, "iam", &[("Action", "CreateUser"), ("UserName", &name)]);
    let xml = moto.query_as(
        key,
        "iam",
        &[("Action", "CreateAccessKey"), ("UserName", &name)],
    );
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
    });
    moto.query_as(
        key,
        "iam",
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", &name),
            ("PolicyName", "only"),
            ("PolicyDocument", &policy.to_string()),
        ],
    );
    let key = AccessKey {
        id: element(&xml, "AccessKeyId"),
        secret: element(&xml, "SecretAccessKey"),
    };
    (format!("arn:aws:iam::{ACCOUNT}:user/{name}"), key)
}

/// An aggregator tailing `dir/app.log` into a new group of moto, with only `env` in
/// its environment and `aws` (YAML, indented by four spaces) as its `aws:` block.
struct Shipper {
    child: Child,
    group: String,
}

impl Shipper {
    fn start(dir: &Path, env: &[(&str, String)], aws: &str) -> Shipper {
        let moto = Moto::shared();
        let group = Moto::unique("/credentials");
        let config = format!(
            "data_dir: {data}
sources:
  app:
    type: tail
    paths: [\"{log}\"]
    format: raw
    read_from_head: true
    kubernetes_metadata: false
    refresh_interval: 100ms
    poll_interval: 50ms
    tag: app
sinks:
  cloudwatch:
    type: cloudwatch_logs
    match: app
    log_group_name: \"{group}\"
    log_stream_name: app
    endpoint: \"{endpoint}\"
    request_timeout: 5s
    batch: {{ timeout: 200ms }}
    aws:
      region: {REGION}
{aws}    buffer:
      flush_interval: 100ms
      retry_wait: 200ms
      retry_max_interval: 1s
      retry_forever: true
",
            data = dir.join("data").display(),
            log = dir.join("app.log").display(),
            endpoint = moto.url(),
        );
        let path = dir.join("nagare.yaml");
        std::fs::write(&path, config).unwrap();
        let mut lines = String::new();
        for n in 0..LINES {
            lines.push_str(&format!("{{\"seq\":{n},\"msg\":\"order placed\"}}\n"));
        }
        std::fs::write(dir.join("app.log"), lines).unwrap();
        Shipper {
            child: Child::spawn("aggregator", run_without_aws_setup(&path, dir, env)),
            group,
        }
    }

    /// Waits until every line is in moto, then stops the aggregator.
    fn expect_delivered(&mut self, what: &str) {
        let moto = Moto::shared();
        let mut arrived = 0;
        let all = wait_until(Duration::from_secs(30), || {
            assert!(
                self.child.try_wait().is_none(),
                "{what}: the aggregator exited\n{}",
                self.child.logs()
            );
            arrived = if moto.streams(&self.group).is_empty() {
                0
            } else {
                moto.events(&self.group, "app").len()
            };
            arrived >= LINES
        });
        assert!(
            all,
            "{what}: {arrived} of {LINES} events arrived\n{}",
            self.child.logs()
        );
        let events = moto.events(&self.group, "app");
        assert_eq!(events.len(), LINES, "{what}");
        for (n, e) in events.iter().enumerate() {
            let record: Value = serde_json::from_str(&e.message).unwrap();
            assert_eq!(record["seq"], n, "{what}");
        }
        self.stop();
    }

    /// Waits `for_` and checks that nothing arrived, then stops the aggregator.
    fn expect_nothing(&mut self, for_: Duration, what: &str) -> String {
        std::thread::sleep(for_);
        assert!(self.child.try_wait().is_none(), "{}", self.child.logs());
        let moto = Moto::shared();
        assert!(
            moto.streams(&self.group).is_empty() || moto.events(&self.group, "app").is_empty(),
            "{what}: events arrived\n{}",
            self.child.logs()
        );
        // Its events could never be delivered: no graceful stop to wait for.
        self.child.kill();
        self.child.logs()
    }

    fn stop(&mut self) {
        signal(self.child.pid(), nix::sys::signal::Signal::SIGTERM);
        let status = self.child.wait_timeout(Duration::from_secs(30));
        assert!(
            status.is_some_and(|s| s.success()),
            "the aggregator did not stop cleanly\n{}",
            self.child.logs()
        );
    }
}

#[test]
fn a_web_identity_token_is_exchanged_at_the_sts_endpoint_of_the_config() {
    let moto = Moto::shared();
    let role = moto.web_identity_role();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            web_identity_token(dir.path()).display().to_string(),
        ),
        ("AWS_ROLE_ARN", role.clone()),
        ("AWS_ROLE_SESSION_NAME", "nagare-irsa-config".to_string()),
    ];
    let aws = format!("      sts_endpoint: \"{}\"\n", moto.url());
    let mut shipper = Shipper::start(dir.path(), &env, &aws);
    shipper.expect_delivered("web identity, sts_endpoint");
    let sessions = moto.sessions_of(&role);
    assert!(
        sessions
            .iter()
            .any(|r| r["session_name"] == "nagare-irsa-config"),
        "moto's STS issued credentials for the role: {sessions:?}"
    );
}

#[test]
fn a_web_identity_token_is_exchanged_by_the_default_chain() {
    // As on EKS: only the environment IRSA sets (plus the STS endpoint, which the SDK
    // takes from AWS_ENDPOINT_URL_STS), nothing in the config.
    let moto = Moto::shared();
    let role = moto.web_identity_role();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            web_identity_token(dir.path()).display().to_string(),
        ),
        ("AWS_ROLE_ARN", role.clone()),
        ("AWS_ROLE_SESSION_NAME", "nagare-irsa-chain".to_string()),
        ("AWS_ENDPOINT_URL_STS", moto.url().to_string()),
    ];
    let mut shipper = Shipper::start(dir.path(), &env, "");
    shipper.expect_delivered("web identity, default chain");
    assert!(
        moto.sessions_of(&role)
            .iter()
            .any(|r| r["session_name"] == "nagare-irsa-chain"),
        "moto's STS issued credentials for the role"
    );
    assert!(
        !shipper.child.logs().contains("eyJhbGciOiJSUzI1NiJ9"),
        "the token is never logged"
    );
}

#[test]
fn a_named_profile_of_a_shared_credentials_file() {
    let moto = Moto::shared();
    let key = moto.credentials();
    let dir = tempfile::tempdir().unwrap();
    // `default` holds a wrong secret: only the named profile can deliver.
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        format!(
            "[default]\naws_access_key_id = {id}\naws_secret_access_key = not-the-secret\n\n[logging]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n",
            id = key.id,
            secret = key.secret
        ),
    )
    .unwrap();
    let env = [("AWS_SHARED_CREDENTIALS_FILE", file.display().to_string())];
    let mut shipper = Shipper::start(dir.path(), &env, "      profile: logging\n");
    shipper.expect_delivered("profile `logging`");
    assert!(
        !shipper.child.logs().contains(&key.secret),
        "the secret is never logged"
    );

    // Without `aws.profile`, `default` is used: moto refuses its signature, the events
    // wait (retried, not dead-lettered) and the log says why.
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(&file, other.path().join("credentials")).unwrap();
    let env = [(
        "AWS_SHARED_CREDENTIALS_FILE",
        other.path().join("credentials").display().to_string(),
    )];
    let mut refused = Shipper::start(other.path(), &env, "");
    let logs = refused.expect_nothing(Duration::from_secs(4), "profile `default`");
    assert!(
        logs.contains("SignatureDoesNotMatch") || logs.contains("signature"),
        "{logs}"
    );
    let dead = other.path().join("data/dead-letter/cloudwatch.ndjson");
    assert!(
        std::fs::read_to_string(&dead)
            .unwrap_or_default()
            .is_empty(),
        "refused credentials never dead-letter events"
    );
}

#[test]
fn the_container_credentials_endpoint_with_its_authorization_token() {
    let moto = Moto::shared();
    // The task role's credentials, as ECS hands them out: temporary keys of a role.
    // (Its trust names the test's user, who assumes it here in ECS's place: moto's
    // trust check knows only `AWS` principals, not `ecs-tasks.amazonaws.com`.)
    let credentials = moto.role_session("ecs-task");
    const TOKEN: &str = "task-auth-token-4242";
    let endpoint = aws_endpoints::CredentialsEndpoint::start(TOKEN, credentials);
    let dir = tempfile::tempdir().unwrap();
    let env = [
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://127.0.0.1:{}/v2/credentials/task-1", endpoint.port),
        ),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", TOKEN.to_string()),
    ];
    let mut shipper = Shipper::start(dir.path(), &env, "");
    shipper.expect_delivered("container credentials");
    let seen = endpoint.seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the endpoint was asked");
    for request in &seen {
        assert_eq!(request.path, "/v2/credentials/task-1");
        assert_eq!(
            request.headers.get("authorization").map(String::as_str),
            Some(TOKEN),
            "the token header arrives"
        );
    }
    assert!(
        !shipper.child.logs().contains(TOKEN),
        "the token is never logged"
    );
}

#[test]
fn a_role_assumed_with_an_external_id_on_top_of_the_chain() {
    let moto = Moto::shared();
    // The starting identity may only assume roles: what it delivers, it delivers with
    // the role's credentials.
    let (user_arn, user) = create_user(moto, &["sts:AssumeRole"]);
    let role = moto.create_role(&json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": user_arn},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": "shop-logs-7f3a"}},
        }],
    }));
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", user.id.clone()),
        ("AWS_SECRET_ACCESS_KEY", user.secret.clone()),
    ];
    let aws = |external_id: &str| {
        format!(
            "      role_arn: \"{role}\"\n      external_id: {external_id}\n      sts_endpoint: \"{}\"\n",
            moto.url()
        )
    };

    // The user alone cannot write logs: moto checks its policy.
    let refused = moto.logs_call_as(
        &user,
        "CreateLogGroup",
        &json!({ "logGroupName": Moto::unique("/credentials/denied") }),
    );
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.text().contains("AccessDenied"),
        "{}",
        refused.text()
    );

    // moto checks the role's trust policy, condition included: a wrong external id
    // is refused, and the events wait.
    let wrong = tempfile::tempdir().unwrap();
    let mut refused = Shipper::start(wrong.path(), &env, &aws("not-the-id"));
    let logs = refused.expect_nothing(Duration::from_secs(4), "a wrong external id");
    assert!(logs.contains("AccessDenied"), "{logs}");

    let mut shipper = Shipper::start(dir.path(), &env, &aws("shop-logs-7f3a"));
    shipper.expect_delivered("assumed role");
    let sessions = moto.sessions_of(&role);
    assert!(!sessions.is_empty(), "the role was assumed");
    assert!(
        sessions
            .iter()
            .all(|r| r["external_id"] == "shop-logs-7f3a"),
        "AssumeRole carried the external id: {sessions:?}"
    );
    assert!(
        !shipper.child.logs().contains("shop-logs-7f3a"),
        "the external id is never logged"
    );
}
