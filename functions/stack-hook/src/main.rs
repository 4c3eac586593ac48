use hub_core::aws::WarmUp;
use hub_core::clock::SystemClock;
use hub_core::config::{events_table, ProcessEnv};
use hub_core::{aws, fail_start, telemetry};
use lambda_http::{run, service_fn, Error, Request};
use stack_hook::{StackHook, StackHookConfig};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let table = events_table(&ProcessEnv).map_err(fail_start)?;
    let config = StackHookConfig::from_vars(&ProcessEnv).map_err(fail_start)?;
    let sns = hub_core::sns::verifier_from_vars(&ProcessEnv).map_err(fail_start)?;
    let store = aws::dynamo_store(&aws::lambda_sdk_config().map_err(fail_start)?, table);
    WarmUp::from_vars(&ProcessEnv)
        .map_err(fail_start)?
        .apply(&store)
        .await;
    let hook = Arc::new(StackHook::new(store, SystemClock, config, sns));
    run(service_fn(move |request: Request| {
        let hook = hook.clone();
        async move { Ok::<_, Error>(hook.handle(request).await) }
    }))
    .await
}
