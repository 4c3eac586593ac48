//! stack-hook: stack completion hooks in (`POST /stacks`), the latest status out
//! (`GET /stacks/{stack}`), so that nobody has to poll the cloud API.

pub mod cfn;
pub mod handler;
pub mod ros;

pub use handler::{latest_status, resolve_stack, StackHook, StackStore};

use hub_core::config::{ConfigError, EdgeConfig, Secret, Vars};

#[derive(Debug, Clone)]
pub struct StackHookConfig {
    /// `STACK_HOOK_TOKEN`: the shared secret ROS webhooks carry. Unset, ROS webhooks are refused
    /// (403) and only SNS messages from `SNS_TOPIC_ARNS` are accepted.
    pub token: Option<Secret>,
    pub edge: EdgeConfig,
    /// `ROS_DEDUP_WINDOW_SECS` (default 600): how long retries of one ROS notification collapse.
    pub dedup_window_secs: u64,
}

impl StackHookConfig {
    pub const DEFAULT_DEDUP_WINDOW_SECS: u64 = 600;

    pub fn from_vars(vars: &impl Vars) -> Result<Self, ConfigError> {
        let dedup_window_secs =
            vars.parsed_or("ROS_DEDUP_WINDOW_SECS", Self::DEFAULT_DEDUP_WINDOW_SECS)?;
        if dedup_window_secs == 0 {
            return Err(ConfigError::Invalid {
                name: "ROS_DEDUP_WINDOW_SECS",
                reason: "must be positive".into(),
            });
        }
        let token = vars.get("STACK_HOOK_TOKEN").map(Secret::new);
        if token.is_none() && vars.list("SNS_TOPIC_ARNS").is_empty() {
            // Neither sender could be authenticated: refuse to start rather than accept nothing.
            return Err(ConfigError::MissingOneOf(
                "STACK_HOOK_TOKEN",
                "SNS_TOPIC_ARNS",
            ));
        }
        Ok(StackHookConfig {
            token,
            edge: EdgeConfig::from_vars(vars)?,
            dedup_window_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_or_a_topic_is_required() {
        let err = StackHookConfig::from_vars(&[("EVENTS_TABLE", "t")]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::MissingOneOf("STACK_HOOK_TOKEN", "SNS_TOPIC_ARNS")
        );
        assert!(err.to_string().contains("STACK_HOOK_TOKEN"));
        let sns_only =
            StackHookConfig::from_vars(&[("SNS_TOPIC_ARNS", "arn:aws:sns:us-east-1:1:t")]).unwrap();
        assert!(sns_only.token.is_none());
        let config = StackHookConfig::from_vars(&[("STACK_HOOK_TOKEN", "x")]).unwrap();
        assert_eq!(config.dedup_window_secs, 600);
        assert!(StackHookConfig::from_vars(&[
            ("STACK_HOOK_TOKEN", "x"),
            ("ROS_DEDUP_WINDOW_SECS", "0")
        ])
        .is_err());
    }
}
