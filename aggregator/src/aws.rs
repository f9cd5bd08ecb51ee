//! The `aws:` block of the sinks that call AWS: which region, which credentials.
//!
//! ```yaml
//! aws:
//!   region: us-east-1                 # else AWS_REGION / the profile's region
//!   profile: logging                  # else AWS_PROFILE / `default`
//!   role_arn: arn:aws:iam::123456789012:role/nagare   # assumed on top of the chain
//!   external_id: ${EXTERNAL_ID}       # with role_arn, when the role's trust asks for one
//!   sts_endpoint: http://127.0.0.1:5000                 # STS endpoint override
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
    /// The external id the role's trust policy asks for; only with `role_arn`.
    #[serde(default)]
    pub external_id: Option<Secret>,
    /// An STS endpoint (`https://sts.us-east-1.amazonaws.com`, a VPC endpoint, an
    /// emulator) for AssumeRole and AssumeRoleWithWebIdentity.
    #[serde(default)]
    pub sts_endpoint: Option<String>,
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

    /// The SDK configuration: region and credentials provider (with its cache).
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
            "nagare-web-identity",
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
}
