//! dingtalk-callback: DingTalk business event callbacks (contacts, org, approval events), signed
//! and AES-encrypted, stored once each and answered with the encrypted "success".

pub mod crypto;
pub mod events;
pub mod handler;

pub use crypto::DingTalkCrypto;
pub use handler::DingTalkHandler;

use hub_core::clock::SystemClock;
use hub_core::config::{ConfigError, Secret, Vars};
use hub_core::setup::Setup;
use hub_core::store::EventWriter;
use serde::Deserialize;

const TOKEN: &str = "DINGTALK_TOKEN";
const AES_KEY: &str = "DINGTALK_AES_KEY";
const OWNER_KEY: &str = "DINGTALK_OWNER_KEY";
const PARAMETER: &str = "DINGTALK_SECRETS_PARAMETER";

/// The three secrets, from variables or from the SSM parameter's JSON.
#[derive(Deserialize)]
pub struct RawSecrets {
    pub token: String,
    pub aes_key: String,
    pub owner_key: String,
}

/// Where the secrets come from.
pub enum SecretsSource {
    Direct(RawSecrets),
    /// The name of an SSM SecureString parameter holding `{"token","aes_key","owner_key"}`.
    Parameter(String),
}

impl SecretsSource {
    /// The three variables when any is set (then all are required), else the parameter name.
    pub fn from_vars(vars: &impl Vars) -> Result<Self, ConfigError> {
        if [TOKEN, AES_KEY, OWNER_KEY]
            .iter()
            .any(|name| vars.get(name).is_some())
        {
            return Ok(SecretsSource::Direct(RawSecrets {
                token: vars.required(TOKEN)?,
                aes_key: vars.required(AES_KEY)?,
                owner_key: vars.required(OWNER_KEY)?,
            }));
        }
        vars.get(PARAMETER)
            .map(SecretsSource::Parameter)
            .ok_or(ConfigError::MissingOneOf(
                "DINGTALK_TOKEN, DINGTALK_AES_KEY and DINGTALK_OWNER_KEY",
                "DINGTALK_SECRETS_PARAMETER",
            ))
    }
}

/// Checks the secrets and prepares the cipher. `origin` names the variable to blame.
pub fn crypto_from(raw: RawSecrets, origin: Origin) -> Result<DingTalkCrypto, ConfigError> {
    let (token_var, key_var, owner_var) = match origin {
        Origin::Variables => (TOKEN, AES_KEY, OWNER_KEY),
        Origin::Parameter => (PARAMETER, PARAMETER, PARAMETER),
    };
    let invalid = |name: &'static str, reason: &str| ConfigError::Invalid {
        name,
        reason: reason.to_owned(),
    };
    if raw.token.trim().is_empty() {
        return Err(invalid(token_var, "token is empty"));
    }
    if raw.owner_key.trim().is_empty() {
        return Err(invalid(owner_var, "owner key is empty"));
    }
    DingTalkCrypto::new(Secret::new(raw.token), raw.aes_key.trim(), raw.owner_key)
        .map_err(|e| invalid(key_var, &format!("the AES key {e}")))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Variables,
    Parameter,
}

/// The function as Lambda and the local server run it.
pub type DingTalkFunction<S> = DingTalkHandler<S, SystemClock>;

/// Reads the secrets once, at start (never per request: DingTalk's deadline is 1.5 s), from the
/// variables or the SSM parameter, and builds the handler over `store`.
pub async fn build<S: EventWriter>(
    store: S,
    setup: &Setup,
) -> Result<DingTalkFunction<S>, ConfigError> {
    let crypto = match SecretsSource::from_vars(setup)? {
        SecretsSource::Direct(raw) => crypto_from(raw, Origin::Variables)?,
        SecretsSource::Parameter(name) => {
            let text = setup.parameter(PARAMETER, &name).await?;
            let raw = serde_json::from_str(&text).map_err(|_| ConfigError::Invalid {
                name: PARAMETER,
                reason: r#"the parameter is not {"token","aes_key","owner_key"} JSON"#.into(),
            })?;
            crypto_from(raw, Origin::Parameter)?
        }
    };
    Ok(DingTalkHandler::new(
        store,
        SystemClock,
        crypto,
        setup.edge().clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "o1w0aum42yaptlz8alnhwikjd3jenzt9cb9wmzptgus";

    #[test]
    fn variables_all_or_nothing() {
        let err = SecretsSource::from_vars(&[(TOKEN, "t")]).err().unwrap();
        assert_eq!(err, ConfigError::Missing(AES_KEY));
        let err = SecretsSource::from_vars(&[("X", "y")]).err().unwrap();
        assert!(
            err.to_string().contains("DINGTALK_SECRETS_PARAMETER"),
            "{err}"
        );
        assert!(matches!(
            SecretsSource::from_vars(&[(PARAMETER, "/callback-hub/dingtalk")]).unwrap(),
            SecretsSource::Parameter(name) if name == "/callback-hub/dingtalk"
        ));
    }

    #[test]
    fn invalid_keys_stop_the_start_naming_the_variable() {
        let raw = |key: &str| RawSecrets {
            token: "t".into(),
            aes_key: key.into(),
            owner_key: "o".into(),
        };
        let err = crypto_from(raw("too-short"), Origin::Variables).unwrap_err();
        assert_eq!(err.variable(), AES_KEY);
        assert!(
            !err.to_string().contains("too-short"),
            "never echo a secret: {err}"
        );
        let err = crypto_from(raw("too-short"), Origin::Parameter).unwrap_err();
        assert_eq!(err.variable(), PARAMETER);
        assert!(crypto_from(raw(KEY), Origin::Variables).is_ok());
        let empty_token = RawSecrets {
            token: " ".into(),
            aes_key: KEY.into(),
            owner_key: "o".into(),
        };
        assert_eq!(
            crypto_from(empty_token, Origin::Variables)
                .unwrap_err()
                .variable(),
            TOKEN
        );
    }
}
