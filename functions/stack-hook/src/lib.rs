//! stack-hook: stack completion hooks in (`POST /stacks`), the latest status out
//! (`GET /stacks/{stack}`), so that nobody has to poll the cloud API.

pub mod cfn;
pub mod handler;
pub mod heads;
pub mod lifecycle;
pub mod receive;
pub mod ros;
pub mod status;

pub use handler::{StackHook, StackStore};
pub use status::{latest_event, latest_status, stack_status};

use hub_core::auth::API_TOKEN_VARIABLE;
use hub_core::certs::HttpsFetcher;
use hub_core::clock::SystemClock;
use hub_core::config::{ConfigError, EdgeConfig, Secret, Vars};
use hub_core::setup::Setup;
use sns::SnsVerifier;

/// `STACK_HOOK_TOKEN` (or `STACK_HOOK_TOKEN_PARAMETER`, an SSM SecureString name).
pub const TOKEN_VARIABLE: &str = "STACK_HOOK_TOKEN";
pub const TOKEN_PARAMETER_VARIABLE: &str = "STACK_HOOK_TOKEN_PARAMETER";

#[derive(Debug, Clone)]
pub struct StackHookConfig {
    /// The shared secret ROS webhooks carry. Unset, ROS webhooks are refused (403) and only SNS
    /// messages from `SNS_TOPIC_ARNS` are accepted.
    pub token: Option<Secret>,
    /// The bearer token of `GET /stacks/{stack}` (`API_TOKEN` or `API_TOKEN_PARAMETER`). Unset,
    /// that route answers 503 naming the variable and `POST /stacks` works as before.
    pub api_token: Option<Secret>,
    pub edge: EdgeConfig,
    /// `ROS_DEDUP_WINDOW_SECS` (default 600): how long retries of one ROS notification collapse.
    pub dedup_window_secs: u64,
}

impl StackHookConfig {
    pub const DEFAULT_DEDUP_WINDOW_SECS: u64 = 600;

    /// Every setting from the variables alone, the token included (tests).
    pub fn from_vars(vars: &impl Vars) -> Result<Self, ConfigError> {
        let token = vars.get(TOKEN_VARIABLE).map(Secret::new);
        let api_token = vars.get(API_TOKEN_VARIABLE).map(Secret::new);
        StackHookConfig::new(vars, EdgeConfig::from_vars(vars)?, token, api_token)
    }

    /// The configuration besides the tokens, which the caller has already read (they may come
    /// from SSM); `token` or `SNS_TOPIC_ARNS` is required, `api_token` is not.
    pub fn new(
        vars: &impl Vars,
        edge: EdgeConfig,
        token: Option<Secret>,
        api_token: Option<Secret>,
    ) -> Result<Self, ConfigError> {
        let dedup_window_secs =
            vars.parsed_or("ROS_DEDUP_WINDOW_SECS", Self::DEFAULT_DEDUP_WINDOW_SECS)?;
        if dedup_window_secs == 0 {
            return Err(ConfigError::Invalid {
                name: "ROS_DEDUP_WINDOW_SECS",
                reason: "must be positive".into(),
            });
        }
        sns::require_token_or_topics(token.as_ref(), TOKEN_VARIABLE, vars)?;
        Ok(StackHookConfig {
            token,
            api_token,
            edge,
            dedup_window_secs,
        })
    }
}

/// The function as Lambda and the local server run it.
pub type StackHookFunction<S> = StackHook<S, SystemClock, HttpsFetcher>;

/// Reads the whole configuration once and builds the handler over `store`.
pub async fn build<S: StackStore>(
    store: S,
    setup: &Setup,
) -> Result<StackHookFunction<S>, ConfigError> {
    let token = setup
        .secret(TOKEN_VARIABLE, TOKEN_PARAMETER_VARIABLE)
        .await?;
    // Read once, here: a missing API token closes GET /stacks/{stack}, never POST /stacks.
    let api_token = setup.api_token().await?;
    let config = StackHookConfig::new(setup, setup.edge().clone(), token, api_token)?;
    let sns = SnsVerifier::from_vars(setup, setup.certificates()?);
    Ok(StackHook::new(store, SystemClock, config, sns))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<StackHookConfig, ConfigError> {
        let vars: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let token = vars.get(TOKEN_VARIABLE).map(Secret::new);
        StackHookConfig::new(&vars, EdgeConfig::default(), token, None)
    }

    #[test]
    fn a_token_or_a_topic_is_required() {
        let err = config(&[("EVENTS_TABLE", "t")]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::MissingOneOf("STACK_HOOK_TOKEN", "SNS_TOPIC_ARNS")
        );
        assert!(err.to_string().contains("STACK_HOOK_TOKEN"));
        let sns_only = config(&[("SNS_TOPIC_ARNS", "arn:aws:sns:us-east-1:1:t")]).unwrap();
        assert!(sns_only.token.is_none());
        let with_token = config(&[("STACK_HOOK_TOKEN", "x")]).unwrap();
        assert_eq!(with_token.dedup_window_secs, 600);
        assert!(config(&[("STACK_HOOK_TOKEN", "x"), ("ROS_DEDUP_WINDOW_SECS", "0")]).is_err());
    }
}
