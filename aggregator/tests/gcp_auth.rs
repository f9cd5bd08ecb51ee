//! Google credentials against the two token servers they talk to.
//!
//! Neither Google's OAuth token endpoint nor a GCE metadata server can run here, so
//! each is a test double on loopback, faithful to Google's documentation:
//! - the token endpoint follows "Using OAuth 2.0 for Server to Server Applications"
//!   (developers.google.com/identity/protocols/oauth2/service-account, "Preparing to
//!   make an authorized API call" / HTTP/REST): a form POST with
//!   `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT`, the JWT
//!   header `{"alg":"RS256","typ":"JWT"}`, the claims `iss`, `scope`, `aud` (the token
//!   URI), `exp` (at most an hour after `iat`) and `iat`, signed with RSA SHA-256 and
//!   checked here with the key's public half; success answers
//!   `{access_token, expires_in, token_type}`, a bad JWT 400 `{"error": "invalid_grant"}`;
//! - the metadata server follows "Access VM metadata" and "Authenticate workloads using
//!   service accounts" (cloud.google.com/compute/docs/metadata/querying-metadata,
//!   .../access-authenticate-workloads): `GET
//!   /computeMetadata/v1/instance/service-accounts/default/token` must carry
//!   `Metadata-Flavor: Google` (else 403), and answers
//!   `{"access_token", "expires_in", "token_type": "Bearer"}` with that same header.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use nagare_aggregator::gcp::{BIGQUERY_SCOPE, CredentialsSource, GcpAuthError, GoogleAuth};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const CLIENT_EMAIL: &str = "nagare@test-proj.iam.gserviceaccount.com";
const TOKEN_PATH: &str = "/token";
const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// What a double answers with, and what it has seen.
struct Double {
    /// The RSA public key (PKCS#1 DER) signatures must verify with.
    public_key: Vec<u8>,
    /// `expires_in` of the tokens it gives.
    expires_in: u64,
    /// Tokens given so far; the n-th token is `ya29.test-n`.
    issued: AtomicU64,
    /// Its own token URL, the `aud` a JWT must name.
    url: std::sync::OnceLock<String>,
}

type Answer = Response<Full<Bytes>>;

/// base64url with or without `=` padding. JWTs are unpadded (RFC 7515), but yup-oauth2
/// pads its segments and Google's endpoint accepts them, so the double does too.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn json_answer(status: StatusCode, body: Value) -> Answer {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .header("metadata-flavor", "Google")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn invalid_grant(description: &str) -> Answer {
    json_answer(
        StatusCode::BAD_REQUEST,
        json!({"error": "invalid_grant", "error_description": description}),
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Double {
    fn new(public_key: &[u8], expires_in: u64) -> Arc<Self> {
        Arc::new(Double {
            public_key: public_key.to_vec(),
            expires_in,
            issued: AtomicU64::new(0),
            url: std::sync::OnceLock::new(),
        })
    }

    fn issue(&self) -> Answer {
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        json_answer(
            StatusCode::OK,
            json!({
                "access_token": format!("ya29.test-{n}"),
                "expires_in": self.expires_in,
                "token_type": "Bearer",
            }),
        )
    }

    /// The OAuth 2.0 JWT-bearer exchange, as Google's token endpoint does it.
    fn token_endpoint(&self, method: &hyper::Method, path: &str, body: &[u8]) -> Answer {
        if method != hyper::Method::POST || path != TOKEN_PATH {
            return json_answer(StatusCode::NOT_FOUND, json!({"error": "not_found"}));
        }
        let form: std::collections::HashMap<String, String> =
            form_urlencoded::parse(body).into_owned().collect();
        if form.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return json_answer(
                StatusCode::BAD_REQUEST,
                json!({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}),
            );
        }
        let Some(assertion) = form.get("assertion") else {
            return json_answer(
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_request", "error_description": "Missing required parameter: assertion"}),
            );
        };
        let parts: Vec<&str> = assertion.split('.').collect();
        let [head, claims, signature] = parts[..] else {
            return invalid_grant(
                "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe",
            );
        };
        let decode = |s: &str| {
            BASE64URL
                .decode(s)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        };
        let (Some(head_json), Some(claims)) = (decode(head), decode(claims)) else {
            return invalid_grant("Invalid JWT: not base64url JSON");
        };
        if head_json["alg"] != "RS256" {
            return invalid_grant("Invalid JWT: alg must be RS256");
        }
        let Ok(signature) = BASE64URL.decode(signature) else {
            return invalid_grant("Invalid JWT Signature.");
        };
        let signed = &assertion[..head.len() + 1 + parts[1].len()];
        let key = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            &self.public_key,
        );
        if key.verify(signed.as_bytes(), &signature).is_err() {
            return invalid_grant("Invalid JWT Signature.");
        }
        let url = self.url.get().expect("url set at start");
        let (iat, exp) = (claims["iat"].as_u64(), claims["exp"].as_u64());
        let timely = match (iat, exp) {
            (Some(iat), Some(exp)) => iat <= now() + 60 && exp > now() && exp - iat <= 3600,
            _ => false,
        };
        if claims["iss"] != CLIENT_EMAIL
            || claims["aud"] != url.as_str()
            || !claims["scope"]
                .as_str()
                .is_some_and(|s| s.split(' ').any(|s| s == BIGQUERY_SCOPE))
        {
            return invalid_grant("Invalid JWT: iss, aud or scope is wrong");
        }
        if !timely {
            return invalid_grant(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
            );
        }
        self.issue()
    }

    /// The metadata server's token, as GCE and GKE serve it.
    fn metadata_server(&self, req: &Request<hyper::body::Incoming>) -> Answer {
        if req.uri().path() != METADATA_TOKEN_PATH {
            return json_answer(StatusCode::NOT_FOUND, json!({}));
        }
        if req
            .headers()
            .get("metadata-flavor")
            .is_none_or(|v| v != "Google")
        {
            return Response::builder()
                .status(StatusCode::FORBIDDEN)
                .header("content-type", "text/html; charset=UTF-8")
                .body(Full::new(Bytes::from_static(
                    b"Missing Metadata-Flavor:Google header.",
                )))
                .unwrap();
        }
        self.issue()
    }
}

/// Serves `double` on a loopback port as a token endpoint (`metadata` false) or a
/// metadata server; returns its base URL.
async fn serve(double: Arc<Double>, metadata: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    double
        .url
        .set(format!("{base}{TOKEN_PATH}"))
        .expect("served once");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let double = double.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<_>| {
                    let double = double.clone();
                    async move {
                        let answer = if metadata {
                            double.metadata_server(&req)
                        } else {
                            let (method, path) =
                                (req.method().clone(), req.uri().path().to_owned());
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            double.token_endpoint(&method, &path, &body)
                        };
                        Ok::<_, Infallible>(answer)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    base
}

/// A fresh 2048-bit RSA key: its PKCS#8 PEM and its public half (PKCS#1 DER).
fn rsa_key() -> (String, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    (key.serialize_pem(), key.public_key_raw().to_vec())
}

/// Writes a service-account key file, as the Cloud console downloads it, with
/// `token_uri` pointing at the double.
fn key_file(dir: &Path, private_key_pem: &str, token_uri: &str) -> PathBuf {
    let path = dir.join("key.json");
    let key = json!({
        "type": "service_account",
        "project_id": "test-proj",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": private_key_pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "100000000000000000000",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/nagare%40test-proj.iam.gserviceaccount.com",
        "universe_domain": "googleapis.com",
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&key).unwrap()).unwrap();
    path
}

async fn key_file_auth(expires_in: u64) -> (Arc<Double>, GoogleAuth, String, tempfile::TempDir) {
    let (pem, public) = rsa_key();
    let double = Double::new(&public, expires_in);
    let base = serve(double.clone(), false).await;
    let dir = tempfile::tempdir().unwrap();
    let path = key_file(dir.path(), &pem, &format!("{base}{TOKEN_PATH}"));
    let auth = GoogleAuth::new(CredentialsSource::KeyFile(path), &[BIGQUERY_SCOPE])
        .await
        .unwrap();
    (double, auth, pem, dir)
}

#[tokio::test]
async fn a_key_file_signs_a_jwt_the_token_endpoint_verifies_and_the_token_is_cached() {
    let (double, auth, pem, _dir) = key_file_auth(3600).await;
    let token = auth.token().await.unwrap().expect("a token");
    assert_eq!(token.expose(), "ya29.test-1");
    let expires_at = token.expires_at().expect("an expiry");
    let in_secs = expires_at.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(in_secs.abs_diff(now() + 3600) <= 5, "expires at {in_secs}");

    let again = auth.token().await.unwrap().unwrap();
    assert_eq!(again.expose(), "ya29.test-1");
    assert_eq!(double.issued.load(Ordering::SeqCst), 1, "one token request");

    let debug = format!("{auth:?} {token:?}");
    assert!(!debug.contains("ya29"), "a token in Debug: {debug}");
    let key_body = pem.lines().nth(1).unwrap();
    assert!(
        !debug.contains(key_body),
        "the private key in Debug: {debug}"
    );
}

#[tokio::test]
async fn a_token_near_expiry_is_refreshed() {
    // Google's tokens last an hour; one with four minutes left is inside the five
    // minutes before expiry in which it is replaced.
    let (double, auth, _pem, _dir) = key_file_auth(240).await;
    assert_eq!(auth.token().await.unwrap().unwrap().expose(), "ya29.test-1");
    assert_eq!(auth.token().await.unwrap().unwrap().expose(), "ya29.test-2");
    assert_eq!(double.issued.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_key_the_endpoint_does_not_know_is_refused_with_invalid_grant() {
    let (_, known_public) = rsa_key();
    let double = Double::new(&known_public, 3600);
    let base = serve(double.clone(), false).await;
    let dir = tempfile::tempdir().unwrap();
    let (other_pem, _) = rsa_key();
    let token_uri = format!("{base}{TOKEN_PATH}");
    let path = key_file(dir.path(), &other_pem, &token_uri);
    let auth = GoogleAuth::new(CredentialsSource::KeyFile(path.clone()), &[BIGQUERY_SCOPE])
        .await
        .unwrap();

    let err = auth.token().await.unwrap_err();
    assert!(matches!(err, GcpAuthError::Refused { .. }), "{err:?}");
    let message = err.to_string();
    for part in [
        "invalid_grant",
        "Invalid JWT Signature.",
        token_uri.as_str(),
        CLIENT_EMAIL,
        &path.display().to_string(),
    ] {
        assert!(message.contains(part), "`{part}` not in: {message}");
    }
    assert_eq!(double.issued.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_file_that_is_not_a_service_account_key_is_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let err = GoogleAuth::new(
        CredentialsSource::KeyFile(missing.clone()),
        &[BIGQUERY_SCOPE],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, GcpAuthError::KeyFileUnreadable { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );

    let path = key_file(dir.path(), "not a PEM key", "http://127.0.0.1:9/token");
    let err = GoogleAuth::new(CredentialsSource::KeyFile(path.clone()), &[BIGQUERY_SCOPE])
        .await
        .unwrap_err();
    assert!(
        matches!(err, GcpAuthError::KeyFileInvalid { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn the_metadata_server_gives_a_token_to_a_request_with_metadata_flavor() {
    let double = Double::new(&[], 3599);
    let base = serve(double.clone(), true).await;
    let url = format!("{base}{METADATA_TOKEN_PATH}");

    // The double refuses what the real server refuses.
    let bare = reqwest::get(&url).await.unwrap();
    assert_eq!(bare.status(), 403);

    let auth = GoogleAuth::new(CredentialsSource::Metadata(url), &[BIGQUERY_SCOPE])
        .await
        .unwrap();
    let token = auth.token().await.unwrap().unwrap();
    assert_eq!(token.expose(), "ya29.test-1");
    assert_eq!(auth.token().await.unwrap().unwrap().expose(), "ya29.test-1");
    assert_eq!(double.issued.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn no_metadata_server_is_an_error_that_names_it() {
    // A port nothing listens on: bound, then closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}{METADATA_TOKEN_PATH}",
        listener.local_addr().unwrap()
    );
    drop(listener);
    let auth = GoogleAuth::new(CredentialsSource::Metadata(url.clone()), &[BIGQUERY_SCOPE])
        .await
        .unwrap();
    let err = auth.token().await.unwrap_err();
    assert!(matches!(err, GcpAuthError::Metadata { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
}

#[tokio::test]
async fn no_credentials_give_no_token() {
    let auth = GoogleAuth::new(CredentialsSource::None, &[BIGQUERY_SCOPE])
        .await
        .unwrap();
    assert!(auth.token().await.unwrap().is_none());
}

/// Set in the environment of this test binary when it runs itself as a child, with
/// the Application Default Credentials variables the parent chose (tests cannot set
/// variables in their own process without `unsafe`).
const CHILD: &str = "NAGARE_GCP_AUTH_CHILD";

/// Runs `test` of this binary in a child with `env`; returns what it printed. Waits
/// off the runtime, which keeps serving the doubles the child calls.
async fn run_child(test: &'static str, env: &[(&str, &str)]) -> String {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || run_child_blocking(test, &env))
        .await
        .unwrap()
}

fn run_child_blocking(test: &str, env: &[(String, String)]) -> String {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--ignored", "--nocapture"])
        .env(CHILD, "1")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCE_METADATA_HOST");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child {test} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
#[ignore = "run by application_default_credentials_follow_the_environment"]
async fn child_application_default_token() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let source = CredentialsSource::application_default(None);
    let auth = GoogleAuth::new(source.clone(), &[BIGQUERY_SCOPE])
        .await
        .unwrap();
    let token = auth.token().await.unwrap().unwrap();
    println!("source: {source}");
    println!("token: {}", token.expose());
}

#[tokio::test]
async fn application_default_credentials_follow_the_environment() {
    // GCE_METADATA_HOST, as Google's own libraries read it: the metadata server there.
    let double = Double::new(&[], 3599);
    let base = serve(double.clone(), true).await;
    let host = base.trim_start_matches("http://");
    let out = run_child(
        "child_application_default_token",
        &[("GCE_METADATA_HOST", host)],
    )
    .await;
    assert!(
        out.contains(&format!(
            "source: metadata server {base}{METADATA_TOKEN_PATH}"
        )),
        "{out}"
    );
    assert!(out.contains("token: ya29.test-1"), "{out}");

    // GOOGLE_APPLICATION_CREDENTIALS comes before the metadata server.
    let (pem, public) = rsa_key();
    let endpoint = Double::new(&public, 3600);
    let base = serve(endpoint.clone(), false).await;
    let dir = tempfile::tempdir().unwrap();
    let path = key_file(dir.path(), &pem, &format!("{base}{TOKEN_PATH}"));
    let out = run_child(
        "child_application_default_token",
        &[
            ("GOOGLE_APPLICATION_CREDENTIALS", path.to_str().unwrap()),
            ("GCE_METADATA_HOST", host),
        ],
    )
    .await;
    assert!(
        out.contains(&format!(
            "source: service-account key file {}",
            path.display()
        )),
        "{out}"
    );
    assert!(out.contains("token: ya29.test-1"), "{out}");
    assert_eq!(
        double.issued.load(Ordering::SeqCst),
        1,
        "metadata asked once"
    );
}
