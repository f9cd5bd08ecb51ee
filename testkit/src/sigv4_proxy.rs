//! `SigV4Proxy`: a proxy in front of osmem-server that checks requests as Amazon
//! OpenSearch Service does, **with botocore** (`scripts/sigv4_proxy.py`, run by the
//! moto venv's Python), independently of the signer under test.
//!
//! One proxy process per test binary; each test adds a [`Route`]: its own osmem, the
//! access keys (and API keys) it accepts, optionally moto for temporary keys issued
//! by moto's STS, and a clock offset. The sink's endpoint is the route's URL (the
//! route name is a path prefix, signed like the rest of the path and removed before
//! forwarding).
//!
//! A signed request passes when botocore's SigV4Auth computes the same signature
//! from the request as received, `x-amz-content-sha256` is signed and is the body's
//! SHA-256, `x-amz-date` is within 5 minutes of the route's clock, and a session
//! token is the one moto issued with the key. Otherwise: 403 with a JSON body saying
//! why (as AWS: `{"message": ...}`). `Authorization: ApiKey ...` passes when the
//! key is one of the route's (else 401). Every request is recorded ([`Seen`]).

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::child::Child;
use crate::http;
use crate::paths;

/// The proxy of this test binary.
#[derive(Debug)]
pub struct SigV4Proxy {
    child: Child,
    url: String,
}

/// What a route accepts and where it forwards.
#[derive(Debug, Clone, Default)]
pub struct RouteSpec {
    /// The osmem-server URL requests go to.
    pub upstream: String,
    /// Access key id and secret pairs accepted.
    pub keys: Vec<(String, String)>,
    /// API keys accepted (`Authorization: ApiKey <this>`).
    pub api_keys: Vec<String>,
    /// moto's URL: keys its STS issued are accepted with their session token.
    pub moto: Option<String>,
    /// Seconds the route's clock is ahead of the machine's (its `Date` header too).
    pub clock_offset: i64,
}

/// One route of the proxy.
#[derive(Debug, Clone)]
pub struct Route {
    proxy: String,
    name: String,
}

/// A request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `POST`, `GET` ...
    pub method: String,
    /// The path after the route's prefix (`/_bulk`).
    pub path: String,
    /// The query string, without `?`.
    pub query: String,
    /// The headers, names lower-cased.
    pub headers: serde_json::Map<String, Value>,
    /// `ok`, or why it was refused.
    pub verdict: String,
    /// The status the client got.
    pub status: u16,
    /// For SigV4: `key_id`, `region`, `service`, `signed` (header names),
    /// `session_token` (whether one was checked).
    pub auth: Value,
    /// For `_bulk`: the action of each item (`{"index": {"_index": ...}}`).
    pub actions: Option<Vec<Value>>,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(Value::as_str)
    }
}

static SHARED: OnceLock<SigV4Proxy> = OnceLock::new();

impl SigV4Proxy {
    /// The proxy of this test binary, started on first use.
    pub fn shared() -> &'static SigV4Proxy {
        SHARED.get_or_init(SigV4Proxy::start)
    }

    fn start() -> SigV4Proxy {
        let script = paths::repo_root().join("testkit/scripts/sigv4_proxy.py");
        let mut cmd = Command::new(paths::moto_python());
        cmd.arg(script).arg("0");
        let mut child = Child::spawn("sigv4-proxy", cmd);
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            let announced = child.stdout().lines().find_map(|line| {
                serde_json::from_str::<Value>(line)
                    .ok()
                    .and_then(|v| v.get("url")?.as_str().map(str::to_string))
            });
            if let Some(url) = announced {
                break url;
            }
            if child.try_wait().is_some() || Instant::now() >= deadline {
                panic!("the SigV4 proxy did not start\n{}", child.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        SigV4Proxy { child, url }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The proxy process (its logs).
    pub fn child(&self) -> &Child {
        &self.child
    }

    /// Adds a route; its URL is the endpoint to give the sink.
    pub fn route(&self, spec: &RouteSpec) -> Route {
        let keys: serde_json::Map<String, Value> = spec
            .keys
            .iter()
            .map(|(id, secret)| (id.clone(), json!(secret)))
            .collect();
        let body = json!({
            "upstream": spec.upstream,
            "keys": keys,
            "api_keys": spec.api_keys,
            "moto": spec.moto,
            "clock_offset": spec.clock_offset,
        });
        let resp = http::send_json(&self.url, "POST", "/_proxy/routes", Some(&body))
            .unwrap_or_else(|e| panic!("SigV4 proxy: adding a route: {e}"));
        assert_eq!(resp.status, 200, "SigV4 proxy: {}", resp.text());
        let name = resp.json()["route"]
            .as_str()
            .expect("a route name")
            .to_string();
        Route {
            proxy: self.url.clone(),
            name,
        }
    }
}

impl Route {
    /// `http://127.0.0.1:PORT/<route>`: the sink's endpoint.
    pub fn url(&self) -> String {
        format!("{}/{}", self.proxy, self.name)
    }

    /// Every request seen on this route, in order.
    pub fn log(&self) -> Vec<Seen> {
        let path = format!("/_proxy/routes/{}/log", self.name);
        let resp = http::send_json(&self.proxy, "GET", &path, None)
            .unwrap_or_else(|e| panic!("SigV4 proxy: reading the log: {e}"));
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        resp.json()
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| Seen {
                method: text(&e["method"]),
                path: text(&e["path"]),
                query: text(&e["query"]),
                headers: e["headers"].as_object().cloned().unwrap_or_default(),
                verdict: text(&e["verdict"]),
                status: e["status"].as_u64().unwrap_or_default() as u16,
                auth: e["auth"].clone(),
                actions: e["actions"].as_array().cloned(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{
        PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
    };
    use aws_sigv4::sign::v4;

    use super::*;
    use crate::Osmem;

    /// The headers of a POST of `body` to `url`, signed by the SDK's signer.
    fn signed(url: &str, secret: &str, body: &[u8]) -> Vec<(String, String)> {
        let host = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let identity = Credentials::new("AKIDPROXYTEST", secret, None, None, "test").into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("eu-west-1")
            .name("es")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let mut headers = vec![
            ("host".to_string(), host),
            (
                "content-type".to_string(),
                "application/x-ndjson".to_string(),
            ),
        ];
        let request = SignableRequest::new(
            "POST",
            url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (instructions, _) = sign(request, &params).unwrap().into_parts();
        headers.extend(
            instructions
                .headers()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        headers.retain(|(k, _)| k != "host");
        headers
    }

    /// The proxy accepts a request signed with the right secret and forwards it; it
    /// refuses a wrong secret and an unsigned request, saying why, and forwards
    /// neither.
    #[test]
    fn checks_signatures_and_forwards_what_passes() {
        let osmem = Osmem::start();
        let proxy = SigV4Proxy::shared();
        let route = proxy.route(&RouteSpec {
            upstream: osmem.url().to_string(),
            keys: vec![("AKIDPROXYTEST".into(), "s3cret".into())],
            ..RouteSpec::default()
        });
        let url = format!("{}/_bulk", route.url());
        let body = b"{\"index\":{\"_index\":\"p\"}}\n{\"n\":1}\n";
        let send = |headers: &[(String, String)]| {
            http::send(
                proxy.url(),
                "POST",
                &url[proxy.url().len()..],
                headers,
                body,
            )
            .expect("an answer")
        };
        let good = send(&signed(&url, "s3cret", body));
        assert_eq!(good.status, 200, "{}", good.text());
        let wrong = send(&signed(&url, "not-the-secret", body));
        assert_eq!(wrong.status, 403);
        assert!(
            wrong.text().contains("signature we calculated"),
            "{}",
            wrong.text()
        );
        let unsigned = send(&[("content-type".into(), "application/x-ndjson".into())]);
        assert_eq!(unsigned.status, 403);
        let log = route.log();
        let verdicts: Vec<&str> = log.iter().map(|s| s.verdict.as_str()).collect();
        assert_eq!(verdicts.len(), 3, "{verdicts:?}");
        assert_eq!(verdicts[0], "ok");
        assert_eq!(log[0].path, "/_bulk");
        assert_eq!(log[0].auth["service"], "es");
        assert_eq!(
            log[0].actions.as_deref(),
            Some(&[json!({"index": {"_index": "p"}})][..])
        );
        assert!(verdicts[2].contains("anonymous"), "{verdicts:?}");
        assert_eq!(osmem.count("p"), 1, "only the signed request was forwarded");
    }

    /// `Authorization: ApiKey ...` passes with a key of the route's, else 401.
    #[test]
    fn checks_api_keys() {
        let osmem = Osmem::start();
        let proxy = SigV4Proxy::shared();
        let route = proxy.route(&RouteSpec {
            upstream: osmem.url().to_string(),
            api_keys: vec!["VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==".into()],
            ..RouteSpec::default()
        });
        let path = format!("/{}/", route.name);
        let with = |key: &str| {
            let headers = [("authorization".to_string(), format!("ApiKey {key}"))];
            http::send(proxy.url(), "GET", &path, &headers, b"").expect("an answer")
        };
        let good = with("VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==");
        assert_eq!(good.status, 200, "{}", good.text());
        assert_eq!(with("bm90OnRoZS1rZXk=").status, 401);
        let log = route.log();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].auth["api_key"], true);
        assert_eq!(log[1].status, 401);
    }
}
