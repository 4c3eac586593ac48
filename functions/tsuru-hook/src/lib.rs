//! tsuru-hook: Tsuru event webhooks in (`POST /tsuru`, also PUT and PATCH). Tsuru sends each
//! finished event once, unsigned, as its default JSON body (`docs/protocols.md` §5.3, §5.4);
//! a static token authenticates it, and each event is stored once per `UniqueID`.

pub mod access;
pub mod body;
pub mod handler;

pub use access::{TOKEN_PARAMETER_VARIABLE, TOKEN_VARIABLE};
pub use handler::TsuruHook;

use hub_core::clock::SystemClock;
use hub_core::config::{ConfigError, EdgeConfig, Secret, Vars};
use hub_core::setup::Setup;
use hub_core::store::EventWriter;

#[derive(Debug, Clone)]
pub struct TsuruConfig {
    pub edge: EdgeConfig,
    /// `TSURU_WEBHOOK_TOKEN` (or the SSM SecureString named by `TSURU_WEBHOOK_TOKEN_PARAMETER`).
    pub token: Secret,
}

impl TsuruConfig {
    /// Checks the token's shape; `variable` is where it came from, for the error.
    pub fn new(
        edge: EdgeConfig,
        token: Secret,
        variable: &'static str,
    ) -> Result<Self, ConfigError> {
        access::check_token(&token, variable)?;
        Ok(TsuruConfig { edge, token })
    }
}

/// The function as Lambda and the local server run it.
pub type TsuruFunction<S> = TsuruHook<S, SystemClock>;

/// Reads the whole configuration once and builds the handler over `store`. Without a token the
/// function does not start: Tsuru signs nothing (§5.3), so it would store anyone's events.
pub async fn build<S: EventWriter>(
    store: S,
    setup: &Setup,
) -> Result<TsuruFunction<S>, ConfigError> {
    let token = setup
        .required_secret(TOKEN_VARIABLE, TOKEN_PARAMETER_VARIABLE)
        .await?;
    let variable = if setup.get(TOKEN_VARIABLE).is_some() {
        TOKEN_VARIABLE
    } else {
        TOKEN_PARAMETER_VARIABLE
    };
    let config = TsuruConfig::new(setup.edge().clone(), token, variable)?;
    Ok(TsuruHook::new(store, SystemClock, config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_core::aws::LazyAws;
    use hub_core::store::memory::MemoryStore;

    async fn build_with(vars: &[(&str, &str)]) -> Result<TsuruFunction<MemoryStore>, ConfigError> {
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
    async fn the_function_does_not_start_without_a_strong_token() {
        let none = build_with(&[]).await.err().expect("refused");
        assert_eq!(
            none,
            ConfigError::MissingOneOf("TSURU_WEBHOOK_TOKEN", "TSURU_WEBHOOK_TOKEN_PARAMETER")
        );
        let blank = build_with(&[("TSURU_WEBHOOK_TOKEN", "  ")]).await.err();
        assert_eq!(blank.expect("refused").variable(), "TSURU_WEBHOOK_TOKEN");
        let weak = build_with(&[("TSURU_WEBHOOK_TOKEN", "secret")])
            .await
            .err()
            .expect("refused");
        assert_eq!(weak.variable(), "TSURU_WEBHOOK_TOKEN");
        assert!(!weak.to_string().contains("secret"));
        assert!(
            build_with(&[("TSURU_WEBHOOK_TOKEN", "local-tsuru-webhook-token-0001")])
                .await
                .is_ok()
        );
    }
}
