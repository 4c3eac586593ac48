//! callback-hub as one ordinary HTTP server: every route of the interface, served by the Lambda
//! functions' own handlers, on an embedded SQLite database (or the deployed DynamoDB table).

pub mod commands;
pub mod demo;
pub mod dotenv;
pub mod server;
pub mod sqlite;
pub mod store;

pub use server::Routes;
pub use sqlite::SqliteStore;
pub use store::AnyStore;
