//! What a function's constructor is given: its variables, the settings every function shares,
//! the AWS SDK (made on first use), the process's one certificate cache, and secrets that may
//! live in SSM Parameter Store. Lambda (`crate::lambda::run`) and the local server build the
//! same `Setup` and call the same constructors with it.

use crate::aws::LazyAws;
use crate::certs::{pinned_from_vars, CertificateCache, HttpsFetcher};
use crate::config::{ConfigError, EdgeConfig, Secret, Vars};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The certificate cache every verifier of a process shares.
pub type SharedCertificates = Arc<CertificateCache<HttpsFetcher>>;

pub struct Setup {
    vars: HashMap<String, String>,
    edge: EdgeConfig,
    aws: LazyAws,
    certificates: OnceLock<Result<SharedCertificates, ConfigError>>,
}

impl Setup {
    /// Reads the shared settings (`MAX_BODY_BYTES`, `EVENT_TTL_DAYS`) once, for every function.
    pub fn new(vars: HashMap<String, String>, aws: LazyAws) -> Result<Self, ConfigError> {
        let edge = EdgeConfig::from_vars(&vars)?;
        Ok(Setup {
            vars,
            edge,
            aws,
            certificates: OnceLock::new(),
        })
    }

    /// The process environment, as Lambda gives it.
    pub fn from_process(aws: LazyAws) -> Result<Self, ConfigError> {
        Setup::new(std::env::vars().collect(), aws)
    }

    pub fn edge(&self) -> &EdgeConfig {
        &self.edge
    }

    pub async fn sdk(&self) -> Result<&aws_config::SdkConfig, ConfigError> {
        self.aws.config().await
    }

    /// The certificate cache: `PINNED_CERTS_FILE` parsed once, the first time a verifier asks,
    /// and shared by every verifier of the process.
    pub fn certificates(&self) -> Result<SharedCertificates, ConfigError> {
        self.certificates
            .get_or_init(|| {
                let pinned = pinned_from_vars(&self.vars)?;
                Ok(Arc::new(CertificateCache::new(HttpsFetcher::new(), pinned)))
            })
            .clone()
    }

    /// A secret given either directly in `variable`, or as the name of an SSM SecureString
    /// parameter in `parameter_variable` (read once, here, at start). `None` when neither is set.
    pub async fn secret(
        &self,
        variable: &'static str,
        parameter_variable: &'static str,
    ) -> Result<Option<Secret>, ConfigError> {
        if let Some(value) = self.get(variable) {
            return Ok(Some(Secret::new(value)));
        }
        match self.get(parameter_variable) {
            None => Ok(None),
            Some(name) => self
                .parameter(parameter_variable, &name)
                .await
                .map(|value| Some(Secret::new(value))),
        }
    }

    /// Like [`Setup::secret`], for a secret without which the function must not start.
    pub async fn required_secret(
        &self,
        variable: &'static str,
        parameter_variable: &'static str,
    ) -> Result<Secret, ConfigError> {
        self.secret(variable, parameter_variable)
            .await?
            .ok_or(ConfigError::MissingOneOf(variable, parameter_variable))
    }

    /// The bearer token of the user-facing routes (`API_TOKEN` or `API_TOKEN_PARAMETER`); `None`
    /// keeps them closed.
    pub async fn api_token(&self) -> Result<Option<Secret>, ConfigError> {
        self.secret(
            crate::auth::API_TOKEN_VARIABLE,
            crate::auth::API_TOKEN_PARAMETER_VARIABLE,
        )
        .await
    }

    /// The decrypted value of an SSM parameter. Failures name `variable`, never the value.
    pub async fn parameter(
        &self,
        variable: &'static str,
        name: &str,
    ) -> Result<String, ConfigError> {
        let client = aws_sdk_ssm::Client::new(self.sdk().await?);
        let output = client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| {
                let code = aws_sdk_ssm::error::ProvideErrorMetadata::code(&e)
                    .unwrap_or("unreachable")
                    .to_owned();
                ConfigError::Invalid {
                    name: variable,
                    reason: format!("cannot read the parameter ({code})"),
                }
            })?;
        output
            .parameter()
            .and_then(|p| p.value())
            .filter(|value| !value.trim().is_empty())
            .map(str::to_owned)
            .ok_or(ConfigError::Invalid {
                name: variable,
                reason: "the parameter is empty".into(),
            })
    }
}

impl Vars for Setup {
    fn get(&self, name: &str) -> Option<String> {
        Vars::get(&self.vars, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(pairs: &[(&str, &str)]) -> Result<Setup, ConfigError> {
        let vars = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Setup::new(vars, LazyAws::lambda())
    }

    #[tokio::test]
    async fn a_direct_secret_wins_and_no_secret_is_none() {
        let with = setup(&[("TOKEN", "s3cr3t"), ("TOKEN_PARAMETER", "/x")]).unwrap();
        let secret = with.secret("TOKEN", "TOKEN_PARAMETER").await.unwrap();
        assert!(secret.unwrap().matches(b"s3cr3t"));
        let without = setup(&[]).unwrap();
        assert!(without
            .secret("TOKEN", "TOKEN_PARAMETER")
            .await
            .unwrap()
            .is_none());
        let err = without
            .required_secret("TOKEN", "TOKEN_PARAMETER")
            .await
            .unwrap_err();
        assert_eq!(err, ConfigError::MissingOneOf("TOKEN", "TOKEN_PARAMETER"));
    }

    #[tokio::test]
    async fn an_unreadable_parameter_fails_closed_naming_the_variable() {
        // No region: the SDK cannot even be configured, which must stop the start.
        let with = setup(&[("TOKEN_PARAMETER", "/callback-hub/token")]).unwrap();
        let err = with.secret("TOKEN", "TOKEN_PARAMETER").await.unwrap_err();
        assert!(
            ["TOKEN_PARAMETER", "AWS_REGION"].contains(&err.variable()),
            "{err}"
        );
    }

    #[test]
    fn shared_settings_are_read_once_and_checked() {
        assert_eq!(setup(&[]).unwrap().edge(), &EdgeConfig::default());
        let err = setup(&[("MAX_BODY_BYTES", "many")]).err().unwrap();
        assert_eq!(err.variable(), "MAX_BODY_BYTES");
    }

    #[test]
    fn the_certificate_cache_is_built_once() {
        let s = setup(&[]).unwrap();
        let a = s.certificates().unwrap();
        let b = s.certificates().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let bad = setup(&[("PINNED_CERTS_FILE", "/nonexistent/pins.json")]).unwrap();
        assert_eq!(
            bad.certificates().err().unwrap().variable(),
            "PINNED_CERTS_FILE"
        );
    }
}
