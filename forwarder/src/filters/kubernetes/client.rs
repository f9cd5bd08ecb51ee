//! The API client: from an explicit server URL (with the service account's token and
//! CA), a kubeconfig file, or the in-cluster environment.

use kube::config::{KubeConfigOptions, Kubeconfig};

use super::config::{ApiMode, KubernetesConfig};
use super::filter::KubernetesError;

/// The client the config asks for; `None` when the API is not to be used (mode
/// `disabled`, or `auto` outside a cluster with nothing configured).
pub async fn client(config: &KubernetesConfig) -> Result<Option<kube::Client>, KubernetesError> {
    if config.api == ApiMode::Disabled {
        return Ok(None);
    }
    let kube_config = if let Some(url) = &config.api_server {
        let uri = url.parse().map_err(|e| KubernetesError::Config {
            what: format!("`api_server` `{url}` is not a valid URL: {e}"),
        })?;
        let mut c = kube::Config::new(uri);
        if config.token_file.exists() {
            c.auth_info.token_file = Some(config.token_file.display().to_string());
        }
        if url.starts_with("https://") && config.ca_file.exists() {
            c.root_cert_file = Some(config.ca_file.clone());
        }
        c
    } else if let Some(path) = &config.kubeconfig {
        let file = Kubeconfig::read_from(path).map_err(|e| KubernetesError::Config {
            what: format!("cannot read the kubeconfig {}: {e}", path.display()),
        })?;
        kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
            .await
            .map_err(|e| KubernetesError::Config {
                what: format!("the kubeconfig {} is not usable: {e}", path.display()),
            })?
    } else if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        kube::Config::incluster().map_err(|e| KubernetesError::Config {
            what: format!(
                "cannot read the in-cluster service account (token and CA under /var/run/secrets/kubernetes.io/serviceaccount): {e}"
            ),
        })?
    } else if config.api == ApiMode::Enabled {
        return Err(KubernetesError::Config {
            what: "`api: enabled` but not running in a cluster (KUBERNETES_SERVICE_HOST is not set) and neither `api_server` nor `kubeconfig` is given".into(),
        });
    } else {
        return Ok(None);
    };
    kube::Client::try_from(kube_config)
        .map(Some)
        .map_err(|e| KubernetesError::Config {
            what: format!("cannot build the Kubernetes API client: {e}"),
        })
}
