use hub_core::aws::WarmUp;
use hub_core::clock::SystemClock;
use hub_core::config::{events_table, ProcessEnv};
use hub_core::{aws, fail_start, telemetry};
use lambda_http::{run, service_fn, Error, Request};
use s3_notification::{transfer_from, Mirror, S3Config, S3Handler};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let table = events_table(&ProcessEnv).map_err(fail_start)?;
    let config = S3Config::from_vars(&ProcessEnv).map_err(fail_start)?;
    let sns = hub_core::sns::verifier_from_vars(&ProcessEnv).map_err(fail_start)?;
    let sdk = aws::lambda_sdk_config().map_err(fail_start)?;
    let mirror = config
        .mirror
        .as_ref()
        .map(|mirror| Mirror::new(transfer_from(mirror, &sdk, &ProcessEnv)));
    if let Some(vk) = &config.vk {
        if vk.webhook_url.is_none() {
            tracing::warn!(
                variable = "S3_WEBHOOK_URL",
                "VK handshakes will be refused until it is set"
            );
        }
    }
    let store = aws::dynamo_store(&sdk, table);
    WarmUp::from_vars(&ProcessEnv)
        .map_err(fail_start)?
        .apply(&store)
        .await;
    let handler = Arc::new(S3Handler::new(store, SystemClock, config, sns, mirror));
    run(service_fn(move |request: Request| {
        let handler = handler.clone();
        async move { Ok::<_, Error>(handler.handle(request).await) }
    }))
    .await
}
