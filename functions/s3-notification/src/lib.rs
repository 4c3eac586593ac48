//! s3-notification: S3 object notifications in (`POST /s3`) from VK Cloud webhooks and from AWS
//! S3 through SNS, one stored event per record, and an optional ordered mirror to a backup bucket.

pub mod handler;
pub mod mirror;
pub mod records;
pub mod transfer;
pub mod vk;

pub use handler::S3Handler;
pub use mirror::Mirror;
pub use transfer::{S3Transfer, SourceAccess};

use hub_core::config::{ConfigError, EdgeConfig, Secret, Vars};
use std::time::Duration;

/// The VK Cloud webhook: enabled by `S3_WEBHOOK_TOKEN`.
#[derive(Debug, Clone)]
pub struct VkConfig {
    /// `S3_WEBHOOK_TOKEN`: VK deliveries carry it (query `token` or `X-Callback-Token`).
    pub token: Secret,
    /// `S3_WEBHOOK_URL`: the URL exactly as registered with VK, which the handshake signs. Unset,
    /// handshakes are refused (records still work, for a subscription made earlier). Kept as a
    /// secret: the registered URL carries the token.
    pub webhook_url: Option<Secret>,
}

/// Another S3 API that source buckets live on (VK Cloud, say).
#[derive(Debug, Clone)]
pub struct ForeignSource {
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// `MIRROR_SOURCE_REGION`, default `us-east-1` (the signing region; VK uses `ru-msk`).
    pub region: String,
}

#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// `MIRROR_BUCKET`.
    pub bucket: String,
    /// `MIRROR_SOURCE_ENDPOINT` and its credentials; `None` reads sources with the function's role.
    pub source: Option<ForeignSource>,
    /// `MIRROR_PART_SIZE_MIB` (default 8, at least 5): the part size of multipart copies, and so
    /// the most memory a streamed copy holds.
    pub part_size: u64,
}

#[derive(Debug, Clone)]
pub struct S3Config {
    pub edge: EdgeConfig,
    pub vk: Option<VkConfig>,
    pub mirror: Option<MirrorConfig>,
}

impl S3Config {
    pub fn from_vars(vars: &impl Vars) -> Result<Self, ConfigError> {
        let vk = vars.get("S3_WEBHOOK_TOKEN").map(|token| VkConfig {
            token: Secret::new(token),
            webhook_url: vars.get("S3_WEBHOOK_URL").map(Secret::new),
        });
        if let Some(url) = vk
            .as_ref()
            .and_then(|vk| vk.webhook_url.as_ref())
            .map(Secret::expose)
        {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::Invalid {
                    name: "S3_WEBHOOK_URL",
                    reason: "must be the http(s) URL registered with VK Cloud".into(),
                });
            }
        }
        if vk.is_none() && vars.list("SNS_TOPIC_ARNS").is_empty() {
            // Neither sender could be authenticated: refuse to start rather than accept nothing.
            return Err(ConfigError::MissingOneOf(
                "S3_WEBHOOK_TOKEN",
                "SNS_TOPIC_ARNS",
            ));
        }
        Ok(S3Config {
            edge: EdgeConfig::from_vars(vars)?,
            vk,
            mirror: mirror_from_vars(vars)?,
        })
    }
}

fn mirror_from_vars(vars: &impl Vars) -> Result<Option<MirrorConfig>, ConfigError> {
    let Some(bucket) = vars.get("MIRROR_BUCKET") else {
        return Ok(None);
    };
    let part_mib: u64 = vars.parsed_or("MIRROR_PART_SIZE_MIB", 8)?;
    if !(5..=512).contains(&part_mib) {
        return Err(ConfigError::Invalid {
            name: "MIRROR_PART_SIZE_MIB",
            reason: "must be 5..=512".into(),
        });
    }
    let source = match vars.get("MIRROR_SOURCE_ENDPOINT") {
        None => None,
        Some(endpoint) => Some(ForeignSource {
            endpoint,
            access_key_id: vars.required("MIRROR_SOURCE_ACCESS_KEY_ID")?,
            secret_access_key: Secret::new(vars.required("MIRROR_SOURCE_SECRET_ACCESS_KEY")?),
            region: vars
                .get("MIRROR_SOURCE_REGION")
                .unwrap_or_else(|| "us-east-1".into()),
        }),
    };
    Ok(Some(MirrorConfig {
        bucket,
        source,
        part_size: part_mib * 1024 * 1024,
    }))
}

/// S3 clients get their own timeouts: copies of large objects outlast the store's tight ones.
fn s3_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .read_timeout(Duration::from_secs(30))
        .build()
}

/// The mirror transfer, built once at start. Path-style addressing is used whenever an endpoint
/// is overridden (`AWS_ENDPOINT_URL[_S3]`: a local S3 API; or the foreign source):
/// S3-compatible services expect it.
pub fn transfer_from(
    config: &MirrorConfig,
    sdk: &aws_config::SdkConfig,
    vars: &impl Vars,
) -> S3Transfer {
    let endpoint_overridden =
        vars.get("AWS_ENDPOINT_URL").is_some() || vars.get("AWS_ENDPOINT_URL_S3").is_some();
    let mirror = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .timeout_config(s3_timeouts())
            .force_path_style(endpoint_overridden)
            .build(),
    );
    let source = match &config.source {
        None => SourceAccess::SameAccount,
        Some(foreign) => {
            let credentials = aws_sdk_s3::config::Credentials::new(
                &foreign.access_key_id,
                foreign.secret_access_key.expose(),
                None,
                None,
                "MIRROR_SOURCE",
            );
            let conf = aws_sdk_s3::config::Builder::from(sdk)
                .endpoint_url(&foreign.endpoint)
                .region(aws_sdk_s3::config::Region::new(foreign.region.clone()))
                .credentials_provider(credentials)
                .force_path_style(true)
                .timeout_config(s3_timeouts())
                // S3-compatible services reject the newer default checksum headers.
                .request_checksum_calculation(
                    aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
                )
                .response_checksum_validation(
                    aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
                )
                .build();
            SourceAccess::Foreign(aws_sdk_s3::Client::from_conf(conf))
        }
    };
    S3Transfer::new(mirror, &config.bucket, source).with_part_size(config.part_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_or_a_topic_is_required() {
        let err = S3Config::from_vars(&[("EVENTS_TABLE", "t")]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::MissingOneOf("S3_WEBHOOK_TOKEN", "SNS_TOPIC_ARNS")
        );
        let sns = S3Config::from_vars(&[("SNS_TOPIC_ARNS", "arn:aws:sns:us-east-1:1:t")]).unwrap();
        assert!(sns.vk.is_none() && sns.mirror.is_none());
        let vk = S3Config::from_vars(&[
            ("S3_WEBHOOK_TOKEN", "secret-token"),
            (
                "S3_WEBHOOK_URL",
                "https://hooks.example.com/s3?token=secret-token",
            ),
        ])
        .unwrap();
        let vk = vk.vk.unwrap();
        assert_eq!(vk.token.expose(), "secret-token");
        assert!(!format!("{vk:?}").contains("secret-token"));
        let bad_url =
            S3Config::from_vars(&[("S3_WEBHOOK_TOKEN", "t"), ("S3_WEBHOOK_URL", "hooks")]);
        assert_eq!(bad_url.unwrap_err().variable(), "S3_WEBHOOK_URL");
    }

    #[test]
    fn a_foreign_source_needs_its_credentials() {
        let base = [("S3_WEBHOOK_TOKEN", "t"), ("MIRROR_BUCKET", "backup")];
        let same = S3Config::from_vars(&base).unwrap().mirror.unwrap();
        assert_eq!((same.bucket.as_str(), same.part_size), ("backup", 8 << 20));
        assert!(same.source.is_none());
        let missing = S3Config::from_vars(&[
            base[0],
            base[1],
            ("MIRROR_SOURCE_ENDPOINT", "https://hb.ru-msk.vkcs.cloud"),
            ("MIRROR_SOURCE_ACCESS_KEY_ID", "AKID"),
        ])
        .unwrap_err();
        assert_eq!(
            missing,
            ConfigError::Missing("MIRROR_SOURCE_SECRET_ACCESS_KEY")
        );
        let foreign = S3Config::from_vars(&[
            base[0],
            base[1],
            ("MIRROR_SOURCE_ENDPOINT", "https://hb.ru-msk.vkcs.cloud"),
            ("MIRROR_SOURCE_ACCESS_KEY_ID", "AKID"),
            ("MIRROR_SOURCE_SECRET_ACCESS_KEY", "SECRET"),
            ("MIRROR_SOURCE_REGION", "ru-msk"),
            ("MIRROR_PART_SIZE_MIB", "16"),
        ])
        .unwrap()
        .mirror
        .unwrap();
        assert_eq!(foreign.part_size, 16 << 20);
        assert_eq!(foreign.source.unwrap().region, "ru-msk");
        let tiny = S3Config::from_vars(&[base[0], base[1], ("MIRROR_PART_SIZE_MIB", "1")]);
        assert_eq!(tiny.unwrap_err().variable(), "MIRROR_PART_SIZE_MIB");
    }
}
