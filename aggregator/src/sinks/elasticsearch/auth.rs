//! AWS SigV4 for Amazon OpenSearch Service (`es`) and OpenSearch Serverless (`aoss`):
//! every request the sink makes is signed, body included, with the AWS SDK's signer
//! (`aws-sigv4`).
//!
//! - [`sign`]: pure: the headers that sign one request (method, URL, headers, body)
//!   with given credentials, region, service and time. The body is hashed as sent
//!   (gzip bytes when compressed), and `x-amz-content-sha256` always carries that hash:
//!   Serverless refuses a request without it.
//! - [`AwsSigner`]: the credentials of the `aws:` block (kept until shortly before
//!   they expire), the region and the service; signs a `reqwest::Request` in place.
//! - [`auth_hint`]: what an operator should check when AWS answers 401 or 403.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign as sigv4_sign,
};
use aws_sigv4::sign::v4;
use reqwest::header::{HeaderName, HeaderValue};

use crate::aws::{AwsConfig, AwsService, CachedCredentials, credentials_origin};

/// Why a request could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The credentials chain gave no credentials (no source, STS refused, ...).
    #[error("no AWS credentials: {}", aws_sdk_sts::error::DisplayErrorContext(.0))]
    Credentials(#[from] CredentialsError),
    /// The request cannot be signed as it is (a header value that is not text, ...).
    #[error("cannot sign the request: {0}")]
    Request(String),
}

/// The `Host` header a client sends for `url`: the host, and the port unless it is
/// the scheme's default (which is what reqwest sends, and what must be signed).
pub fn host_header(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// Where a signature is valid: the region and the service (`es`, `aoss`).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The region (`eu-west-1`).
    pub region: &'a str,
    /// The service (`es`, `aoss`).
    pub service: &'a str,
}

/// The headers that sign a request: `x-amz-date`, `x-amz-content-sha256`,
/// `x-amz-security-token` (with temporary credentials) and `authorization`.
///
/// `headers` are those that will be sent, `host` included (see [`host_header`]); all
/// of them are signed. `body` is hashed as it is sent.
pub fn sign(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    credentials: &Credentials,
    scope: Scope<'_>,
    time: SystemTime,
) -> Result<Vec<(&'static str, String)>, SignError> {
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(scope.region)
        .name(scope.service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| SignError::Request(e.to_string()))?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| SignError::Request(e.to_string()))?;
    let (instructions, _) = sigv4_sign(request, &params)
        .map_err(|e| SignError::Request(e.to_string()))?
        .into_parts();
    let (headers, _) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|h| (h.name(), h.value().to_string()))
        .collect())
}

/// Signs the sink's requests with the credentials of its `aws:` block.
#[derive(Debug)]
pub struct AwsSigner {
    credentials: CachedCredentials,
    region: String,
    service: AwsService,
    /// The access key id of the last signature and the source of the chain it came
    /// from (see [`credentials_origin`]), for the logs.
    last_key: std::sync::Mutex<Option<(String, String)>>,
}

impl AwsSigner {
    /// A signer with the SDK configuration of the `aws:` block.
    pub fn new(sdk: &aws_config::SdkConfig, service: AwsService) -> Result<Self, SignError> {
        let provider = sdk.credentials_provider().ok_or_else(|| {
            SignError::Credentials(CredentialsError::not_loaded(
                "no credentials provider in the AWS configuration",
            ))
        })?;
        Ok(Self {
            credentials: CachedCredentials::new(provider),
            region: sdk.region().map(|r| r.to_string()).unwrap_or_default(),
            service,
            last_key: std::sync::Mutex::new(None),
        })
    }

    /// Which access key the last request was signed with (see [`key_words`]) and
    /// which source of the credentials chain gave it, for a log line; none before
    /// the first.
    pub fn signed_with(&self) -> Option<String> {
        let (key, origin) = self.last_key.lock().ok()?.clone()?;
        Some(format!("{}, from {origin}", key_words(&key)))
    }

    /// The region signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The service signed for.
    pub fn service(&self) -> AwsService {
        self.service
    }

    /// Adds the signature headers to `request`, over its method, URL, headers (with
    /// the `Host` reqwest will send) and body.
    pub async fn sign_request(&self, request: &mut reqwest::Request) -> Result<(), SignError> {
        let credentials = self.credentials.get().await?;
        if let Ok(mut last) = self.last_key.lock()
            && last.as_ref().map(|(key, _)| key.as_str()) != Some(credentials.access_key_id())
        {
            let origin = credentials_origin(&credentials, |name| std::env::var(name).ok());
            *last = Some((credentials.access_key_id().to_string(), origin));
        }
        let host = host_header(request.url());
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(request.headers().len() + 1);
        headers.push(("host", host.as_str()));
        for (name, value) in request.headers() {
            let value = value
                .to_str()
                .map_err(|_| SignError::Request(format!("the header `{name}` is not text")))?;
            headers.push((name.as_str(), value));
        }
        // Every body here is in memory; one that is not (a stream) could not be
        // hashed, and signing it as empty would only be refused by the server.
        let body = match request.body() {
            None => &[][..],
            Some(body) => body.as_bytes().ok_or_else(|| {
                SignError::Request("the body is a stream, which cannot be hashed to sign".into())
            })?,
        };
        let signed = sign(
            request.method().as_str(),
            request.url().as_str(),
            &headers,
            body,
            &credentials,
            Scope {
                region: &self.region,
                service: self.service.as_str(),
            },
            SystemTime::now(),
        )?;
        for (name, value) in signed {
            let value = HeaderValue::from_str(&value)
                .map_err(|e| SignError::Request(format!("header `{name}`: {e}")))?;
            request
                .headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
        Ok(())
    }
}

/// An access key id as a log line shows it: its first and last four characters
/// (enough to find it in IAM or CloudTrail; an id is not a secret, but a log is no
/// place for whole ones) and what its prefix says it is: `AKIA` a long-term key of
/// an IAM user, `ASIA` temporary credentials from STS (an assumed role, IRSA, Pod
/// Identity, a container or instance role).
pub fn key_words(id: &str) -> String {
    let kind = match id.get(..4) {
        Some("AKIA") => " (a long-term key of an IAM user)",
        Some("ASIA") => " (temporary credentials from STS: a role's session)",
        _ => "",
    };
    match (
        id.get(..4),
        id.len().checked_sub(4).and_then(|at| id.get(at..)),
    ) {
        (Some(head), Some(tail)) if id.len() > 8 => format!("access key {head}…{tail}{kind}"),
        _ => format!("access key {id}{kind}"),
    }
}

/// What to check when AWS refuses a signed request (401, 403): who signed, for which
/// region and service, the policies that must allow it, and the clock.
pub fn auth_hint(aws: &AwsConfig, region: &str, service: AwsService) -> String {
    let who = aws.credentials_source();
    let policies = match service {
        AwsService::Es => {
            "their IAM policy must allow es:ESHttpPost (es:ESHttpGet and es:ESHttpPut too, for the calls at start) on the domain's ARN; the domain's access policy must not deny that principal; with fine-grained access control, the IAM role must be mapped to an OpenSearch role allowed to write the indices"
        }
        AwsService::Aoss => {
            "their IAM policy must allow aoss:APIAccessAll on the collection; the collection's data access policy must grant that principal aoss:WriteDocument and aoss:CreateIndex on its indices; the network policy must let this network in"
        }
    };
    format!(
        "requests are signed with SigV4 by {who}, for service `{}` in region {region} (it must be the domain's or the collection's region); {policies}; this machine's clock must be within 5 minutes of AWS's; events stay in the buffer until then",
        service.as_str()
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sha2::{Digest, Sha256};

    use super::*;

    const BODY: &[u8] = b"{\"index\":{\"_index\":\"logs\"}}\n{\"msg\":\"hello\"}\n";

    fn signed(body: &[u8], token: Option<&str>, service: &str) -> Vec<(&'static str, String)> {
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.map(str::to_string),
            None,
            "test",
        );
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        sign(
            "POST",
            "https://search-logs.eu-west-1.es.amazonaws.com/_bulk",
            &[
                ("host", "search-logs.eu-west-1.es.amazonaws.com"),
                ("content-type", "application/x-ndjson"),
            ],
            body,
            &credentials,
            Scope {
                region: "eu-west-1",
                service,
            },
            time,
        )
        .expect("signed")
    }

    fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn signs_the_body_as_sent_and_always_sends_its_hash() {
        let headers = signed(BODY, None, "es");
        let hash: String = Sha256::digest(BODY)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            header(&headers, "x-amz-content-sha256"),
            Some(hash.as_str())
        );
        assert_eq!(header(&headers, "x-amz-date"), Some("20231114T221320Z"));
        assert_eq!(header(&headers, "x-amz-security-token"), None);
        let auth = header(&headers, "authorization").expect("authorization");
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/eu-west-1/es/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, Signature="
            ),
            "{auth}"
        );
        // The same request signs the same; another body, service or token does not.
        assert_eq!(signed(BODY, None, "es"), headers);
        let gzipped = nagare_core::compression::compress(
            nagare_core::compression::Compression::Gzip,
            1,
            BODY,
        )
        .unwrap();
        for other in [
            signed(&gzipped, None, "es"),
            signed(BODY, None, "aoss"),
            signed(BODY, Some("session"), "es"),
        ] {
            assert_ne!(
                header(&other, "authorization"),
                header(&headers, "authorization")
            );
        }
    }

    #[test]
    fn session_tokens_are_sent_and_signed() {
        let headers = signed(BODY, Some("FwoGZXIvYXdzEXAMPLE"), "aoss");
        assert_eq!(
            header(&headers, "x-amz-security-token"),
            Some("FwoGZXIvYXdzEXAMPLE")
        );
        let auth = header(&headers, "authorization").expect("authorization");
        assert!(
            auth.contains("/aoss/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"),
            "{auth}"
        );
    }

    #[test]
    fn the_host_header_has_the_port_unless_it_is_the_default() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert_eq!(
            host_header(&url("https://search-x.es.amazonaws.com/_bulk")),
            "search-x.es.amazonaws.com"
        );
        assert_eq!(
            host_header(&url("https://search-x.es.amazonaws.com:443/")),
            "search-x.es.amazonaws.com"
        );
        assert_eq!(
            host_header(&url("http://127.0.0.1:9200/p/_bulk")),
            "127.0.0.1:9200"
        );
    }

    #[test]
    fn the_hint_names_the_policies_of_each_service() {
        let aws: AwsConfig =
            serde_norway::from_str("role_arn: 'arn:aws:iam::1:role/logs'").unwrap();
        let es = auth_hint(&aws, "eu-west-1", AwsService::Es);
        for words in [
            "arn:aws:iam::1:role/logs",
            "`es`",
            "eu-west-1",
            "es:ESHttpPost",
            "access policy",
            "clock",
        ] {
            assert!(es.contains(words), "{words}: {es}");
        }
        let aoss = auth_hint(&aws, "eu-west-1", AwsService::Aoss);
        for words in ["`aoss`", "aoss:APIAccessAll", "data access policy"] {
            assert!(aoss.contains(words), "{words}: {aoss}");
        }
    }

    #[test]
    fn an_access_key_is_shown_by_its_ends_and_its_kind() {
        assert_eq!(
            key_words("AKIAIOSFODNN7EXAMPLE"),
            "access key AKIA…MPLE (a long-term key of an IAM user)"
        );
        assert_eq!(
            key_words("ASIAQNZGKIQY56JQ7WML"),
            "access key ASIA…7WML (temporary credentials from STS: a role's session)"
        );
        assert_eq!(key_words("AKIDEXAMPLE"), "access key AKID…MPLE");
        assert_eq!(key_words("short"), "access key short");
    }
}
