//! JSON logs through `tracing`. Inside an invocation, every line carries the Lambda request id:
//! the runtime opens a span with `requestId`, and the formatter writes the current span.

use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// Level from Lambda's advanced logging controls (`AWS_LAMBDA_LOG_LEVEL`), else `RUST_LOG`,
/// else info. Safe to call more than once (tests): later calls do nothing.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|text| text.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy()
        // The SDK's own debug lines would carry request and response details.
        .add_directive("aws_smithy_runtime=warn".parse().expect("static directive"))
        .add_directive("aws_config=warn".parse().expect("static directive"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
}
