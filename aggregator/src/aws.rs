//! The `aws:` block of the sinks that call AWS: which region, which credentials.
//!
//! ```yaml
//! aws:
//!   region: us-east-1                 # else AWS_REGION / the profile's region
//!   profile: logging                  # else AWS_PROFILE / `default`
//!   role_arn: arn:aws:iam::123456789012:role/nagare   # assumed on top of the chain
//!   external_id: ${EXTERNAL_ID}       # with role_arn, when the role's trust asks for one
//!   sts_endpoint: http://127.0.0.1:5000                 # STS endpoint override
//!   service: es                       # elasticsearch sink only: es | aoss
//! ```
//!
//! Credentials come from the SDK's default chain (environment, shared profile, web
//! identity token for EKS IRSA, EKS Pod Identity and ECS container credentials,
//! IMDSv2), then, with `role_arn`, from STS AssumeRole called with those. The SDK's
//! identity cache refreshes them before they expire. Nothing here prints a secret.
//!
//! `sts_endpoint` points both STS calls the sink can make at another endpoint:
//! AssumeRole for `role_arn`, and AssumeRoleWithWebIdentity when the environment
//! holds a web identity token (`AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`, as
//! EKS sets them). The SDK's own web identity provider reads its STS endpoint only
//! from the environment, so with `sts_endpoint` set that call is made here.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use nagare_core::component::Invalid;
use nagare_core::config::Secret;
use serde::Deserialize;

/// Where a sink's AWS region and credentials come from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// The region (`us-east-1`). Unset: `AWS_REGION`, then the profile's `region`.
    #[serde(default)]
    pub region: Option<String>,
    /// A profile of the shared config and credentials files. Unset: `AWS_PROFILE`,
    /// then `default`.
    #[serde(default)]
    pub profile: Option<String>,
    /// A role to assume with the credentials the chain found (STS AssumeRole).
    #[serde(default)]
    pub role_arn: Option<String>,
    /// The external id the role's trust policy asks for; only with `role_arn`; not
    /// empty (written with nothing, or `${VAR}` of a variable set to nothing, it is
    /// refused rather than taken for no external id).
    #[serde(default, deserialize_with = "Secret::written")]
    pub external_id: Option<Secret>,
    /// An STS endpoint (`https://sts.us-east-1.amazonaws.com`, a VPC endpoint, an
    /// emulator) for AssumeRole and AssumeRoleWithWebIdentity.
    #[serde(default)]
    pub sts_endpoint: Option<String>,
    /// The service requests are signed for, on the `elasticsearch` sink only: `es`
    /// (an Amazon OpenSearch Service domain) or `aoss` (an OpenSearch Serverless
    /// collection). Unset there: `es`. Other sinks refuse it (they sign for their own
    /// API).
    #[serde(default)]
    pub service: Option<AwsService>,
}

/// The SigV4 service name of Amazon OpenSearch: a managed domain or Serverless.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AwsService {
    /// Amazon OpenSearch Service (formerly Amazon Elasticsearch Service) domains.
    #[default]
    Es,
    /// Amazon OpenSearch Serverless collections.
    Aoss,
}

impl AwsService {
    /// The name signed for (`es`, `aoss`).
    pub fn as_str(&self) -> &'static str {
        match self {
            AwsService::Es => "es",
            AwsService::Aoss => "aoss",
        }
    }
}

/// Why no SDK configuration could be made.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// No region anywhere.
    #[error(
        "no AWS region: set `aws.region` in the sink, or AWS_REGION, or `region` in the AWS profile"
    )]
    NoRegion,
}

impl AwsConfig {
    /// Checks what serde cannot; keys are named under `prefix` (`aws`).
    pub fn validate(&self, prefix: &str) -> Result<(), Invalid> {
        let key = |k: &str| format!("{prefix}.{k}");
        if let Some(region) = &self.region
            && (region.is_empty()
                || !region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
        {
            return Err(Invalid::new(
                key("region"),
                format!("`{region}` is not a region name like `us-east-1`"),
            ));
        }
        if self.profile.as_deref() == Some("") {
            return Err(Invalid::new(
                key("profile"),
                "must not be empty; remove it to use AWS_PROFILE or `default`",
            ));
        }
        if let Some(arn) = &self.role_arn
            && !(arn.starts_with("arn:") && arn.contains(":role/"))
        {
            return Err(Invalid::new(
                key("role_arn"),
                format!("`{arn}` is not a role ARN like `arn:aws:iam::123456789012:role/nagare`"),
            ));
        }
        if self.external_id.is_some() && self.role_arn.is_none() {
            return Err(Invalid::new(
                key("external_id"),
                "an external id is given to the role assumed: set `role_arn` too",
            ));
        }
        if self.external_id.as_ref().is_some_and(Secret::is_empty) {
            return Err(Invalid::new(
                key("external_id"),
                format!("the external id is empty{}", Secret::EMPTY_HINT),
            ));
        }
        if let Some(url) = &self.sts_endpoint
            && !is_http_url(url)
        {
            return Err(Invalid::new(
                key("sts_endpoint"),
                format!("`{url}` is not an http:// or https:// URL"),
            ));
        }
        Ok(())
    }

    /// Refuses `service`, for the sinks that sign for their own API.
    pub fn refuse_service(&self, prefix: &str, sink: &str) -> Result<(), Invalid> {
        match self.service {
            Some(_) => Err(Invalid::new(
                format!("{prefix}.service"),
                format!(
                    "the {sink} sink signs for its own API; `service` (es | aoss) belongs to the elasticsearch sink: remove it"
                ),
            )),
            None => Ok(()),
        }
    }

    /// Where the credentials come from, in words, for logs and hints.
    pub fn credentials_source(&self) -> String {
        match (&self.role_arn, &self.profile) {
            (Some(role), Some(p)) => format!("the role {role} (assumed with profile `{p}`)"),
            (Some(role), None) => {
                format!("the role {role} (assumed with the default credentials chain)")
            }
            (None, Some(p)) => format!("the credentials of profile `{p}`"),
            (None, None) => "the credentials of the default chain (environment AWS_ACCESS_KEY_ID, AWS_PROFILE, web identity AWS_ROLE_ARN, container or instance role)".to_string(),
        }
    }

    /// The SDK configuration: region and credentials provider. SDK clients cache
    /// what the provider gives; a caller that signs by itself keeps it in a
    /// [`CachedCredentials`].
    pub async fn sdk_config(&self) -> Result<SdkConfig, AwsError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let base = loader.load().await;
        let region = base.region().cloned().ok_or(AwsError::NoRegion)?;
        // The config STS is called with: the chain's, at `sts_endpoint` if set.
        let sts = match &self.sts_endpoint {
            Some(url) => base.to_builder().endpoint_url(url).build(),
            None => base.clone(),
        };
        let mut config = base.clone();
        if self.sts_endpoint.is_some()
            && let Some(web) = WebIdentity::from_env(&sts)
        {
            config = config
                .into_builder()
                .credentials_provider(SharedCredentialsProvider::new(web))
                .build();
        }
        if let Some(role) = &self.role_arn {
            let chain = match &self.sts_endpoint {
                Some(url) => config.to_builder().endpoint_url(url).build(),
                None => config.clone(),
            };
            let mut assume = AssumeRoleProvider::builder(role)
                .session_name("nagare")
                .region(region)
                .configure(&chain);
            if let Some(id) = &self.external_id {
                assume = assume.external_id(id.expose());
            }
            let provider = assume.build().await;
            config = config
                .into_builder()
                .credentials_provider(SharedCredentialsProvider::new(provider))
                .build();
        }
        Ok(config)
    }
}

fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

/// AssumeRoleWithWebIdentity at a chosen STS endpoint, with the token file and role
/// EKS (IRSA) puts in the environment. The token file is read again at each refresh:
/// the kubelet rotates it.
#[derive(Debug)]
struct WebIdentity {
    sts: aws_sdk_sts::Client,
    token_file: PathBuf,
    role_arn: String,
    session_name: String,
}

impl WebIdentity {
    fn from_env(sts: &SdkConfig) -> Option<WebIdentity> {
        let token_file = std::env::var_os("AWS_WEB_IDENTITY_TOKEN_FILE")?;
        let role_arn = std::env::var("AWS_ROLE_ARN").ok()?;
        let session_name =
            std::env::var("AWS_ROLE_SESSION_NAME").unwrap_or_else(|_| "nagare".to_string());
        Some(WebIdentity {
            sts: aws_sdk_sts::Client::new(sts),
            token_file: token_file.into(),
            role_arn,
            session_name,
        })
    }

    async fn assume(&self) -> Result<Credentials, CredentialsError> {
        let token = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|e| {
                CredentialsError::provider_error(format!(
                    "cannot read the web identity token file {} (AWS_WEB_IDENTITY_TOKEN_FILE): {e}",
                    self.token_file.display()
                ))
            })?;
        let out = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session_name)
            .web_identity_token(token.trim())
            .send()
            .await
            .map_err(|e| {
                CredentialsError::provider_error(format!(
                    "STS AssumeRoleWithWebIdentity for role {} failed: {}",
                    self.role_arn,
                    aws_sdk_sts::error::DisplayErrorContext(&e)
                ))
            })?;
        let c = out.credentials.ok_or_else(|| {
            CredentialsError::provider_error(
                "STS AssumeRoleWithWebIdentity returned no credentials",
            )
        })?;
        let expiry = std::time::SystemTime::try_from(c.expiration).ok();
        Ok(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            expiry,
            WEB_IDENTITY,
        ))
    }
}

impl ProvideCredentials for WebIdentity {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.assume())
    }
}

/// Which source of the credentials chain gave `credentials`, in words, with the
/// role where the environment names it (`var` reads an environment variable): for
/// the log line of a request AWS refused, so that it says what was used, not only
/// where the chain looks.
pub fn credentials_origin(
    credentials: &Credentials,
    var: impl Fn(&str) -> Option<String>,
) -> String {
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    let Some(provider) = provider_name(credentials) else {
        return "a credentials provider that gives no name".to_string();
    };
    match provider.as_str() {
        "EnvironmentVariable" => "the environment (AWS_ACCESS_KEY_ID)".to_string(),
        "ProfileFile" => format!(
            "profile `{}` of the shared config files",
            var("AWS_PROFILE").unwrap_or_else(|| "default".to_string())
        ),
        "WebIdentityToken" | WEB_IDENTITY => format!(
            "web identity (IRSA): the role {} (AWS_ROLE_ARN) with the token file {}",
            var("AWS_ROLE_ARN").unwrap_or_else(|| "named in the profile".to_string()),
            var("AWS_WEB_IDENTITY_TOKEN_FILE")
                .unwrap_or_else(|| "named in the profile".to_string())
        ),
        "EcsContainer" => match var("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            Some(uri) if uri.contains("169.254.170.23") || uri.contains("[fd00:ec2::23]") => {
                format!(
                    "EKS Pod Identity (the agent at {uri}): the role associated with this pod's service account"
                )
            }
            Some(uri) => format!("container credentials from {uri}"),
            None => "the ECS task role (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)".to_string(),
        },
        "IMDSv2" => "the instance's role (IMDSv2)".to_string(),
        "AssumeRoleProvider" => "the role assumed with STS AssumeRole".to_string(),
        other => format!("the AWS SDK's `{other}` credentials provider"),
    }
}

/// The name of the provider that made `credentials`. The SDK keeps it to itself
/// but for their `Debug` form (`Credentials { provider_name: "…", … }`, where the
/// secret is redacted); `the_provider_name_is_read_from_the_sdks_debug_form` pins
/// that form, so an SDK that changes it fails the test, not the log line.
fn provider_name(credentials: &Credentials) -> Option<String> {
    let debug = format!("{credentials:?}");
    let rest = debug.split_once("provider_name: \"")?.1;
    Some(rest.split_once('"')?.0.to_string())
}

/// The provider name of the credentials [`WebIdentity`] gives.
const WEB_IDENTITY: &str = "nagare-web-identity";

/// Credentials from a provider, kept until shortly before they expire: for callers
/// that sign requests themselves (SDK clients have a cache of their own). Refreshes
/// one at a time; a provider that fails leaves nothing cached, so the next request
/// asks again.
#[derive(Debug)]
pub struct CachedCredentials {
    provider: SharedCredentialsProvider,
    current: tokio::sync::Mutex<Option<Credentials>>,
}

impl CachedCredentials {
    /// How long before their expiry credentials are replaced: a request signed with
    /// them must still reach the server in time.
    pub const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

    /// A cache over `provider`.
    pub fn new(provider: SharedCredentialsProvider) -> Self {
        Self {
            provider,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// Credentials valid for at least [`Self::REFRESH_BEFORE`] (or without expiry).
    pub async fn get(&self) -> Result<Credentials, CredentialsError> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref()
            && c.expiry().is_none_or(|at| {
                at.duration_since(SystemTime::now())
                    .is_ok_and(|left| left > Self::REFRESH_BEFORE)
            })
        {
            return Ok(c.clone());
        }
        let fresh = self.provider.provide_credentials().await?;
        *current = Some(fresh.clone());
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> AwsConfig {
        serde_norway::from_str(yaml).expect("parses")
    }

    #[test]
    fn validates_each_key() {
        let cases = [
            ("region: US East", "aws.region"),
            ("profile: ''", "aws.profile"),
            ("role_arn: nagare", "aws.role_arn"),
            ("external_id: x", "aws.external_id"),
            (
                "{role_arn: 'arn:aws:iam::1:role/r', external_id: ''}",
                "aws.external_id",
            ),
            (
                "{role_arn: 'arn:aws:iam::1:role/r', external_id: }",
                "aws.external_id",
            ),
            ("sts_endpoint: localhost:5000", "aws.sts_endpoint"),
        ];
        for (yaml, key) in cases {
            let e = parse(yaml).validate("aws").expect_err(yaml);
            assert_eq!(e.key, key, "{yaml}: {}", e.message);
        }
        parse(
            "{region: us-east-1, profile: p, role_arn: 'arn:aws:iam::1:role/r', external_id: x, sts_endpoint: 'http://127.0.0.1:1'}",
        )
        .validate("aws")
        .expect("valid");
    }

    fn from(provider: &'static str) -> Credentials {
        Credentials::new("ASIAEXAMPLEKEY1234", "secret", None, None, provider)
    }

    #[test]
    fn the_provider_name_is_read_from_the_sdks_debug_form() {
        assert_eq!(
            provider_name(&from("WebIdentityToken")).as_deref(),
            Some("WebIdentityToken")
        );
        assert_eq!(provider_name(&from("")).as_deref(), Some(""));
    }

    #[test]
    fn the_origin_names_the_chains_source_and_its_role() {
        let irsa = [
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/logs-writer"),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
            ),
        ];
        for (provider, vars, words) in [
            (
                "EnvironmentVariable",
                &[][..],
                "the environment (AWS_ACCESS_KEY_ID)",
            ),
            (
                "ProfileFile",
                &[("AWS_PROFILE", "logs")][..],
                "profile `logs` of the shared config files",
            ),
            ("ProfileFile", &[][..], "profile `default`"),
            (
                "WebIdentityToken",
                &irsa[..],
                "web identity (IRSA): the role arn:aws:iam::123456789012:role/logs-writer (AWS_ROLE_ARN) with the token file /var/run/secrets/eks.amazonaws.com/serviceaccount/token",
            ),
            (WEB_IDENTITY, &irsa[..], "role/logs-writer"),
            (
                "EcsContainer",
                &[(
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "http://169.254.170.23/v1/credentials",
                )][..],
                "EKS Pod Identity (the agent at http://169.254.170.23/v1/credentials)",
            ),
            (
                "EcsContainer",
                &[(
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                    "/v2/credentials/abc",
                )][..],
                "the ECS task role",
            ),
            ("IMDSv2", &[][..], "the instance's role (IMDSv2)"),
            ("AssumeRoleProvider", &[][..], "STS AssumeRole"),
            ("SSO", &[][..], "the AWS SDK's `SSO` credentials provider"),
        ] {
            let origin = credentials_origin(&from(provider), |name| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            });
            assert!(origin.contains(words), "{provider}: {origin} says {words}");
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let c = parse("{role_arn: 'arn:aws:iam::1:role/r', external_id: very-secret-id}");
        assert!(!format!("{c:?}").contains("very-secret-id"), "{c:?}");
    }

    #[tokio::test]
    async fn a_region_is_required_and_taken_from_the_block() {
        let c = parse("{region: eu-west-3}");
        let sdk = c.sdk_config().await.expect("a config");
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-3"));
        assert!(sdk.credentials_provider().is_some());
    }

    #[test]
    fn service_is_es_or_aoss_and_other_sinks_refuse_it() {
        assert_eq!(parse("service: aoss").service, Some(AwsService::Aoss));
        assert_eq!(parse("{}").service, None);
        let e = serde_norway::from_str::<AwsConfig>("service: opensearch").expect_err("refused");
        assert!(e.to_string().contains("expected `es` or `aoss`"), "{e}");
        let e = parse("service: es")
            .refuse_service("aws", "cloudwatch_logs")
            .expect_err("refused");
        assert_eq!(e.key, "aws.service");
        parse("region: us-east-1")
            .refuse_service("aws", "cloudwatch_logs")
            .expect("no service, no refusal");
    }

    #[derive(Debug)]
    struct Counting {
        calls: std::sync::atomic::AtomicU32,
        expiry: Option<SystemTime>,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AKID{n}"),
                "secret",
                Some("token".into()),
                self.expiry,
                "test",
            )))
        }
    }

    #[tokio::test]
    async fn cached_credentials_are_kept_until_near_their_expiry() {
        for (expiry, calls) in [
            (None, 1),
            (Some(SystemTime::now() + Duration::from_secs(3600)), 1),
            (Some(SystemTime::now() + Duration::from_secs(60)), 3),
        ] {
            let provider = std::sync::Arc::new(Counting {
                calls: Default::default(),
                expiry,
            });
            let shared: std::sync::Arc<dyn ProvideCredentials> = provider.clone();
            let cache = CachedCredentials::new(SharedCredentialsProvider::from(shared));
            for _ in 0..3 {
                cache.get().await.expect("credentials");
            }
            let got = provider.calls.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(got, calls, "expiry {expiry:?}");
        }
    }
}
