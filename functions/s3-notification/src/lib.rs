//! s3-notification: S3 object notifications in (`POST /s3`) from VK Cloud webhooks and from AWS
//! S3 through SNS, one stored event per record, and an optional ordered mirror to a backup bucket.

pub mod handler;
pub mod ledger;
pub mod mirror;
pub mod records;
pub mod transfer;
pub mod vk;

pub use handler::S3Handler;
pub use mirror::{Mirror, Origin};
pub use transfer::{S3Transfer, SourceAccess};

use hub_core::certs::HttpsFetcher;
use hub_core::clock::SystemClock;
use hub_core::config::{ConfigError, EdgeConfig, Secret, Vars};
use hub_core::setup::Setup;
use hub_core::store::EventWriter;
use ledger::LedgerSource;
use sns::SnsVerifier;
use std::time::Duration;

/// The secrets of the function, each given directly or as an SSM SecureString parameter name
/// (`<VARIABLE>_PARAMETER`).
#[derive(Debug, Clone, Default)]
pub struct S3Secrets {
    /// `S3_WEBHOOK_TOKEN`
    pub token: Option<Secret>,
    /// `S3_WEBHOOK_URL`: it carries the token.
    pub webhook_url: Option<Secret>,
    /// `MIRROR_SOURCE_SECRET_ACCESS_KEY`
    pub source_secret_access_key: Option<Secret>,
}

const TOKEN: (&str, &str) = ("S3_WEBHOOK_TOKEN", "S3_WEBHOOK_TOKEN_PARAMETER");
const WEBHOOK_URL: (&str, &str) = ("S3_WEBHOOK_URL", "S3_WEBHOOK_URL_PARAMETER");
const SOURCE_SECRET: (&str, &str) = (
    "MIRROR_SOURCE_SECRET_ACCESS_KEY",
    "MIRROR_SOURCE_SECRET_ACCESS_KEY_PARAMETER",
);

impl S3Secrets {
    /// From the variables only (tests, and the values that are not secret parameters).
    pub fn from_vars(vars: &impl Vars) -> Self {
        let get = |(name, _): (&str, &str)| vars.get(name).map(Secret::new);
        S3Secrets {
            token: get(TOKEN),
            webhook_url: get(WEBHOOK_URL),
            source_secret_access_key: get(SOURCE_SECRET),
        }
    }

    /// From the variables or SSM, read once at start.
    pub async fn from_setup(setup: &Setup) -> Result<Self, ConfigError> {
        Ok(S3Secrets {
            token: setup.secret(TOKEN.0, TOKEN.1).await?,
            webhook_url: setup.secret(WEBHOOK_URL.0, WEBHOOK_URL.1).await?,
            source_secret_access_key: setup.secret(SOURCE_SECRET.0, SOURCE_SECRET.1).await?,
        })
    }
}

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
    /// `MIRROR_SOURCE_BUCKETS` (required with a mirror): the only buckets mirrored. Records of
    /// other buckets are stored, never copied: a sender (a VK token holder, say) must not be
    /// able to have any bucket the credentials can read copied into the backup.
    pub sources: Vec<String>,
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
    /// Every setting from the variables alone (tests).
    pub fn from_vars(vars: &impl Vars) -> Result<Self, ConfigError> {
        S3Config::new(
            vars,
            EdgeConfig::from_vars(vars)?,
            S3Secrets::from_vars(vars),
        )
    }

    pub fn new(
        vars: &impl Vars,
        edge: EdgeConfig,
        secrets: S3Secrets,
    ) -> Result<Self, ConfigError> {
        let S3Secrets {
            token,
            webhook_url,
            source_secret_access_key,
        } = secrets;
        sns::require_token_or_topics(token.as_ref(), TOKEN.0, vars)?;
        let vk = token.map(|token| VkConfig { token, webhook_url });
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
        Ok(S3Config {
            edge,
            vk,
            mirror: mirror_from_vars(vars, source_secret_access_key)?,
        })
    }
}

fn mirror_from_vars(
    vars: &impl Vars,
    source_secret_access_key: Option<Secret>,
) -> Result<Option<MirrorConfig>, ConfigError> {
    let Some(bucket) = vars.get("MIRROR_BUCKET") else {
        return Ok(None);
    };
    let sources = vars.list("MIRROR_SOURCE_BUCKETS");
    if sources.is_empty() {
        return Err(ConfigError::Missing("MIRROR_SOURCE_BUCKETS"));
    }
    if let Some(bad) = sources.iter().find(|b| b.contains('/')) {
        return Err(ConfigError::Invalid {
            name: "MIRROR_SOURCE_BUCKETS",
            reason: format!("{bad:?} is not a bucket name"),
        });
    }
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
            secret_access_key: source_secret_access_key
                .ok_or(ConfigError::Missing(SOURCE_SECRET.0))?,
            region: vars
                .get("MIRROR_SOURCE_REGION")
                .unwrap_or_else(|| "us-east-1".into()),
        }),
    };
    Ok(Some(MirrorConfig {
        bucket,
        sources,
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

/// The function as Lambda and the local server run it, over an event store `S` that keeps the
/// mirror's ledger beside its events.
pub type S3Function<S> =
    S3Handler<S, SystemClock, HttpsFetcher, S3Transfer, <S as LedgerSource>::Ledger>;

/// Reads the whole configuration once (secrets from the variables or SSM), builds the mirror's
/// S3 clients when a mirror is configured, and the handler over `store`.
pub async fn build<S: EventWriter + LedgerSource>(
    store: S,
    setup: &Setup,
) -> Result<S3Function<S>, ConfigError> {
    let secrets = S3Secrets::from_setup(setup).await?;
    let config = S3Config::new(setup, setup.edge().clone(), secrets)?;
    if config
        .vk
        .as_ref()
        .is_some_and(|vk| vk.webhook_url.is_none())
    {
        tracing::warn!(
            variable = WEBHOOK_URL.0,
            "VK handshakes will be refused until it is set"
        );
    }
    let mirror = match &config.mirror {
        None => None,
        Some(mirror) => Some(Mirror::new(
            transfer_from(mirror, setup.sdk().await?, setup),
            store.mirror_ledger()?,
            mirror.sources.iter().cloned(),
        )),
    };
    let sns = SnsVerifier::from_vars(setup, setup.certificates()?);
    Ok(S3Handler::new(store, SystemClock, config, sns, mirror))
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
    fn a_mirror_names_the_buckets_it_mirrors() {
        let unlisted = S3Config::from_vars(&[("S3_WEBHOOK_TOKEN", "t"), ("MIRROR_BUCKET", "b")]);
        assert_eq!(
            unlisted.unwrap_err(),
            ConfigError::Missing("MIRROR_SOURCE_BUCKETS")
        );
        let listed = S3Config::from_vars(&[
            ("S3_WEBHOOK_TOKEN", "t"),
            ("MIRROR_BUCKET", "b"),
            ("MIRROR_SOURCE_BUCKETS", " photos, ,reports "),
        ])
        .unwrap();
        assert_eq!(listed.mirror.unwrap().sources, ["photos", "reports"]);
        let path = S3Config::from_vars(&[
            ("S3_WEBHOOK_TOKEN", "t"),
            ("MIRROR_BUCKET", "b"),
            ("MIRROR_SOURCE_BUCKETS", "photos/2024"),
        ]);
        assert_eq!(path.unwrap_err().variable(), "MIRROR_SOURCE_BUCKETS");
    }

    #[test]
    fn a_foreign_source_needs_its_credentials() {
        let base = [
            ("S3_WEBHOOK_TOKEN", "t"),
            ("MIRROR_BUCKET", "backup"),
            ("MIRROR_SOURCE_BUCKETS", "photos"),
        ];
        let same = S3Config::from_vars(&base).unwrap().mirror.unwrap();
        assert_eq!((same.bucket.as_str(), same.part_size), ("backup", 8 << 20));
        assert!(same.source.is_none());
        let missing = S3Config::from_vars(&[
            base[0],
            base[1],
            base[2],
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
            base[2],
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
        let tiny = S3Config::from_vars(&[base[0], base[1], base[2], ("MIRROR_PART_SIZE_MIB", "1")]);
        assert_eq!(tiny.unwrap_err().variable(), "MIRROR_PART_SIZE_MIB");
    }
}
