//! JSON logs through `tracing`. Inside an invocation, every line carries the Lambda request id:
//! the runtime opens a span with `requestId`, and the formatter writes the current span.
//!
//! The filter is `Targets`, not `EnvFilter`: the same `RUST_LOG` syntax for levels and
//! `target=level` pairs, without the regex engine that `EnvFilter` links in (it costs size and
//! start-up time in every bootstrap).

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Level from Lambda's advanced logging controls (`AWS_LAMBDA_LOG_LEVEL`), else `RUST_LOG`,
/// else info. Safe to call more than once (tests): later calls do nothing.
pub fn init() {
    let filter = filter(
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        std::env::var("RUST_LOG").ok().as_deref(),
    );
    let format = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false);
    let _ = tracing_subscriber::registry()
        .with(format)
        .with(filter)
        .try_init();
}

/// `RUST_LOG` may name targets (`stack_hook=debug,warn`); `AWS_LAMBDA_LOG_LEVEL` is one level
/// and wins for the default. The SDK's own debug lines would carry request and response
/// details, so its crates stay at warn whatever is asked.
fn filter(lambda_level: Option<&str>, rust_log: Option<&str>) -> Targets {
    let directives: Targets = rust_log
        .and_then(|text| text.parse().ok())
        .unwrap_or_default();
    let default = lambda_level
        .and_then(|text| text.trim().parse::<LevelFilter>().ok())
        .or_else(|| directives.default_level())
        .unwrap_or(LevelFilter::INFO);
    directives
        .with_default(default)
        .with_target("aws_smithy_runtime", LevelFilter::WARN)
        .with_target("aws_config", LevelFilter::WARN)
        // At trace the runtime logs whole invocations, query-string tokens included.
        .with_target("lambda_runtime", LevelFilter::INFO)
        .with_target("lambda_http", LevelFilter::INFO)
}

#[cfg(test)]
mod tests {
    use super::filter;
    use tracing::Level;

    #[test]
    fn info_by_default() {
        let f = filter(None, None);
        assert!(f.would_enable("stack_hook", &Level::INFO));
        assert!(!f.would_enable("stack_hook", &Level::DEBUG));
    }

    #[test]
    fn lambda_level_wins_over_rust_log_default() {
        let f = filter(Some("ERROR"), Some("debug"));
        assert!(f.would_enable("hub_core", &Level::ERROR));
        assert!(!f.would_enable("hub_core", &Level::WARN));
    }

    #[test]
    fn rust_log_targets_apply() {
        let f = filter(None, Some("warn,some_function=debug"));
        assert!(f.would_enable("some_function::handler", &Level::DEBUG));
        assert!(!f.would_enable("hub_core", &Level::INFO));
        assert!(f.would_enable("hub_core", &Level::WARN));
    }

    #[test]
    fn sdk_stays_quiet_even_at_trace() {
        let f = filter(Some("trace"), Some("trace"));
        assert!(f.would_enable("hub_core", &Level::TRACE));
        assert!(!f.would_enable("aws_smithy_runtime::client", &Level::INFO));
        assert!(!f.would_enable("aws_config::meta", &Level::DEBUG));
        assert!(f.would_enable("aws_smithy_runtime", &Level::WARN));
    }

    #[test]
    fn the_runtime_never_logs_raw_invocations() {
        let f = filter(Some("TRACE"), Some("trace"));
        assert!(!f.would_enable("lambda_runtime::layers", &Level::DEBUG));
        assert!(!f.would_enable("lambda_http", &Level::TRACE));
        assert!(f.would_enable("lambda_runtime", &Level::INFO));
    }

    #[test]
    fn unparsable_values_fall_back_to_info() {
        let f = filter(Some("loud"), Some("=="));
        assert!(f.would_enable("hub_core", &Level::INFO));
        assert!(!f.would_enable("hub_core", &Level::DEBUG));
    }
}
