use dingtalk_callback::{load_crypto, DingTalkHandler};
use hub_core::aws::WarmUp;
use hub_core::clock::SystemClock;
use hub_core::config::{events_table, EdgeConfig, ProcessEnv};
use hub_core::{aws, fail_start, telemetry};
use lambda_http::{run, service_fn, Error, Request};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let table = events_table(&ProcessEnv).map_err(fail_start)?;
    let edge = EdgeConfig::from_vars(&ProcessEnv).map_err(fail_start)?;
    let sdk = aws::lambda_sdk_config().map_err(fail_start)?;
    // Secrets are read once here, never per request: DingTalk's deadline is 1.5 s.
    let crypto = load_crypto(&ProcessEnv, &sdk).await.map_err(fail_start)?;
    let store = aws::dynamo_store(&sdk, table);
    WarmUp::from_vars(&ProcessEnv)
        .map_err(fail_start)?
        .apply(&store)
        .await;
    let handler = Arc::new(DingTalkHandler::new(store, SystemClock, crypto, edge));
    run(service_fn(move |request: Request| {
        let handler = handler.clone();
        async move { Ok::<_, Error>(handler.handle(request).await) }
    }))
    .await
}
