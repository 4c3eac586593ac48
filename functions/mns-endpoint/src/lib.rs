//! mns-endpoint: Alibaba MNS topic pushes to an HTTP endpoint, admitted by the endpoint token and
//! the topic allow-list (`docs/protocols.md` §4.5), verified by RSA signature (§4.2) and stored
//! once per message.

pub mod access;
pub mod body;
pub mod handler;
pub mod signature;

pub use access::TopicAllowList;
pub use handler::MnsHandler;

use access::{ENDPOINT_TOKEN_PARAMETER_VARIABLE, ENDPOINT_TOKEN_VARIABLE};
use hub_core::certs::HttpsFetcher;
use hub_core::clock::SystemClock;
use hub_core::config::{ConfigError, EdgeConfig, Secret, Vars};
use hub_core::setup::Setup;
use hub_core::store::EventWriter;

pub const CERT_URLS_VARIABLE: &str = "MNS_CERT_URL_PREFIXES";

#[derive(Debug, Clone)]
pub struct MnsConfig {
    pub edge: EdgeConfig,
    /// `MNS_ENDPOINT_TOKEN` (or the SSM SecureString named by `MNS_ENDPOINT_TOKEN_PARAMETER`).
    pub endpoint_token: Secret,
    /// `MNS_TOPICS`.
    pub topics: TopicAllowList,
    /// `MNS_CERT_URL_PREFIXES`, else [`signature::DEFAULT_CERT_URLS`]: exact URLs, or prefixes
    /// (entries ending in `/`).
    pub cert_urls: Vec<String>,
    /// `MNS_MAX_AGE_SECS` (default 900; 0 disables).
    pub max_age_secs: u64,
}

impl MnsConfig {
    /// Everything from `vars` but the endpoint token, which [`build`] reads (it may live in SSM).
    pub fn from_vars(
        vars: &impl Vars,
        edge: EdgeConfig,
        endpoint_token: Secret,
    ) -> Result<Self, ConfigError> {
        let topics = TopicAllowList::from_vars(vars)?;
        let mut cert_urls = vars.list(CERT_URLS_VARIABLE);
        if cert_urls.is_empty() {
            cert_urls = signature::DEFAULT_CERT_URLS
                .iter()
                .map(|p| p.to_string())
                .collect();
        }
        for entry in &cert_urls {
            signature::check_allow_list_entry(entry).map_err(|reason| ConfigError::Invalid {
                name: CERT_URLS_VARIABLE,
                reason,
            })?;
        }
        Ok(MnsConfig {
            edge,
            endpoint_token,
            topics,
            cert_urls,
            max_age_secs: vars.parsed_or("MNS_MAX_AGE_SECS", 900)?,
        })
    }
}

/// The function as Lambda and the local server run it.
pub type MnsFunction<S> = MnsHandler<S, SystemClock, HttpsFetcher>;

/// Reads the whole configuration once and builds the handler over `store`. Without an endpoint
/// token or `MNS_TOPICS` the function does not start (§4.5): it would store any account's pushes.
pub async fn build<S: EventWriter>(store: S, setup: &Setup) -> Result<MnsFunction<S>, ConfigError> {
    let token = setup
        .required_secret(ENDPOINT_TOKEN_VARIABLE, ENDPOINT_TOKEN_PARAMETER_VARIABLE)
        .await?;
    let token_variable = if setup.get(ENDPOINT_TOKEN_VARIABLE).is_some() {
        ENDPOINT_TOKEN_VARIABLE
    } else {
        ENDPOINT_TOKEN_PARAMETER_VARIABLE
    };
    access::check_endpoint_token(&token, token_variable)?;
    let config = MnsConfig::from_vars(setup, setup.edge().clone(), token)?;
    Ok(MnsHandler::new(
        store,
        SystemClock,
        setup.certificates()?,
        config,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_core::aws::LazyAws;
    use hub_core::store::memory::MemoryStore;

    const TOPICS: (&str, &str) = ("MNS_TOPICS", "1321669497458181/orders");

    fn token() -> Secret {
        Secret::new("MnsEndpointT0kenForTests")
    }

    #[test]
    fn cert_urls_default_to_the_one_known_certificate_and_must_name_a_host() {
        let config = MnsConfig::from_vars(&[TOPICS], EdgeConfig::default(), token()).unwrap();
        assert_eq!(
            config.cert_urls,
            ["https://mnstest.oss-cn-hangzhou.aliyuncs.com/x509_public_certificate.pem"]
        );
        assert_eq!(config.max_age_secs, 900);
        let custom = MnsConfig::from_vars(
            &[
                TOPICS,
                (
                    "MNS_CERT_URL_PREFIXES",
                    "https://certs.example.com/mns/, https://certs.example.com/a.pem",
                ),
            ],
            EdgeConfig::default(),
            token(),
        )
        .unwrap();
        assert_eq!(
            custom.cert_urls,
            [
                "https://certs.example.com/mns/",
                "https://certs.example.com/a.pem"
            ]
        );
        for bad in [
            "https://certs.example.com",
            "http://certs.example.com/",
            "https:///x/",
            "https://certs.example.com/a.pem?v=1",
            "https://certs.example.com/a*.pem",
            "https://user@certs.example.com/",
        ] {
            let err = MnsConfig::from_vars(
                &[TOPICS, ("MNS_CERT_URL_PREFIXES", bad)],
                EdgeConfig::default(),
                token(),
            )
            .unwrap_err();
            assert_eq!(err.variable(), "MNS_CERT_URL_PREFIXES", "{bad}");
        }
    }

    async fn build_with(vars: &[(&str, &str)]) -> Result<MnsFunction<MemoryStore>, ConfigError> {
        let vars = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        build(
            MemoryStore::new(),
            &Setup::new(vars, LazyAws::lambda()).unwrap(),
        )
        .await
    }

    #[tokio::test]
    async fn the_function_does_not_start_without_its_token_or_topics() {
        let no_token = build_with(&[TOPICS]).await.err().expect("refused");
        assert_eq!(no_token.variable(), "MNS_ENDPOINT_TOKEN");
        assert!(no_token
            .to_string()
            .contains("MNS_ENDPOINT_TOKEN_PARAMETER"));
        let no_topics = build_with(&[("MNS_ENDPOINT_TOKEN", "MnsEndpointT0kenForTests")])
            .await
            .err()
            .expect("refused");
        assert_eq!(no_topics.variable(), "MNS_TOPICS");
        let weak = build_with(&[TOPICS, ("MNS_ENDPOINT_TOKEN", "secret")])
            .await
            .err()
            .expect("refused");
        assert_eq!(weak.variable(), "MNS_ENDPOINT_TOKEN");
        assert!(!weak.to_string().contains("secret"));
        assert!(
            build_with(&[TOPICS, ("MNS_ENDPOINT_TOKEN", "MnsEndpointT0kenForTests")])
                .await
                .is_ok()
        );
    }
}
