//! Shared building blocks of the callback-hub functions. Nothing here is specific to one sender.

pub mod auth;
pub mod aws;
pub mod certs;
pub mod clock;
pub mod config;
pub mod event;
pub mod http;
pub mod sns;
pub mod store;
pub mod telemetry;

pub use event::{Event, Source};
pub use store::{PutOutcome, StoreError};

/// Stops a function at start: logs the reason (naming the variable) and returns it as the error
/// that `main` exits with, so Lambda reports an init failure instead of serving unauthenticated.
pub fn fail_start(err: config::ConfigError) -> lambda_http::Error {
    tracing::error!(variable = err.variable(), error = %err, "refusing to start");
    Box::new(err)
}
