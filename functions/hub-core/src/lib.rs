//! The kernel of callback-hub: what every function shares, and nothing that belongs to one
//! sender. The event model and the event store's capabilities (with their DynamoDB store), config
//! primitives and the per-function [`setup::Setup`], shared-secret authentication, the HTTP edge,
//! the signing-certificate fetcher and cache, AWS client set-up, the Lambda entry point,
//! telemetry (logs, metrics, traces) and a clock.

pub mod auth;
pub mod aws;
pub mod certs;
pub mod clock;
pub mod config;
pub mod event;
pub mod http;
pub mod lambda;
pub mod metrics;
pub mod sdk_http;
pub mod setup;
pub mod store;
pub mod telemetry;
pub mod tls;

pub use event::{Event, Source};
pub use store::{PutOutcome, StoreError};
