//! The one `main` of every function: telemetry, the shared settings, the SDK, (for HTTP
//! functions) the events table with retention and its warm-up, the function's own constructor,
//! then the runtime loop. A configuration error stops the start, naming the variable, so Lambda
//! reports an init failure instead of the function serving unauthenticated.
//!
//! Every function's `main` runs these on tokio's current-thread runtime. Lambda gives a process
//! one event at a time, so worker threads only add their start-up to init and a hand-off between
//! threads to every wake-up (the runtime API's answer, each DynamoDB response): BENCHMARKS.md
//! ("What we changed and what it bought") has the before and after.

use crate::aws::{LazyAws, WarmUp};
use crate::config::{events_table, ConfigError};
use crate::http::Handler;
use crate::metrics::{self, Metrics};
use crate::setup::Setup;
use crate::store::{DynamoStore, Retained};
use crate::telemetry;
use crate::telemetry::xray::{self, TraceContext};
use lambda_http::{service_fn, Body, Error, Request, RequestExt, Response};
use std::future::Future;
use std::sync::Arc;

/// The store every Lambda function is given: the events table, with `EVENT_TTL_DAYS` applied.
pub type LambdaStore = Retained<DynamoStore>;

/// Runs a function whose constructor is `build`, e.g. `run(stack_hook::build).await`.
pub async fn run<H, Fut>(
    build: impl FnOnce(LambdaStore, &'static Setup) -> Fut,
) -> Result<(), Error>
where
    H: Handler,
    Fut: Future<Output = Result<H, ConfigError>>,
{
    telemetry::init();
    // The setup lives as long as the process: leaking it lets handlers borrow from it freely.
    let setup: &'static Setup = Box::leak(Box::new(
        Setup::from_process(LazyAws::lambda()).map_err(fail_start)?,
    ));
    let table = events_table(setup).map_err(fail_start)?;
    let warm_up = WarmUp::from_vars(setup).map_err(fail_start)?;
    let dynamo = crate::aws::lambda_dynamo_store(setup.sdk().await.map_err(fail_start)?, table);
    warm_up.apply(&dynamo).await;
    let store = Retained::new(dynamo, setup.edge().event_ttl_days);
    let handler = Arc::new(build(store, setup).await.map_err(fail_start)?);
    let metrics = Metrics::global();
    lambda_http::run(service_fn(move |request: Request| {
        let handler = handler.clone();
        async move { Ok::<_, Error>(invoke(metrics, handler.as_ref(), request).await) }
    }))
    .await
}

/// One invocation of an HTTP function, as `run` makes it: the handler's response, counted in
/// `metrics` under the handler's source.
/// Its AWS calls and certificate fetches are X-Ray subsegments of the invocation's segment
/// when it is sampled.
pub async fn invoke<H: Handler>(
    metrics: &Metrics,
    handler: &H,
    request: Request,
) -> Response<Body> {
    let trace = TraceContext::for_invocation(
        request
            .lambda_context_ref()
            .and_then(|context| context.xray_trace_id.as_deref()),
    );
    let source = metrics::receiving(handler.source(), &request);
    // Boxed where it is made: the handler's future holds the SDK call's (kilobytes), and each
    // wrapper below would otherwise copy all of it as it moves in; callgrind counted those
    // copies at a tenth of a warm invocation's instructions (BENCHMARKS.md, change 15).
    let handled = Box::pin(handler.handle(request));
    xray::in_trace(trace, metrics.observe(source, handled)).await
}

/// A function of one non-HTTP event (a stream batch, an SQS batch, a schedule) to one response.
/// An error fails the invocation (Lambda's `Errors` metric, the alarms): only for what no batch
/// item failure can express.
pub trait EventHandler<E>: Send + Sync + 'static {
    type Response: serde::Serialize + Send;
    fn handle(&self, event: E) -> impl Future<Output = Result<Self::Response, Error>> + Send;
}

/// Runs a function whose input is not HTTP and whose constructor is `build`, e.g.
/// `run_events(webhook_fanout::build).await`.
pub async fn run_events<H, E, Fut>(build: impl FnOnce(&'static Setup) -> Fut) -> Result<(), Error>
where
    H: EventHandler<E>,
    E: serde::de::DeserializeOwned + Send + 'static,
    Fut: Future<Output = Result<H, ConfigError>>,
{
    telemetry::init();
    let setup: &'static Setup = Box::leak(Box::new(
        Setup::from_process(LazyAws::lambda()).map_err(fail_start)?,
    ));
    let handler = Arc::new(build(setup).await.map_err(fail_start)?);
    lambda_http::lambda_runtime::run(lambda_http::lambda_runtime::service_fn(
        move |event: lambda_http::lambda_runtime::LambdaEvent<E>| {
            let handler = handler.clone();
            let trace = TraceContext::for_invocation(event.context.xray_trace_id.as_deref());
            // Boxed: the handler's future nests deep enough (the SQS batch's joined attempts)
            // that wrapping it unboxed passes the compiler's layout depth limit.
            async move { xray::in_trace(trace, Box::pin(handler.handle(event.payload))).await }
        },
    ))
    .await
}

/// Logs why the function refuses to start (naming the variable) and returns it as the error
/// that `main` exits with.
pub fn fail_start(err: ConfigError) -> Error {
    tracing::error!(variable = err.variable(), error = %err, "refusing to start");
    Box::new(err)
}
