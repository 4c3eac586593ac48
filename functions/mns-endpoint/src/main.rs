use hub_core::aws::WarmUp;
use hub_core::certs::cache_from_vars;
use hub_core::clock::SystemClock;
use hub_core::config::{events_table, ProcessEnv};
use hub_core::{aws, fail_start, telemetry};
use lambda_http::{run, service_fn, Error, Request};
use mns_endpoint::{MnsConfig, MnsHandler};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let table = events_table(&ProcessEnv).map_err(fail_start)?;
    let config = MnsConfig::from_vars(&ProcessEnv).map_err(fail_start)?;
    // Pinned certificates are parsed once here; fetched ones are cached for the process's life.
    let certificates = cache_from_vars(&ProcessEnv).map_err(fail_start)?;
    let store = aws::dynamo_store(&aws::lambda_sdk_config().map_err(fail_start)?, table);
    WarmUp::from_vars(&ProcessEnv)
        .map_err(fail_start)?
        .apply(&store)
        .await;
    let handler = Arc::new(MnsHandler::new(store, SystemClock, certificates, config));
    run(service_fn(move |request: Request| {
        let handler = handler.clone();
        async move { Ok::<_, Error>(handler.handle(request).await) }
    }))
    .await
}
