//! `Moto`: moto's server (the standard AWS emulator) for CloudWatch Logs, STS and IAM,
//! started once per test binary, **with signature checking on**.
//!
//! moto checks signatures and IAM policies once `INITIAL_NO_AUTH_ACTION_COUNT`
//! requests were served. The first three requests create an IAM user, its access key
//! and an inline policy allowing `logs:*`, `sts:*` and `iam:*` (STS tests create roles);
//! from then on only that key's requests are accepted: a wrong secret gets 403
//! `SignatureDoesNotMatch`, an unknown key 403 `InvalidClientTokenId`.
//!
//! Resetting moto (`/moto-api/reset`) would wipe the IAM user, so tests share the one
//! server and keep apart by unique group names ([`Moto::unique`]).
//!
//! The helpers sign their requests with `aws-sigv4`, the signer the AWS SDK uses.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde_json::{Value, json};

use crate::child::Child;
use crate::http::{self, Response};
use crate::paths;

/// The region every helper signs for.
pub const REGION: &str = "us-east-1";

/// How many requests moto serves before it checks signatures: the three that create
/// the user, its key and its policy.
const NO_AUTH_ACTIONS: u32 = 3;

/// Starts moto's server in-process from Python, with a thread that ends it as soon as
/// its parent (the test binary) is gone: the server lives in a `static` that is never
/// dropped, and must not outlive the tests. AssumeRoleWithWebIdentity is let through
/// unsigned, as AWS's STS does.
const LAUNCHER: &str = r#"
import os, sys, threading, time
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
# STS serves AssumeRoleWithWebIdentity unsigned, as AWS does (the web identity token
# is the credential); moto would look for a signature and fail with a 500.
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin as auth
checked = auth._authenticate_and_authorize_action
def check(self, *args, **kwargs):
    if auth.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT \
            and self._get_action() == "AssumeRoleWithWebIdentity":
        return
    return checked(self, *args, **kwargs)
auth._authenticate_and_authorize_action = check
from moto.server import main
main(["-H", "127.0.0.1", "-p", sys.argv[1]])
"#;

/// An access key id and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    /// The access key id (`AKIA...`).
    pub id: String,
    /// The secret access key.
    pub secret: String,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("secret", &"** redacted **")
            .finish()
    }
}

/// A log group as `DescribeLogGroups` and `ListTagsLogGroup` describe it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogGroup {
    /// Its name.
    pub name: String,
    /// `retentionInDays`, when set.
    pub retention_days: Option<i64>,
    /// `logGroupClass` (`STANDARD` when moto reports none).
    pub class: String,
    /// `kmsKeyId`, when set.
    pub kms_key_id: Option<String>,
    /// Its tags, sorted by key.
    pub tags: Vec<(String, String)>,
}

/// One stored log event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// The message text.
    pub message: String,
}

/// The shared moto server of this test binary.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    url: String,
    key: AccessKey,
}

static SHARED: OnceLock<Moto> = OnceLock::new();
static UNIQUE: AtomicU64 = AtomicU64::new(0);

impl Moto {
    /// The server of this test binary, started (and its user created) on first use.
    pub fn shared() -> &'static Moto {
        SHARED.get_or_init(Moto::start)
    }

    fn start() -> Moto {
        let python = paths::moto_python();
        let port = crate::free_port();
        let mut cmd = Command::new(python);
        cmd.args(["-c", LAUNCHER, &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", NO_AUTH_ACTIONS.to_string());
        let mut child = Child::spawn("moto_server", cmd);
        let url = format!("http://127.0.0.1:{port}");
        let ready = crate::wait::wait_until(Duration::from_secs(60), || {
            child.try_wait().is_none()
                && http::send(&url, "GET", "/moto-api/", &[], b"").is_ok_and(|r| r.status == 200)
        });
        assert!(
            ready,
            "moto_server did not start on {url}\n{}",
            child.logs()
        );
        let key = create_user(&url);
        Moto { child, url, key }
    }

    /// `http://127.0.0.1:PORT`: the endpoint of every service.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server process (its logs).
    pub fn child(&self) -> &Child {
        &self.child
    }

    /// The access key moto accepts.
    pub fn credentials(&self) -> &AccessKey {
        &self.key
    }

    /// A name no other caller in this test binary gets: `{prefix}-{pid}-{n}`.
    pub fn unique(prefix: &str) -> String {
        let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{}-{n}", std::process::id())
    }

    /// A CloudWatch Logs call (`operation` as in `Logs_20140328.{operation}`), signed
    /// with `key`; the raw response.
    pub fn logs_call_as(&self, key: &AccessKey, operation: &str, body: &Value) -> Response {
        let target = format!("Logs_20140328.{operation}");
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target.as_str()),
        ];
        signed(
            &self.url,
            key,
            "logs",
            &headers,
            body.to_string().as_bytes(),
        )
        .unwrap_or_else(|e| panic!("moto {operation}: {e}"))
    }

    /// A CloudWatch Logs call with the accepted key; panics unless it succeeds.
    pub fn logs_call(&self, operation: &str, body: &Value) -> Value {
        let resp = self.logs_call_as(&self.key, operation, body);
        assert_eq!(resp.status, 200, "moto {operation} {body}: {}", resp.text());
        // Some operations (CreateLogGroup ...) answer with an empty body.
        if resp.body.is_empty() {
            Value::Null
        } else {
            resp.json()
        }
    }

    /// Creates an IAM role that `trust` (an assume-role policy document) lets be
    /// assumed, allowed `logs:*` (moto checks the role's policies for requests signed
    /// with its credentials); its ARN.
    pub fn create_role(&self, trust: &Value) -> String {
        let name = Self::unique("nagare-role");
        let xml = self.query_as(
            &self.key,
            "iam",
            &[
                ("Action", "CreateRole"),
                ("RoleName", &name),
                ("AssumeRolePolicyDocument", &trust.to_string()),
            ],
        );
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{ "Effect": "Allow", "Action": ["logs:*"], "Resource": "*" }],
        });
        self.query_as(
            &self.key,
            "iam",
            &[
                ("Action", "PutRolePolicy"),
                ("RoleName", &name),
                ("PolicyName", "logs"),
                ("PolicyDocument", &policy.to_string()),
            ],
        );
        xml_text(&xml, "Arn").expect("CreateRole: an Arn")
    }

    /// A session of a new role that [`TEST_USER`] may assume, as a credentials
    /// endpoint (ECS's, EKS Pod Identity's agent, the instance metadata service)
    /// hands it out: `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration",
    /// "RoleArn"}`. `name` is the session's name.
    pub fn role_session(&self, name: &str) -> Value {
        let role = self.create_role(&json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": TEST_USER}, "Action": "sts:AssumeRole"}],
        }));
        let xml = self.query_as(
            &self.key,
            "sts",
            &[
                ("Action", "AssumeRole"),
                ("RoleArn", &role),
                ("RoleSessionName", name),
            ],
        );
        let element =
            |tag: &str| xml_text(&xml, tag).unwrap_or_else(|| panic!("no <{tag}> in {xml}"));
        json!({
            "RoleArn": role,
            "AccessKeyId": element("AccessKeyId"),
            "SecretAccessKey": element("SecretAccessKey"),
            "Token": element("SessionToken"),
            "Expiration": element("Expiration"),
        })
    }

    /// A new role for web identities, as IRSA's roles are (the cluster's OIDC
    /// provider as the federated principal, trusted for
    /// `sts:AssumeRoleWithWebIdentity`); its ARN.
    pub fn web_identity_role(&self) -> String {
        self.create_role(&json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": format!("arn:aws:iam::123456789012:oidc-provider/oidc.eks.{REGION}.amazonaws.com/id/EXAMPLE")},
                "Action": "sts:AssumeRoleWithWebIdentity",
            }],
        }))
    }

    /// The role sessions moto's STS has handed out (`AssumeRole`,
    /// `AssumeRoleWithWebIdentity`), from its model: each with `role_arn`,
    /// `external_id`, `access_key_id`, ... as moto records them.
    pub fn assumed_roles(&self) -> Vec<Value> {
        let resp = http::send(&self.url, "GET", "/moto-api/data.json", &[], b"")
            .expect("moto's model data");
        resp.json()["sts"]["AssumedRole"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The sessions of the role `role_arn` among [`assumed_roles`](Self::assumed_roles).
    pub fn sessions_of(&self, role_arn: &str) -> Vec<Value> {
        self.assumed_roles()
            .into_iter()
            .filter(|r| r["role_arn"] == role_arn)
            .collect()
    }

    /// An IAM or STS call (`service` `iam` or `sts`, Query protocol: `params` as the
    /// form, the XML answer) signed with `key`; panics unless it succeeds. Read the
    /// answer with [`xml_text`].
    pub fn query_as(&self, key: &AccessKey, service: &str, params: &[(&str, &str)]) -> String {
        query_call(&self.url, key, service, params)
    }

    /// Names of every log group, sorted.
    pub fn log_groups(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .pages("DescribeLogGroups", json!({}), "logGroups", "nextToken")
            .iter()
            .filter_map(|g| g["logGroupName"].as_str().map(str::to_string))
            .collect();
        names.sort();
        names
    }

    /// The group `name`, or `None` when it does not exist.
    pub fn describe_group(&self, name: &str) -> Option<LogGroup> {
        let groups = self.pages(
            "DescribeLogGroups",
            json!({ "logGroupNamePrefix": name }),
            "logGroups",
            "nextToken",
        );
        let g = groups.iter().find(|g| g["logGroupName"] == name)?;
        let tags = self.logs_call("ListTagsLogGroup", &json!({ "logGroupName": name }));
        let mut tags: Vec<(String, String)> = tags["tags"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        Some(LogGroup {
            name: name.to_string(),
            retention_days: g["retentionInDays"].as_i64(),
            class: g["logGroupClass"]
                .as_str()
                .unwrap_or("STANDARD")
                .to_string(),
            kms_key_id: g["kmsKeyId"].as_str().map(str::to_string),
            tags,
        })
    }

    /// Names of the streams of `group`, sorted; empty when the group does not exist.
    pub fn streams(&self, group: &str) -> Vec<String> {
        if self.describe_group(group).is_none() {
            return Vec::new();
        }
        let mut names: Vec<String> = self
            .pages(
                "DescribeLogStreams",
                json!({ "logGroupName": group }),
                "logStreams",
                "nextToken",
            )
            .iter()
            .filter_map(|s| s["logStreamName"].as_str().map(str::to_string))
            .collect();
        names.sort();
        names
    }

    /// Every event of `stream` in `group`, oldest first (all pages of GetLogEvents);
    /// none when either does not exist.
    pub fn events(&self, group: &str, stream: &str) -> Vec<LogEvent> {
        let mut events = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({
                "logGroupName": group,
                "logStreamName": stream,
                "startFromHead": true,
                "limit": 10_000,
            });
            if let Some(t) = &token {
                body["nextToken"] = json!(t);
            }
            let resp = self.logs_call_as(&self.key, "GetLogEvents", &body);
            if resp.status == 400 && resp.text().contains("ResourceNotFoundException") {
                return events;
            }
            assert_eq!(
                resp.status,
                200,
                "moto GetLogEvents {body}: {}",
                resp.text()
            );
            let page = resp.json();
            let got = page["events"].as_array().cloned().unwrap_or_default();
            events.extend(got.iter().map(|e| LogEvent {
                timestamp: e["timestamp"].as_i64().unwrap_or_default(),
                message: e["message"].as_str().unwrap_or_default().to_string(),
            }));
            let next = page["nextForwardToken"].as_str().map(str::to_string);
            // GetLogEvents hands back the same token at the end of the stream.
            if got.is_empty() || next.is_none() || next == token {
                return events;
            }
            token = next;
        }
    }

    /// Every item of `list` over all pages of `operation`.
    fn pages(&self, operation: &str, body: Value, list: &str, token_key: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut body = body;
        loop {
            let page = self.logs_call(operation, &body);
            out.extend(page[list].as_array().cloned().unwrap_or_default());
            match page[token_key].as_str() {
                Some(t) if !t.is_empty() => body[token_key] = json!(t),
                _ => return out,
            }
        }
    }
}

/// Sends a SigV4-signed POST of `body` to `base` for `service`.
pub fn signed(
    base: &str,
    key: &AccessKey,
    service: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    let host = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut sent: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    sent.extend(sign_post(&host, key, service, headers, body)?);
    http::send(base, "POST", "/", &sent, body).map_err(|e| format!("{base}: {e}"))
}

/// The headers that sign a POST to `/` of `host` with `headers` and `body`
/// (`x-amz-date`, `authorization`).
pub fn sign_post(
    host: &str,
    key: &AccessKey,
    service: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Vec<(String, String)>, String> {
    let identity = Credentials::new(&key.id, &key.secret, None, None, "nagare-testkit").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?
        .into();
    let uri = format!("http://{host}/");
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.push(("host", host));
    let request = SignableRequest::new(
        "POST",
        uri.as_str(),
        all.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("signable request: {e}"))?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| format!("signing: {e}"))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// An IAM Query API call (form body, XML answer); panics unless it succeeds.
fn iam_call(base: &str, key: &AccessKey, params: &[(&str, &str)]) -> String {
    query_call(base, key, "iam", params)
}

/// A Query API call of `service` (`iam`, `sts`: form body, XML answer); panics
/// unless it succeeds.
fn query_call(base: &str, key: &AccessKey, service: &str, params: &[(&str, &str)]) -> String {
    let version = match service {
        "sts" => "2011-06-15",
        _ => "2010-05-08",
    };
    let form = params
        .iter()
        .chain(&[("Version", version)])
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let headers = [(
        "content-type",
        "application/x-www-form-urlencoded; charset=utf-8",
    )];
    let resp = signed(base, key, service, &headers, form.as_bytes())
        .unwrap_or_else(|e| panic!("moto {service} {params:?}: {e}"));
    assert_eq!(
        resp.status,
        200,
        "moto {service} {params:?}: {}",
        resp.text()
    );
    resp.text()
}

/// `text` with every byte but the unreserved ones (`A-Z a-z 0-9 - _ . ~`)
/// percent-encoded, as SigV4 encodes a query. moto checks the signature of a form
/// body over the form as it would encode it itself, so a body encoded otherwise (a
/// `*` left as is, a space as `+`) is refused with SignatureDoesNotMatch.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The ARN of the user moto's shared key ([`Moto::credentials`]) belongs to.
pub const TEST_USER: &str = "arn:aws:iam::123456789012:user/nagare-tests";

/// A service account token file in `dir`, as the kubelet projects it for IRSA
/// (moto does not verify the JWT); its path.
pub fn web_identity_token(dir: &Path) -> PathBuf {
    let path = dir.join("token");
    std::fs::write(&path, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6bG9nZ2luZzpuYWdhcmUifQ.c2lnbmF0dXJl\n")
        .expect("the token file is written");
    path
}

/// The text of the first `<tag>` element in `xml`.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].to_string())
}

/// The three requests served before signatures are checked: the user, its access key
/// and its policy. Any key signs them (moto does not check them yet).
fn create_user(base: &str) -> AccessKey {
    let anyone = AccessKey {
        id: "AKIDBOOTSTRAP".into(),
        secret: "bootstrap".into(),
    };
    let user = "nagare-tests";
    iam_call(
        base,
        &anyone,
        &[("Action", "CreateUser"), ("UserName", user)],
    );
    let xml = iam_call(
        base,
        &anyone,
        &[("Action", "CreateAccessKey"), ("UserName", user)],
    );
    let key = AccessKey {
        id: xml_text(&xml, "AccessKeyId").expect("CreateAccessKey: an AccessKeyId"),
        secret: xml_text(&xml, "SecretAccessKey").expect("CreateAccessKey: a SecretAccessKey"),
    };
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["logs:*", "sts:*", "iam:*"],
            "Resource": "*",
        }],
    });
    iam_call(
        base,
        &anyone,
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", user),
            ("PolicyName", "nagare-tests"),
            ("PolicyDocument", &policy.to_string()),
        ],
    );
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_its_key_and_refuses_a_wrong_secret() {
        let moto = Moto::shared();
        let group = Moto::unique("/testkit/moto");
        moto.logs_call("CreateLogGroup", &json!({ "logGroupName": group }));
        moto.logs_call(
            "PutRetentionPolicy",
            &json!({ "logGroupName": group, "retentionInDays": 7 }),
        );
        moto.logs_call(
            "CreateLogStream",
            &json!({ "logGroupName": group, "logStreamName": "s" }),
        );
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        moto.logs_call(
            "PutLogEvents",
            &json!({
                "logGroupName": group, "logStreamName": "s",
                "logEvents": [
                    { "timestamp": now, "message": "one" },
                    { "timestamp": now + 1, "message": "two" },
                ],
            }),
        );
        assert!(moto.log_groups().contains(&group));
        let described = moto.describe_group(&group).expect("the group");
        assert_eq!(described.retention_days, Some(7));
        assert_eq!(moto.streams(&group), ["s"]);
        let messages: Vec<String> = moto
            .events(&group, "s")
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(messages, ["one", "two"]);

        let wrong = AccessKey {
            id: moto.credentials().id.clone(),
            secret: "not-the-secret".into(),
        };
        let refused = moto.logs_call_as(&wrong, "DescribeLogGroups", &json!({}));
        assert_eq!(refused.status, 403, "{}", refused.text());
        assert!(
            refused.text().contains("SignatureDoesNotMatch"),
            "{}",
            refused.text()
        );
        let unknown = AccessKey {
            id: "AKIDUNKNOWN0000000".into(),
            secret: "x".into(),
        };
        let refused = moto.logs_call_as(&unknown, "DescribeLogGroups", &json!({}));
        assert_eq!(refused.status, 403, "{}", refused.text());
    }

    #[test]
    fn the_secret_never_prints() {
        let key = AccessKey {
            id: "AKID".into(),
            secret: "s3cr3t".into(),
        };
        assert!(!format!("{key:?}").contains("s3cr3t"));
    }
}
