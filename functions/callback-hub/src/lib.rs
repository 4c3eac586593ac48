//! callback-hub as one ordinary HTTP server: every route of the interface, served by the Lambda
//! functions' own constructors and handlers, on an embedded SQLite database (or the deployed
//! DynamoDB table).

pub mod commands;
pub mod demo;
pub mod dotenv;
pub mod routes;
pub mod server;
pub mod store;
pub mod webhooks_cli;
pub mod worker;

pub use routes::Routes;
pub use sqlite_store::SqliteStore;
pub use store::{AnyStore, LocalStore};
